"""A dead, slow or lying drift function: a clean, fast ERROR (or a JSON status), never a
hung or crashed backend. Cancel and statement_timeout end a call within 100 ms."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fault_server import FaultServer, refused_port, unanswered_port
from tests.perform_drift_analysis.conftest import (
    TEST_KEY,
    analyze,
    attempt,
    backend_pid,
    call_in_thread,
    connect,
)

TIMEOUT_MS = 500
CONNECT_TIMEOUT_MS = 300
MAX_RESPONSE = 1024 * 1024
HUGE = 50 * 1024 * 1024
SLACK = 0.100  # the spec's bound above the configured timeout


@dataclass(frozen=True)
class Fault:
    id: str
    mode: str | None = None  # a fault-server mode; None for the socket-level faults
    sqlstates: tuple[str, ...] = ("08000", "08001", "08006")
    settings: dict[str, Any] = field(default_factory=dict)
    min_elapsed: float = 0.0

    def url(self, server: FaultServer, stack: ExitStack) -> str:
        if self.id == "tls_to_a_plain_http_server":
            return server.url("ok").replace("http://", "https://")
        if self.id == "endpoint_down":
            return f"http://127.0.0.1:{stack.enter_context(refused_port())}/api/drift"
        if self.id == "connect_timeout":
            return f"http://127.0.0.1:{stack.enter_context(unanswered_port())}/api/drift"
        return server.url(self.mode)


TIMEOUT_STATES = ("57014", "08000", "08001", "08006")
FAULTS = [
    Fault("endpoint_down"),
    Fault("connect_timeout", sqlstates=TIMEOUT_STATES,
          min_elapsed=CONNECT_TIMEOUT_MS / 1e3 * 0.9),
    Fault("slow_10s", "slow/10", TIMEOUT_STATES, min_elapsed=TIMEOUT_MS / 1e3 * 0.9),
    Fault("status_500", "status/500"),
    Fault("status_503", "status/503"),
    Fault("status_404", "status/404"),
    Fault("malformed_json", "malformed"),
    Fault("json_array", "notobject"),
    Fault("json_without_verdict", "noverdict"),
    Fault("huge_50MB_with_length", f"huge/{HUGE}"),
    Fault("huge_50MB_chunked", f"huge-chunked/{HUGE}"),
    Fault("wrong_key_401", "key/not-the-configured-key/ok"),
    Fault("connection_closed", "close"),
    Fault("redirect_not_followed", "redirect"),
    Fault("answer_dripping_past_the_timeout", "drip/3", TIMEOUT_STATES,
          min_elapsed=TIMEOUT_MS / 1e3 * 0.9),
    Fault("truncated_answer", "truncated"),
    Fault("tls_to_a_plain_http_server"),
    Fault("empty_body", "empty-body"),
    Fault("nan_literal", "nan-literal"),
    Fault("invalid_utf8", "invalid-utf8"),
    Fault("trailing_garbage", "trailing-garbage"),
]


@pytest.fixture(scope="module")
def small_source(module_sources):
    """A few hundred rows: the aggregation is negligible beside the HTTP timings."""
    return module_sources.create(current_rows=300, hist_rows=1000)


def _apply(config, url: str, **extra: Any) -> None:
    config.apply(function_url=url, function_key=TEST_KEY, timeout=TIMEOUT_MS,
                 connect_timeout=CONNECT_TIMEOUT_MS, max_response_bytes=MAX_RESPONSE, **extra)


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_is_a_clean_error_within_the_timeout(case, config, fault, small_source,
                                                   new_conn):
    with ExitStack() as stack:
        _apply(config, case.url(fault, stack))
        conn = new_conn()
        outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
        print(f"\n{case.id}: {outcome.describe()}")
        assert outcome.error is not None, f"{case.id} returned a result: {outcome.result}"
        assert outcome.sqlstate in case.sqlstates, outcome.describe()
        assert outcome.message.startswith("drift function"), outcome.describe()
        assert TEST_KEY not in str(outcome.error)
        assert outcome.elapsed < TIMEOUT_MS / 1e3 + SLACK, outcome.describe()
        assert outcome.elapsed >= case.min_elapsed, outcome.describe()
        # the backend is still usable
        assert conn.execute("SELECT 1").fetchone() == (1,)
    if case.id.startswith("huge"):
        (request,) = fault.requests
        fault.wait_for_outcome(request, timeout=5)
        print(f"server sent {request.bytes_sent:,} of {HUGE:,} bytes ({request.outcome})")
        assert request.bytes_sent < HUGE, "the client read the whole oversized answer"
    if case.id == "redirect_not_followed":
        assert [r.path for r in fault.requests] == ["/redirect/api/drift"]


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_with_on_unavailable_json_returns_unavailable(case, config, fault,
                                                            small_source, new_conn):
    with ExitStack() as stack:
        _apply(config, case.url(fault, stack))
        conn = new_conn(on_unavailable="json")
        outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
        print(f"\n{case.id}: {outcome.describe()}")
        assert outcome.error is None, outcome.describe()
        assert isinstance(outcome.result, dict)
        assert outcome.result.get("status") == "unavailable", outcome.result
        assert outcome.result.get("verdict") not in ("ok", "warning", "drift")
        assert TEST_KEY not in str(outcome.result)
        assert outcome.elapsed < TIMEOUT_MS / 1e3 + SLACK, outcome.describe()


@pytest.mark.parametrize("mode", ["nul-escape", "nested/100000", "verdict-not-string"])
def test_odd_but_parsable_answers_never_crash(mode, config, fault, small_source, new_conn,
                                             admin, server_health):
    """JSON that a parser may choke on (NUL escape, deep nesting, a number for the
    verdict): a clean error or a result, the backend alive, the server up."""
    _apply(config, fault.url(mode))
    conn = new_conn()
    outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
    print(f"\n{mode}: {outcome.describe()}")
    if outcome.error is not None:
        assert outcome.sqlstate[:2] not in ("XX", "58"), outcome.describe()
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == \
        server_health.postmaster_start


@pytest.mark.parametrize("size, ok", [(MAX_RESPONSE - 1, True), (MAX_RESPONSE, True),
                                      (MAX_RESPONSE + 1, False)],
                         ids=["one_below", "at_the_limit", "one_above"])
@pytest.mark.parametrize("framing", ["huge", "huge-chunked"])
def test_max_response_bytes_is_exact(size, ok, framing, config, fault, small_source,
                                     new_conn):
    _apply(config, fault.url(f"{framing}/{size}"))
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    if ok:
        assert outcome.error is None, outcome.describe()
        assert outcome.result["verdict"] == "ok" and len(outcome.result["pad"]) > size - 100
    else:
        assert outcome.sqlstate in ("08000", "08001", "08006"), outcome.describe()
        assert "max_response_bytes" in outcome.message


def test_url_not_set_is_55000(config, small_source, new_conn):
    config.apply()
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.sqlstate == "55000", outcome.describe()
    assert outcome.message.startswith("pg_stat_guard.function_url is not set")


def test_timeout_setting_bounds_a_slow_answer_that_would_succeed(config, fault, small_source,
                                                                 new_conn):
    """1.5 s answer, 1 s timeout: the timeout wins; 0.3 s answer: the verdict comes back."""
    config.apply(function_url=fault.url("slow/1.5/ok"), timeout=1000)
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.sqlstate in TIMEOUT_STATES and 0.9 <= outcome.elapsed < 1.1, \
        outcome.describe()
    config.apply(function_url=fault.url("slow/0.3/ok"), timeout=1000)
    outcome = attempt(new_conn(), source=small_source.qualified, columns=["amount"])
    assert outcome.error is None and outcome.result["status"] == "ok", outcome.describe()
    assert 0.3 <= outcome.elapsed < 0.6


def _cancel_during_slow_call(config, fault, small_source, json_mode: bool) -> None:
    config.apply(function_url=fault.url("slow/10"), timeout=20000)
    settings = {"on_unavailable": "json"} if json_mode else {}
    thread, box = call_in_thread(lambda: connect(**settings), source=small_source.qualified,
                                 columns=["amount"])
    (request,) = fault.wait_for_requests(1, timeout=5)
    time.sleep(0.2)  # well inside the HTTP wait
    with connect() as other:
        cancelled_at = time.monotonic()
        assert other.execute("SELECT pg_cancel_backend(%s)", [box["pid"]]).fetchone()[0]
    thread.join(15)
    assert not thread.is_alive(), "the call did not end after pg_cancel_backend"
    outcome = box["attempt"]
    latency = outcome.ended - cancelled_at
    print(f"\ncancel -> {outcome.describe()}; ended {latency * 1e3:.1f} ms after the cancel")
    assert outcome.sqlstate == "57014", outcome.describe()
    assert outcome.message.startswith("canceling statement")
    assert latency < 0.100, f"call ended {latency * 1e3:.1f} ms after the cancel"
    # the HTTP connection of the cancelled call is closed, not left dangling
    assert fault.wait_for_outcome(request, timeout=2) == "client_closed", request.outcome
    conn = box["conn"]
    assert conn.execute("SELECT 1").fetchone() == (1,)
    config.apply(function_url=fault.url("ok-fast"), timeout=20000)
    conn.close()
    # a new backend analyses normally afterwards (no slot or state left behind)
    with connect() as again:
        analyze(again, source=small_source.qualified, columns=["amount"])


def test_cancel_ends_the_call_within_100ms(config, fault, small_source):
    _cancel_during_slow_call(config, fault, small_source, json_mode=False)


def test_cancel_is_an_error_even_with_on_unavailable_json(config, fault, small_source):
    _cancel_during_slow_call(config, fault, small_source, json_mode=True)


@pytest.mark.parametrize("json_mode", [False, True], ids=["error", "on_unavailable_json"])
def test_statement_timeout_ends_a_slow_call_within_100ms(json_mode, config, fault,
                                                         small_source, new_conn):
    config.apply(function_url=fault.url("slow/10"), timeout=20000)
    conn = new_conn(**({"on_unavailable": "json"} if json_mode else {}))
    conn.execute("SET statement_timeout = '300ms'")
    outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
    print(f"\nstatement_timeout 300ms -> {outcome.describe()}")
    assert outcome.sqlstate == "57014", outcome.describe()
    assert outcome.message.startswith("canceling statement")
    assert 0.29 <= outcome.elapsed < 0.300 + SLACK, outcome.describe()
    conn.execute("SET statement_timeout = 0")
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_terminate_backend_during_a_call_ends_only_that_backend(config, fault, small_source,
                                                                admin):
    started = admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    config.apply(function_url=fault.url("slow/10"), timeout=20000)
    thread, box = call_in_thread(connect, source=small_source.qualified, columns=["amount"])
    fault.wait_for_requests(1, timeout=5)
    time.sleep(0.1)
    with connect() as other:
        terminated_at = time.monotonic()
        other.execute("SELECT pg_terminate_backend(%s)", [box["pid"]])
    thread.join(15)
    outcome = box["attempt"]
    print(f"\nterminate -> {outcome.describe()}; "
          f"{(outcome.ended - terminated_at) * 1e3:.1f} ms after")
    assert outcome.error is not None
    assert outcome.ended - terminated_at < 0.5
    assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    assert admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                         [box["pid"]]).fetchone()[0] == 0 or _gone_soon(admin, box["pid"])


def _gone_soon(admin, pid: int) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                         [pid]).fetchone()[0] == 0:
            return True
        time.sleep(0.02)
    return False


def test_errors_repeat_cleanly_in_one_backend(config, fault, small_source, new_conn):
    """Twenty faults in a row in one backend, then a good call: no state is left behind."""
    conn = new_conn()
    pid = backend_pid(conn)
    modes = ["status/500", "malformed", "close", "notobject", f"huge/{HUGE}"]
    for i in range(20):
        _apply(config, fault.url(modes[i % len(modes)]))
        outcome = attempt(conn, source=small_source.qualified, columns=["amount"])
        assert outcome.error is not None and outcome.sqlstate.startswith("08"), \
            outcome.describe()
    _apply(config, fault.url("ok"))
    result = analyze(conn, source=small_source.qualified, columns=["amount"])
    assert result["status"] == "ok" and backend_pid(conn) == pid


def test_server_survived_the_faults(admin, server_health):
    assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == \
        server_health.postmaster_start
    assert server_health.crash_lines() == []
