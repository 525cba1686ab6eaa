"""The transports: the pgsql-http one sends the same envelope and gets the same verdict;
neither lets an ordinary role or the server's environment move the request, read the key
or the URL; the same fault is the same SQLSTATE on both; a clear error without pgsql-http.

The pgsql-http tests run where the ``http`` extension is installed and skip elsewhere."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from stat_guard.wire import decode_envelope, encode_digest
from tests.fault_server import FaultServer
from tests.perform_drift_analysis.conftest import (
    TEST_KEY,
    analyze,
    attempt,
    call_in_thread,
    connect,
    listen_notices,
    record_error,
)
from tests.perform_drift_analysis.test_faults import FAULTS, MAX_RESPONSE, _apply
from tests.servers import PostgresCluster


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


# ---- what an ordinary role can do with pgsql-http's settings --------------------------


@pytest.fixture(scope="module")
def plain_role(admin, source) -> Iterator[str]:
    """An ordinary LOGIN role that may read the source table, nothing more."""
    role = f"psg_http_role_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
        ident))
    admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(source.schema), ident))
    admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(source.ident, ident))
    yield role
    admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
    admin.execute(sql.SQL("DROP ROLE {}").format(ident))


def _http_settings(conn: psycopg.Connection) -> list[tuple]:
    """The session's pgsql-http settings, as PostgreSQL and as pgsql-http list them."""
    settings = conn.execute("SELECT name, setting FROM pg_settings WHERE name LIKE 'http.%' "
                            "ORDER BY name").fetchall()
    listed = conn.execute("SELECT curlopt, value FROM http_list_curlopt() ORDER BY 1"
                          ).fetchall()
    return settings + [("listed", *row) for row in listed]


def test_pgsql_http_shows_neither_key_nor_url_at_debug5(http_extension, config, fault, source,
                                                       plain_role, new_conn, server_health):
    url = fault.url(f"key/{TEST_KEY}/ok")
    config.apply(function_url=url, function_key=TEST_KEY, transport="pgsql-http")
    secrets = (TEST_KEY, url, url.split("://", 1)[1])
    for user in (plain_role, None):  # an ordinary role, then a superuser
        conn = new_conn(user)
        heard = listen_notices(conn)
        conn.execute("SET client_min_messages = debug5")
        if user is None:
            conn.execute("SET log_min_messages = debug5")
        log_before = len(server_health.new_log_text() or "")
        result = analyze(conn, source=source.qualified, columns=["amount"])
        assert result["analysis"]["transport"] == "pgsql-http"
        logged = (server_health.new_log_text() or "")[log_before:]
        assert [m for m in heard if any(s in m for s in secrets)] == [], heard
        assert [line for line in logged.splitlines() if any(s in line for s in secrets)] == []
        # the same levels do carry pgsql-http's own debug lines outside the analysis
        heard.clear()
        conn.execute("SELECT status FROM http((%s, %s, ARRAY[http_header('x-marker', "
                     "'visible')], NULL, NULL)::http_request)", ["GET", fault.url("ok-fast")])
        assert any("x-marker" in m for m in heard), heard
        if user is None:
            assert "x-marker" in (server_health.new_log_text() or "")[log_before:]
    assert len(fault.requests) == 4


ROLE_SETTINGS = {
    "http.curlopt_proxy": "{proxy}",
    "http.curlopt_pre_proxy": "socks5://127.0.0.1:{port}",
    "http.curlopt_proxyport": "{port}",
    "http.curlopt_proxyusername": "role",
    "http.curlopt_proxypassword": "role-password",
    "http.curlopt_dns_servers": "127.0.0.1:{port}",
    "http.curlopt_ipresolve": "2",  # IPv6 only: the IPv4 function would be unreachable
    "http.curlopt_timeout_ms": "1",
    "http.curlopt_connecttimeout_ms": "1",
    "http.curlopt_useragent": "role-agent",
    "http.curlopt_tlsauth_username": "role",
    "http.curlopt_tlsauth_password": "role-password",
    "http.curlopt_tlsauth_type": "SRP",
    "http.curlopt_sslcert_blob": "not a certificate",
    "http.curlopt_sslkey_blob": "not a key",
    "http.curlopt_sslcerttype": "ENG",
}


