"""Thousands of calls in one backend leave its memory and file descriptors flat, on the
success path and on the error paths."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.perform_drift_analysis.conftest import analysis_sql, backend_pid

CALLS = 10_000
WARMUP = 1_000
MAX_GROWTH_KB = 8 * 1024
FAILING_CALLS = 3_000
FAILING_WARMUP = 500


def _status(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (kB) and open descriptors of a backend on this machine."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssShmem"):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


@pytest.fixture(scope="module")
def small_source(module_sources):
    return module_sources.create(current_rows=300, hist_rows=1000)


def _require_local_backend(pid: int) -> None:
    if not Path(f"/proc/{pid}/status").exists():
        pytest.skip("the PostgreSQL backend is not a process on this machine")


def _run(conn, source, calls: int, expect_error: bool) -> None:
    statement = analysis_sql(source.qualified)
    params = ["15 minutes", source.qualified, "created_at", ["amount", "latency"]]
    cursor = conn.cursor()
    for _ in range(calls):
        if expect_error:
            # Not prepared: psycopg prepares a new server-side statement after every failed
            # execution of a prepared one, which would grow the backend by itself.
            try:
                cursor.execute(statement, params, prepare=False)
            except Exception as exc:  # the error path is the point
                if getattr(exc, "sqlstate", "")[:2] != "08":
                    raise
            else:
                raise AssertionError("a failing endpoint gave a result")
        else:
            cursor.execute(statement, params, prepare=True)
            assert cursor.fetchone()[0]["status"] == "ok"


@pytest.mark.slow
def test_ten_thousand_calls_keep_backend_memory_flat(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    pid = backend_pid(conn)
    _require_local_backend(pid)
    started = time.monotonic()
    _run(conn, small_source, WARMUP, expect_error=False)
    after_warmup = _status(pid)
    _run(conn, small_source, CALLS - WARMUP, expect_error=False)
    after_all = _status(pid)
    seconds = time.monotonic() - started
    growth = {k: after_all[k] - after_warmup[k] for k in after_all}
    print(f"\n{CALLS} calls in {seconds:.1f} s ({seconds / CALLS * 1e3:.2f} ms/call); "
          f"after {WARMUP}: {after_warmup}; after {CALLS}: {after_all}; growth {growth}")
    assert len(fault.requests) == CALLS
    assert growth["VmRSS"] < MAX_GROWTH_KB, growth
    assert growth["RssAnon"] < MAX_GROWTH_KB, growth
    assert growth["fds"] <= 1, growth


@pytest.mark.slow
def test_failing_calls_keep_backend_memory_flat(config, fault, small_source, new_conn):
    conn = new_conn()
    pid = backend_pid(conn)
    _require_local_backend(pid)
    figures = {}
    for mode in ("status/500", "malformed", "close"):
        config.apply(function_url=fault.url(mode), timeout=2000)
        _run(conn, small_source, FAILING_WARMUP, expect_error=True)
        before = _status(pid)
        _run(conn, small_source, FAILING_CALLS - FAILING_WARMUP, expect_error=True)
        after = _status(pid)
        figures[mode] = {k: after[k] - before[k] for k in after}
    print(f"\ngrowth over {FAILING_CALLS - FAILING_WARMUP} failing calls per mode: {figures}")
    for mode, growth in figures.items():
        assert growth["VmRSS"] < MAX_GROWTH_KB / 2, (mode, growth)
        assert growth["RssAnon"] < MAX_GROWTH_KB / 2, (mode, growth)
        assert growth["fds"] <= 1, (mode, growth)


@pytest.mark.slow
def test_calls_with_the_window_cache_keep_backend_memory_flat(config, fault, small_source,
                                                              new_conn):
    """1 s buckets settled after 1 s: every second new buckets enter the cache, old ones
    leave it and blocks of 60 form, for the 25 s this runs."""
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    conn.execute("SET pg_stat_guard.window_cache_bucket = '1s'")
    conn.execute("SET pg_stat_guard.window_cache_settle = '1s'")
    pid = backend_pid(conn)
    _require_local_backend(pid)
    _run(conn, small_source, WARMUP, expect_error=False)
    after_warmup = _status(pid)
    started, calls = time.monotonic(), 0
    while time.monotonic() - started < 25:
        _run(conn, small_source, 100, expect_error=False)
        calls += 100
    after_all = _status(pid)
    growth = {k: after_all[k] - after_warmup[k] for k in after_all}
    print(f"\n{calls} cached calls over 25 s after {WARMUP}; growth {growth}")
    last = conn.execute(analysis_sql(small_source.qualified),
                        ["15 minutes", small_source.qualified, "created_at",
                         ["amount", "latency"]]).fetchone()[0]
    assert last["analysis"]["window_cache"]["buckets"] > 0
    assert calls >= 1_000
    assert growth["VmRSS"] < MAX_GROWTH_KB, growth
    assert growth["RssAnon"] < MAX_GROWTH_KB, growth
    assert growth["fds"] <= 1, growth
