"""On-demand analyses stop this host's drift processes while they run, and a watchdog
never lets one stay stopped: real processes, real signals, real Redis."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.fleet.conftest import CONFIG
from tests.local import wait_for
from workers import drift_pause


@pytest.fixture
def stand_in_drift_process() -> Iterator[subprocess.Popen]:
    """A process standing in for a drift pool process (it only sleeps)."""
    process = subprocess.Popen(["sleep", "120"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _state(process: subprocess.Popen) -> str | None:
    return drift_pause.process_state(process.pid)


def _becomes(process: subprocess.Popen, state: str) -> bool:
    """Signals are delivered asynchronously: wait (briefly) for the state."""
    try:
        wait_for(lambda: _state(process) == state, timeout=2, what=f"state {state}",
                 interval=0.005)
    except AssertionError:
        return False
    return True


def test_analyses_in_flight_stop_drift_until_the_last_one_ends(
        redis_db: redis.Redis, stand_in_drift_process: subprocess.Popen) -> None:
    drift_pause.register_drift_process(redis_db, CONFIG, stand_in_drift_process.pid)
    drift_pause.pause_drift(redis_db, CONFIG)
    assert _becomes(stand_in_drift_process, "T")
    assert 0 < redis_db.ttl(drift_pause.active_key(CONFIG)) <= CONFIG.ondemand.pause_max_s
    drift_pause.pause_drift(redis_db, CONFIG)  # a second analysis overlaps
    drift_pause.resume_drift(redis_db, CONFIG)
    assert not _becomes(stand_in_drift_process, "S")  # one still in flight
    drift_pause.resume_drift(redis_db, CONFIG)
    assert _becomes(stand_in_drift_process, "S")
    assert redis_db.exists(drift_pause.active_key(CONFIG)) == 0


def test_a_reused_pid_is_never_signalled(redis_db: redis.Redis,
                                          stand_in_drift_process: subprocess.Popen) -> None:
    # Registered with another start time: the process that now has this pid is not ours.
    redis_db.hset(drift_pause.pool_key(CONFIG), str(stand_in_drift_process.pid), "1")
    drift_pause.pause_drift(redis_db, CONFIG)
    assert not _becomes(stand_in_drift_process, "T")
    assert redis_db.hlen(drift_pause.pool_key(CONFIG)) == 0
    drift_pause.resume_drift(redis_db, CONFIG)


def test_watchdog_continues_drift_left_stopped_by_a_crashed_analysis(
        redis_db: redis.Redis, stand_in_drift_process: subprocess.Popen) -> None:
    config = dataclasses.replace(CONFIG, ondemand=dataclasses.replace(
        CONFIG.ondemand, pause_max_s=1))
    drift_pause.register_drift_process(redis_db, config, stand_in_drift_process.pid)
    drift_pause.pause_drift(redis_db, config)  # ... and its task dies: no resume
    assert _becomes(stand_in_drift_process, "T")
    stop = threading.Event()
    watchdog = threading.Thread(target=drift_pause.watch, args=(
        redis_db, config, lambda: [stand_in_drift_process.pid], stop, 0.1), daemon=True)
    watchdog.start()
    try:
        # The in-flight count expires after pause_max_s; the watchdog continues at once.
        wait_for(lambda: _state(stand_in_drift_process) == "S", timeout=5,
                 what="the watchdog to continue the stopped process")
    finally:
        stop.set()
        watchdog.join(timeout=5)
