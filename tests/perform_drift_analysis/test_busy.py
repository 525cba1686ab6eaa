"""pg_stat_guard.max_concurrent: extra analyses get "busy" at once, and every way a call
can end gives its slot back."""

from __future__ import annotations

import threading
import time

import pytest
from psycopg import sql

from tests.perform_drift_analysis.conftest import analyze, attempt, call_in_thread, connect


@pytest.fixture(scope="module")
def small_source(module_sources):
    return module_sources.create(current_rows=300, hist_rows=1000)


def _start_slow_call(fault, source):
    # Counted before the call starts: its request may arrive before the next line runs.
    before = len(fault.requests)
    thread, box = call_in_thread(connect, source=source.qualified, columns=["amount"])
    fault.wait_for_requests(before + 1, timeout=5)
    return thread, box


def test_second_call_is_busy_at_once(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("slow/3/ok"), max_concurrent=1, timeout=10000)
    thread, box = _start_slow_call(fault, small_source)
    conn = new_conn()
    outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
    print(f"\nsecond call: {outcome.describe()}")
    assert outcome.sqlstate == "53400", outcome.describe()
    assert outcome.message.startswith("pg_stat_guard is busy"), outcome.describe()
    assert outcome.elapsed < 0.2, outcome.describe()
    assert len(fault.requests) == 1, "the refused call must not reach the function"
    thread.join(10)
    assert box["attempt"].error is None, box["attempt"].describe()
    assert box["attempt"].result["status"] == "ok"
    box["conn"].close()
    # the slot is free again
    config.apply(function_url=fault.url("ok"), max_concurrent=1, timeout=10000)
    assert analyze(conn, source=small_source.qualified, columns=["amount"])["status"] == "ok"


def test_limit_counts_analyses_across_backends(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("slow/2/ok-fast"), max_concurrent=2, timeout=10000)
    first = _start_slow_call(fault, small_source)
    second = _start_slow_call(fault, small_source)
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.sqlstate == "53400", outcome.describe()
    for thread, box in (first, second):
        thread.join(10)
        assert box["attempt"].error is None, box["attempt"].describe()
        box["conn"].close()


def test_slot_is_released_after_an_error(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("status/500"), max_concurrent=1)
    conn = new_conn()
    for _ in range(3):
        assert attempt(conn, source=small_source.qualified,
                       columns=["amount"]).sqlstate.startswith("08")
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1)
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.error is None, outcome.describe()


def test_slot_is_released_after_an_error_before_the_request(config, fault, small_source,
                                                            new_conn):
    """A call that fails in its own checks (unknown column) holds no slot afterwards."""
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1)
    conn = new_conn()
    bad = attempt(conn, source=small_source.qualified, columns=["no_such_column"])
    assert bad.sqlstate == "42703", bad.describe()
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.error is None, outcome.describe()


def test_slot_is_released_after_cancel(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("slow/10"), max_concurrent=1, timeout=20000)
    thread, box = _start_slow_call(fault, small_source)
    with connect() as other:
        other.execute("SELECT pg_cancel_backend(%s)", [box["pid"]])
    thread.join(5)
    assert box["attempt"].sqlstate == "57014", box["attempt"].describe()
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1, timeout=20000)
    # the same backend and another one may both analyse again
    assert attempt(box["conn"], source=small_source.qualified,
                   columns=["amount"]).error is None
    box["conn"].close()
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.error is None, outcome.describe()


def test_slot_is_released_when_the_backend_is_terminated(config, fault, small_source,
                                                         new_conn):
    config.apply(function_url=fault.url("slow/10"), max_concurrent=1, timeout=20000)
    thread, box = _start_slow_call(fault, small_source)
    with connect() as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [box["pid"]])
    thread.join(5)
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1, timeout=20000)
    deadline = time.monotonic() + 2
    while True:
        outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
        if outcome.error is None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert outcome.error is None, f"slot not released after terminate: {outcome.describe()}"


def test_slot_is_released_after_statement_timeout(config, fault, small_source, new_conn):
    config.apply(function_url=fault.url("slow/10"), max_concurrent=1, timeout=20000)
    conn = new_conn()
    conn.execute("SET statement_timeout = '200ms'")
    assert attempt(conn, source=small_source.qualified, columns=["amount"]).sqlstate == "57014"
    conn.execute("SET statement_timeout = 0")
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1, timeout=20000)
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.error is None, outcome.describe()


def test_slot_is_released_when_the_call_runs_inside_a_rolled_back_transaction(
        config, fault, small_source, new_conn):
    """The call inside an explicit transaction that later aborts keeps no slot."""
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1)
    conn = new_conn()
    conn.execute("BEGIN")
    analyze(conn, source=small_source.qualified, columns=["amount"])
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    analyze(conn, source=small_source.qualified, columns=["amount"])
    other = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    conn.execute("COMMIT")
    assert other.error is None, other.describe()


def _hammer(source, threads: int, calls: int) -> dict[str, int]:
    """``threads`` backends, ``calls`` calls each; count outcomes by SQLSTATE ("ok")."""
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def run() -> None:
        with connect() as conn:
            for _ in range(calls):
                outcome = attempt(conn, source=source.qualified, columns=["amount"])
                key = "ok" if outcome.error is None else outcome.sqlstate
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return outcomes


def test_calls_up_to_the_limit_all_succeed(config, fault, small_source):
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=4)
    outcomes = _hammer(small_source, threads=4, calls=25)
    print(f"\n4 backends x 25 calls, max_concurrent 4: {outcomes}")
    assert outcomes == {"ok": 100}


def test_calls_over_the_limit_are_ok_or_busy_nothing_else(config, fault, small_source):
    config.apply(function_url=fault.url("slow/0.05/ok-fast"), max_concurrent=2)
    outcomes = _hammer(small_source, threads=6, calls=10)
    print(f"\n6 backends x 10 calls of 50 ms, max_concurrent 2: {outcomes}")
    assert set(outcomes) <= {"ok", "53400"}, outcomes
    assert outcomes.get("ok", 0) >= 10 and outcomes.get("53400", 0) >= 1, outcomes
    # afterwards every slot is free again
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=2)
    assert _hammer(small_source, threads=2, calls=5) == {"ok": 10}


def test_slot_is_released_when_the_error_is_caught_in_plpgsql(config, fault, small_source,
                                                              new_conn):
    """An EXCEPTION block catches the failure and the transaction goes on: the slot must
    be free at once, not at the end of the transaction."""
    config.apply(function_url=fault.url("status/500"), max_concurrent=1)
    holder = new_conn()
    holder.execute("BEGIN")
    holder.execute(sql.SQL(
        "DO $$ BEGIN PERFORM perform_drift_analysis(interval '15 minutes', {}::regclass, "
        "'created_at', ARRAY['amount']::name[]); EXCEPTION WHEN others THEN NULL; END $$"
    ).format(sql.Literal(small_source.qualified)))
    other = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    holder.execute("COMMIT")
    assert other.sqlstate == "08006", f"expected the 500, got {other.describe()}"
