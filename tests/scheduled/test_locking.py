"""Another process holding the DuckDB file: the run waits and retries, up to a bound."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from stat_guard.scheduled.engine import DriftRunConfig, DuckDBBusyError, run_model_drift

HOLDER = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


def _hold(db_path: str, seconds: float) -> subprocess.Popen:
    """A subprocess with a read-write connection open for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_path, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_run_waits_for_a_2_second_lock_and_completes(demo):
    holder = _hold(demo.db_path, 2.0)
    started = time.perf_counter()
    try:
        result = run_model_drift(demo.db_path, "churn", "locked-1")
    finally:
        holder.wait(timeout=30)
    elapsed = time.perf_counter() - started
    assert result.verdict in {"warning", "drift"}
    assert 1.0 < result.lock_wait_s < elapsed
    # The file is held only while SQL runs, never through the lock wait.
    assert result.read_lock_s < 2.0 and result.write_lock_s < 1.0
    print(f"\nlock wait {result.lock_wait_s:.2f} s, read phase held {result.read_lock_s:.3f} s, "
          f"write phase held {result.write_lock_s:.3f} s, run {result.duration_s:.2f} s")


def test_lock_held_past_the_retry_budget_raises_busy(demo):
    config = DriftRunConfig(lock_attempts=4, lock_base_delay_s=0.05, lock_max_delay_s=0.2)
    holder = _hold(demo.db_path, 4.0)
    started = time.perf_counter()
    try:
        with pytest.raises(DuckDBBusyError, match="stayed locked after 4 attempts"):
            run_model_drift(demo.db_path, "churn", "locked-2", config)
        assert time.perf_counter() - started < 2.0
    finally:
        holder.wait(timeout=30)


def test_busy_message_names_the_holder_and_not_read_only_mode(demo, tmp_path):
    """A reader holding the file read-only: the message names its PID and command line,
    points to the Parquet copy and does not suggest read-only mode (which it already is)."""
    config = DriftRunConfig(lock_attempts=2, lock_base_delay_s=0.05, lock_max_delay_s=0.1)
    script = tmp_path / "reader.py"
    script.write_text(HOLDER.replace("connect(sys.argv[1])",
                                     "connect(sys.argv[1], read_only=True)"))
    reader = subprocess.Popen(
        [sys.executable, str(script), demo.db_path, "3.0", "--reader-of-results"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "locked"
        with pytest.raises(DuckDBBusyError) as raised:
            run_model_drift(demo.db_path, "churn", "locked-3", config)
    finally:
        reader.wait(timeout=30)
    message = str(raised.value)
    assert f"held by PID {reader.pid} ({sys.executable} {script} " in message
    assert "\n" not in message
    assert "--reader-of-results" in message  # the holder's command line
    assert "read-only mode" not in message
    assert "Reading results while the fleet runs" in message
