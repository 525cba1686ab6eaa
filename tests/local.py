"""Small helpers for tests that run local processes: free loopback ports, polling, and
a record of a started process group with its log."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             interval: float = 0.1) -> object:
    """Poll ``condition`` until it is truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LoggedProcess:
    """A process started in a session (group) of its own, writing to ``log_path``."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole group; False when it is gone already."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return False
        return True
