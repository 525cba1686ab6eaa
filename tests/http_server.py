"""Start real local HTTP servers for tests: the verdict service under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.local import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def verdict_service(env: dict[str, str] | None = None, log_path: Path | None = None
                    ) -> Iterator[str]:
    """Run ``python -m stat_guard.service`` on a free loopback port; yield its base URL."""
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "stat_guard.service", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("verdict service did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_path:
            log.close()