def test_a_roles_pgsql_http_settings_do_not_move_the_request(http_extension, config, fault,
                                                            source, plain_role, new_conn):
    config.apply(function_url=fault.url(f"key/{TEST_KEY}/ok"), function_key=TEST_KEY,
                 transport="pgsql-http")
    with FaultServer() as proxy:
        conn = new_conn(plain_role)
        # first: pgsql-http applies every option the session has set when it is called
        conn.execute("SELECT http_set_curlopt('CURLOPT_PROXY', %s)", [proxy.base_url])
        for name, value in ROLE_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)",
                         [name, value.format(proxy=proxy.base_url, port=proxy.port)])
        before = _http_settings(conn)
        result = analyze(conn, source=source.qualified, columns=["amount"])
        assert result["verdict"] in ("ok", "warning", "drift"), result
        assert proxy.connections == [] and proxy.requests == []
        (request,) = fault.requests
        assert request.headers.get("x-functions-key") == TEST_KEY
        assert request.headers.get("user-agent", "").startswith("pg_stat_guard/")
        assert _http_settings(conn) == before


@pytest.mark.parametrize("name, value", [
    ("http.curlopt_tlsauth_username", "role"),
    ("http.curlopt_dns_servers", "127.0.0.1:53"),
    ("http.curlopt_sslkey_blob", "not a key"),
])
def test_a_value_set_for_the_role_is_refused_before_anything_is_sent(
        name, value, http_extension, config, fault, source, plain_role, admin, new_conn):
    config.apply(function_url=fault.url(f"key/{TEST_KEY}/ok"), function_key=TEST_KEY,
                 transport="pgsql-http")
    role = sql.Identifier(plain_role)
    admin.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(role, sql.SQL(name),
                                                              sql.Literal(value)))
    try:
        outcome = attempt(new_conn(plain_role), source=source.qualified, columns=["amount"])
    finally:
        admin.execute(sql.SQL("ALTER ROLE {} RESET {}").format(role, sql.SQL(name)))
    print(f"\n{name} for the role: {outcome.describe()}")
    assert outcome.sqlstate == "55000", outcome.describe()
    assert name in outcome.message, outcome.describe()
    assert fault.requests == []


def test_the_sessions_http_settings_come_back_after_a_call_an_error_and_a_cancel(
        http_extension, config, fault, source, plain_role, new_conn):
    conn = new_conn(plain_role)
    # pgsql-http's library loaded first: defining its old alias http.timeout_msec resets
    # the storage it shares with http.curlopt_timeout_ms, losing a value SET before
    conn.execute("SELECT bytea_to_text(''::bytea)")
    conn.execute("SET http.curlopt_timeout_ms = '7000'")
    conn.execute("SET http.curlopt_proxy = 'http://127.0.0.1:9'")
    conn.execute("SET http.curlopt_useragent = 'mine'")
    conn.execute("SELECT http_set_curlopt('CURLOPT_CONNECTTIMEOUT_MS', '4000')")
    before = _http_settings(conn)
    assert ("http.curlopt_timeout_ms", "7000") in before
    assert ("listed", "CURLOPT_CONNECTTIMEOUT_MS", "4000") in before

    config.apply(function_url=fault.url("ok"), transport="pgsql-http")
    analyze(conn, source=source.qualified, columns=["amount"])
    assert _http_settings(conn) == before, "after a verdict"

    config.apply(function_url=fault.url("status/500"), transport="pgsql-http")
    assert attempt(conn, source=source.qualified, columns=["amount"]).sqlstate == "08006"
    assert _http_settings(conn) == before, "after an error"

    config.apply(function_url=fault.url("slow/10"), transport="pgsql-http", timeout=20000)
    thread, box = call_in_thread(lambda: conn, source=source.qualified, columns=["amount"])
    fault.wait_for_requests(3, timeout=5)
    time.sleep(0.2)
    with connect() as other:
        other.execute("SELECT pg_cancel_backend(%s)", [box["pid"]])
    thread.join(15)
    assert box["attempt"].sqlstate == "57014", box["attempt"].describe()
    assert _http_settings(conn) == before, "after a cancel"

    conn.execute("RESET http.curlopt_timeout_ms")
    assert conn.execute("SHOW http.curlopt_timeout_ms").fetchone()[0] == ""


