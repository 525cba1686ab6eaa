"""The pgsql-http transport: same envelope bytes, same verdict; a clear error without it."""

from __future__ import annotations

import time

import pytest

from stat_guard.wire import decode_envelope, encode_digest
from tests.analysis.conftest import TEST_KEY, analyze, attempt, call_in_thread, connect


def _http_available(admin) -> bool:
    return admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'http'"
                         ).fetchone() is not None


def _http_installed(admin) -> bool:
    return admin.execute("SELECT 1 FROM pg_extension WHERE extname = 'http'"
                         ).fetchone() is not None


@pytest.fixture(scope="module")
def source(module_sources):
    return module_sources.create(current_rows=500, hist_rows=2000, noisy=True)


@pytest.fixture()
def http_extension(admin):
    if not _http_available(admin):
        pytest.skip("the pgsql-http extension ('http') is not available on this server")
    created = not _http_installed(admin)
    if created:
        admin.execute("CREATE EXTENSION http")
    yield
    if created:
        admin.execute("DROP EXTENSION IF EXISTS http")


def test_pgsql_http_sends_the_same_envelope_and_returns_the_verdict(
        http_extension, config, fault, source, new_conn):
    columns = ["amount", "noisy"]
    config.apply(function_url=fault.url(f"key/{TEST_KEY}/ok"), function_key=TEST_KEY,
                 transport="curl")
    by_curl = analyze(new_conn(), source=source.qualified, columns=columns)
    config.apply(function_url=fault.url(f"key/{TEST_KEY}/ok"), function_key=TEST_KEY,
                 transport="pgsql-http")
    by_http = analyze(new_conn(), source=source.qualified, columns=columns)
    curl_request, http_request = fault.requests
    assert by_curl["analysis"]["transport"] == "curl"
    assert by_http["analysis"]["transport"] == "pgsql-http"
    assert http_request.content_type.split(";")[0].strip() == "application/octet-stream"
    assert http_request.headers.get("x-functions-key") == TEST_KEY
    assert http_request.body[:4] == b"PSGE"
    sent_by_curl, sent_by_http = decode_envelope(curl_request.body), \
        decode_envelope(http_request.body)
    for column in columns:
        for role in ("current", "baseline"):
            assert encode_digest(getattr(sent_by_http.columns[column], role)) == \
                encode_digest(getattr(sent_by_curl.columns[column], role)), (column, role)
    assert by_http["verdict"] == by_curl["verdict"]
    assert by_http["columns"]["noisy"]["current"] == by_curl["columns"]["noisy"]["current"]


def test_pgsql_http_transport_without_the_extension_is_a_clear_error(
        admin, config, fault, source, new_conn):
    if _http_installed(admin):
        pytest.skip("the http extension is installed in this database")
    config.apply(function_url=fault.url("ok"), transport="pgsql-http")
    outcome = attempt(new_conn(), source=source.qualified, columns=["amount"])
    print(f"\n{outcome.describe()}")
    assert outcome.error is not None, outcome.describe()
    assert outcome.sqlstate in ("55000", "0A000", "58P01", "42704", "42883"), \
        outcome.describe()
    assert "http" in outcome.message, outcome.describe()
    assert fault.requests == []


def test_auto_transport_uses_curl_without_the_http_extension(admin, config, fault, source,
                                                             new_conn):
    if _http_installed(admin):
        pytest.skip("the http extension is installed in this database")
    config.apply(function_url=fault.url("ok"), transport="auto")
    result = analyze(new_conn(), source=source.qualified, columns=["amount"])
    assert result["analysis"]["transport"] == "curl"
    assert len(fault.requests) == 1


@pytest.mark.parametrize("mode, states, bound", [
    ("slow/10", ("57014", "08000", "08001", "08006"), 0.6),
    ("status/500", ("08000", "08001", "08006"), 0.6),
    ("malformed", ("08000", "08001", "08006"), 0.6),
    (f"huge/{50 * 1024 * 1024}", ("08000", "08001", "08006"), 5.0),
], ids=["slow_10s", "status_500", "malformed", "huge_50MB"])
def test_pgsql_http_faults_are_clean_errors(mode, states, bound, http_extension, config, fault,
                                            source, new_conn):
    config.apply(function_url=fault.url(mode), function_key=TEST_KEY, transport="pgsql-http",
                 timeout=500, max_response_bytes=1024 * 1024)
    conn = new_conn()
    outcome = attempt(conn, source=source.qualified, columns=["amount"])
    print(f"\npgsql-http {mode}: {outcome.describe()}")
    assert outcome.sqlstate in states, outcome.describe()
    assert outcome.message.startswith("drift function"), outcome.describe()
    assert TEST_KEY not in str(outcome.error)
    assert outcome.elapsed < bound, outcome.describe()
    assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("json_mode", [False, True], ids=["error", "on_unavailable_json"])
def test_pgsql_http_cancel_ends_the_call_with_57014(json_mode, http_extension, config, fault,
                                                    source):
    """pgsql-http notices a cancel only in its progress callback (coarse, up to about a
    second): the call still ends with 57014 (a cancel, not an unreachable function, even
    with on_unavailable = json), well before the slow answer."""
    config.apply(function_url=fault.url("slow/10"), transport="pgsql-http", timeout=20000)
    settings = {"on_unavailable": "json"} if json_mode else {}
    thread, box = call_in_thread(lambda: connect(**settings), source=source.qualified,
                                 columns=["amount"])
    fault.wait_for_requests(1, timeout=5)
    time.sleep(0.2)
    with connect() as other:
        cancelled_at = time.monotonic()
        other.execute("SELECT pg_cancel_backend(%s)", [box["pid"]])
    thread.join(15)
    outcome = box["attempt"]
    latency = outcome.ended - cancelled_at
    print(f"\npgsql-http cancel -> {outcome.describe()}; {latency * 1e3:.0f} ms after the cancel")
    box["conn"].close()
    assert outcome.sqlstate == "57014", outcome.describe()
    assert latency < 1.5, f"{latency:.2f} s"


def test_pgsql_http_statement_timeout_is_57014(http_extension, config, fault, source,
                                              new_conn):
    config.apply(function_url=fault.url("slow/10"), transport="pgsql-http", timeout=20000)
    conn = new_conn()
    conn.execute("SET statement_timeout = '300ms'")
    outcome = attempt(conn, source=source.qualified, columns=["amount"])
    print(f"\npgsql-http statement_timeout 300ms -> {outcome.describe()}")
    assert outcome.sqlstate == "57014", outcome.describe()
    assert outcome.elapsed < 1.5, outcome.describe()
