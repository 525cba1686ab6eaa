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
