"""Fixtures for the worker fleet: a test configuration, real Redis (database 13 of the
test run's private server, flushed around every test), real Celery worker and beat processes, DuckDB
files in a temporary directory.

The configuration file is written and ``STAT_GUARD_CONFIG`` set before anything imports
``workers``: the test process (which reads it once, at import) and the worker processes
(given it in their environment) read the same file. Limits are
short (visibility timeout 20 s, claim idle 2 s) so redelivery and reclaiming happen within
a test. Every process started here runs in its own process group and is killed at the end
of its test, passed or failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.local import LoggedProcess, wait_for
from tests.servers import private_redis_port

ROOT = Path(__file__).resolve().parents[2]
TEST_REDIS_DB = 13
CONFIG_DIR = Path(tempfile.mkdtemp(prefix="stat-guard-fleet-"))
CONFIG_PATH = CONFIG_DIR / "App.yaml"
CONFIG_PATH.write_text(f"""
redis:
  port: {private_redis_port()}
  db: {TEST_REDIS_DB}
  socket_timeout_s: 5
  socket_connect_timeout_s: 2
duckdb:
  path: {CONFIG_DIR / "default.duckdb"}
  lock_attempts: 3
  lock_base_delay_s: 0.05
  lock_max_delay_s: 0.2
drift:
  busy_max_retries: 30
  busy_retry_base_s: 0.5
  busy_retry_max_s: 1.5
  lock_retry_countdown_s: 1
  lock_max_retries: 60
schedule:
  drift_interval_s: 3600
  reactions_interval_s: 1
limits:
  visibility_timeout_s: 20
  drift_soft_time_limit_s: 14
  drift_time_limit_s: 15
  model_lock_ttl_s: 17
  ondemand_soft_time_limit_s: 8
  ondemand_time_limit_s: 10
  reactions_soft_time_limit_s: 12
  reactions_time_limit_s: 14
  unacked_restore_interval_s: 1
  unacked_restore_throttle: 1
stream:
  claim_idle_s: 2
  drain_time_budget_s: 5
ondemand:
  statement_timeout_ms: 5000
  cooldown_s: 2
  busy_retry_s: 0.5
""")
_previous_config_path = os.environ.get("STAT_GUARD_CONFIG")
os.environ["STAT_GUARD_CONFIG"] = str(CONFIG_PATH)

import redis  # noqa: E402

from workers.config import get_config  # noqa: E402

CONFIG = get_config()  # read once and kept by this process: the environment can go back
assert CONFIG.source_path == str(CONFIG_PATH), "workers.config was read before the fixture"
if _previous_config_path is None:
    del os.environ["STAT_GUARD_CONFIG"]
else:
    os.environ["STAT_GUARD_CONFIG"] = _previous_config_path


def redis_for(port: int | None = None, db: int = TEST_REDIS_DB) -> redis.Redis:
    """A client of ``port`` (default: the run's private Redis)."""
    return redis.Redis(host="127.0.0.1", port=port or private_redis_port(), db=db,
                       decode_responses=True)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """Database 13 of the private Redis, empty at the start and at the end of the test."""
    client = redis_for()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# ---- processes -------------------------------------------------------------------------


class FleetProcess(LoggedProcess):
    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool processes)."""
        self.signal_group(sig)

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                             text=True).stdout
        return [int(pid) for pid in out.split()]


@dataclass
class Fleet:
    """Starts worker and beat processes for one test and always stops them."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[FleetProcess] = field(default_factory=list)

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None) -> FleetProcess:
        log_path = self.workdir / f"{name}-{len(self.processes)}.log"
        environment = {**os.environ, "STAT_GUARD_CONFIG": str(CONFIG_PATH),
                       "PYTHONUNBUFFERED": "1", **self.env, **(env or {})}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        started = FleetProcess(name, process, log_path)
        self.processes.append(started)
        return started

    def worker(self, queue: str, concurrency: int = 1, env: dict[str, str] | None = None,
               wait: bool = True, pool: str = "prefork") -> FleetProcess:
        node = f"{queue.replace(',', '+')}-{uuid.uuid4().hex[:6]}@fleet-test"
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "-Q", queue, "-P", pool, "-c", str(concurrency), "-n", node, "-l", "info",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker = self._start(f"worker-{queue}", argv, env)
        if wait:
            wait_for(lambda: " ready." in worker.log() or worker.process.poll() is not None,
                     timeout=60, what=f"{queue} worker ready")
            assert worker.process.poll() is None, worker.log()[-3000:]
        return worker

    def beat(self, env: dict[str, str] | None = None) -> FleetProcess:
        schedule_file = self.workdir / f"beat-{uuid.uuid4().hex[:6]}"
        argv = [sys.executable, "-m", "celery", "-A", "beat_schedule", "beat", "-l", "info",
                "-s", str(schedule_file)]
        return self._start("beat", argv, env)

    def stop(self, item: FleetProcess, timeout: float = 10) -> None:
        """Warm shutdown (SIGTERM to the main process), then SIGKILL to what is left."""
        if item.process.poll() is None:
            item.process.send_signal(signal.SIGTERM)
        self._reap(item, timeout)

    def _reap(self, item: FleetProcess, timeout: float) -> None:
        try:
            item.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            item.kill(signal.SIGKILL)
            item.process.wait(timeout=10)
        item.kill(signal.SIGKILL)  # pool processes left behind, if any

    def stop_all(self) -> None:
        """Warm shutdown of every process at once (each takes about 2 s), then as stop."""
        for item in self.processes:
            if item.process.poll() is None:
                item.process.send_signal(signal.SIGTERM)
        for item in self.processes:
            self._reap(item, timeout=5)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} ({p.log_path})\n{p.log()[-4000:]}"
                         for p in self.processes)


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path, redis_db: redis.Redis
          ) -> Iterator[Fleet]:
    """Worker processes for this test, their DuckDB file in ``tmp_path``; their logs are
    printed when the test fails."""
    manager = Fleet(workdir=tmp_path,
                    env={"STAT_GUARD_DUCKDB_PATH": str(tmp_path / "fleet.duckdb")})
    try:
        yield manager
    finally:
        manager.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(manager.logs())


@pytest.fixture(scope="session", autouse=True)
def _remove_config_dir() -> Iterator[None]:
    yield
    shutil.rmtree(CONFIG_DIR, ignore_errors=True)


