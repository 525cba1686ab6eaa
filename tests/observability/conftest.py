"""Fixtures for the observability tests: a configuration of their own (Redis database 11,
key prefix ``sgobs``, stream and queue names under it), real subprocesses on free loopback
ports, each in its own process group and killed at the end of its test, passed or failed.

The configuration reaches the subprocesses through ``STAT_GUARD_CONFIG`` in their
environment only; this process reads it with ``load_config(path)``, never ``get_config()``,
so it cannot disturb the fleet tests' cached configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.local import LoggedProcess, free_port, wait_for
from tests.servers import private_redis_port
from workers.config import FleetConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
OBS_REDIS_DB = 11
KEY_PREFIX = "sgobs"
CONFIG_DIR = Path(tempfile.mkdtemp(prefix="stat-guard-obs-"))
CONFIG_PATH = CONFIG_DIR / "App.yaml"
CONFIG_PATH.write_text(f"""
redis:
  port: {private_redis_port()}
  db: {OBS_REDIS_DB}
  key_prefix: {KEY_PREFIX}
  socket_timeout_s: 5
  socket_connect_timeout_s: 2
duckdb:
  path: {CONFIG_DIR / "obs.duckdb"}
queues:
  drift: {KEY_PREFIX}-drift
  ondemand: {KEY_PREFIX}-ondemand
  reactions: {KEY_PREFIX}-reactions
stream:
  name: "{KEY_PREFIX}:results"
  group: {KEY_PREFIX}-reactions
schedule:
  drift_interval_s: 3600
""")
CONFIG: FleetConfig = load_config(CONFIG_PATH)


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any STAT_GUARD_* setting, plus our file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAT_GUARD_")}
    env.update({"STAT_GUARD_CONFIG": str(CONFIG_PATH), "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env




def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
             ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ManagedProcess(LoggedProcess):
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, then SIGKILL to whatever is left of it."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not self.signal_group(sig):
                return
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                self.signal_group(signal.SIGKILL)  # pool processes may outlive the parent
            return


@dataclass
class Processes:
    workdir: Path
    started: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> ManagedProcess:
        log_path = self.workdir / f"{name}-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env=env or subprocess_env(),
                                       stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        managed = ManagedProcess(name, process, log_path)
        self.started.append(managed)
        return managed

    def exporter(self, redis_port: int | None = None, scan_limit: int | None = None,
                 feature_series: str | None = None) -> str:
        """Start ``python -m workers.exporter``; its /metrics URL once it answers.
        ``feature_series``: its --feature-series (e.g. "all"; default: the config's)."""
        port = free_port()
        argv = [sys.executable, "-m", "workers.exporter", "--port", str(port)]
        if scan_limit is not None:
            argv += ["--scan-limit", str(scan_limit)]
        if feature_series is not None:
            argv += ["--feature-series", feature_series]
        env = subprocess_env(**({"STAT_GUARD_REDIS_PORT": str(redis_port)}
                                if redis_port else {}))
        process = self.start("exporter", argv, env)
        url = f"http://127.0.0.1:{port}/metrics"

        def answers() -> bool:
            assert process.alive(), process.log()[-3000:]
            try:
                return http_get(url, timeout=10)[0] == 200
            except OSError:
                return False

        wait_for(answers, timeout=30, what="the exporter's /metrics", interval=0.2)
        return url

    def stop_all(self) -> None:
        for item in reversed(self.started):
            item.stop(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} ({p.log_path})\n{p.log()[-4000:]}"
                         for p in self.started)


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Processes]:
    manager = Processes(workdir=tmp_path)
    try:
        yield manager
    finally:
        manager.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(manager.logs())


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """Database 11 of the private Redis, empty at the start and at the end of the test."""
    client = redis.Redis(host="127.0.0.1", port=private_redis_port(), db=OBS_REDIS_DB,
                         decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _remove_config_dir() -> Iterator[None]:
    yield
    shutil.rmtree(CONFIG_DIR, ignore_errors=True)


def require_tool(name: str) -> str:
    """The tool's path, or skip with the reason (scripts/bootstrap.sh installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/bootstrap.sh installs it: "
                    f"make setup)")
    return path