# ---- the same fault, the same SQLSTATE ----------------------------------------------------


@pytest.mark.parametrize("case", FAULTS, ids=[f.id for f in FAULTS])
def test_both_transports_give_the_same_sqlstate_for_each_fault(case, http_extension, config,
                                                               fault, source, new_conn):
    outcomes = {}
    with ExitStack() as stack:
        url = case.url(fault, stack)
        for transport in ("curl", "pgsql-http"):
            if case.id.startswith("huge"):
                # pgsql-http reads a whole answer before the size limit applies
                config.apply(function_url=url, function_key=TEST_KEY, timeout=5000,
                             max_response_bytes=MAX_RESPONSE, transport=transport)
            else:
                _apply(config, url, transport=transport)
            outcomes[transport] = attempt(new_conn(), source=source.qualified,
                                          columns=["amount"])
            print(f"\n{case.id} by {transport}: {outcomes[transport].describe()}")
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    for outcome in outcomes.values():
        assert TEST_KEY not in str(outcome.error) and host_port not in str(outcome.error)
    curl, pgsql_http = outcomes["curl"], outcomes["pgsql-http"]
    if case.id == "redirect_not_followed":
        # pgsql-http follows redirects with the key (docs/analysis.md, Transports); curl not
        print([(r.path, r.headers.get("x-functions-key"), r.outcome, r.status, r.body_length)
               for r in fault.requests])
        assert curl.sqlstate == "08006"
        followed = [r for r in fault.requests if r.path == "/ok/api/drift"]
        assert followed and followed[0].headers.get("x-functions-key") == TEST_KEY
        return
    assert curl.sqlstate is not None and pgsql_http.sqlstate == curl.sqlstate, (
        curl.describe(), pgsql_http.describe())
    assert pgsql_http.message.startswith("drift function"), pgsql_http.describe()


# ---- the server's environment ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["curl", "pgsql-http"])
def test_proxy_variables_and_netrc_in_the_servers_environment_are_ignored(
        transport, fault, tmp_path: Path):
    """A server started with http_proxy, HTTPS_PROXY, ALL_PROXY and a .netrc in its
    environment: the request still goes straight to the function, without credentials."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    home.chmod(0o755)
    (home / ".netrc").chmod(0o644)
    with FaultServer() as proxy:
        proxied = {name: proxy.base_url for name in (
            "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
            "ALL_PROXY")}
        url = fault.url(f"key/{TEST_KEY}/ok")
        cluster = PostgresCluster.start(
            settings={"pg_stat_guard.function_url": f"'{url}'",
                      "pg_stat_guard.function_key": f"'{TEST_KEY}'",
                      "pg_stat_guard.transport": f"'{transport}'"},
            environment={**proxied, "HOME": str(home), "NETRC": str(home / ".netrc")},
            prefix="psg-env-pg-")
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                if transport == "pgsql-http":
                    if conn.execute("SELECT 1 FROM pg_available_extensions "
                                    "WHERE name = 'http'").fetchone() is None:
                        pytest.skip("the pgsql-http extension ('http') is not available")
                    conn.execute("CREATE EXTENSION http")
                conn.execute("CREATE EXTENSION pg_stat_guard")
                conn.execute("CREATE TABLE events (created_at timestamptz NOT NULL, "
                             "amount float8)")
                conn.execute("INSERT INTO events SELECT now() - g * interval '1 second', "
                             "random() FROM generate_series(1, 3000) g")
                try:
                    result = conn.execute(
                        "SELECT perform_drift_analysis('15 minutes', 'events', 'created_at', "
                        "ARRAY['amount'])").fetchone()[0]
                except psycopg.Error as exc:
                    record_error(exc)
                    raise
        finally:
            cluster.stop()
        assert result["analysis"]["transport"] == transport
        assert proxy.connections == [] and proxy.requests == []
        (request,) = fault.requests
        assert "authorization" not in request.headers
        assert request.path == f"/key/{TEST_KEY}/ok/api/drift"
