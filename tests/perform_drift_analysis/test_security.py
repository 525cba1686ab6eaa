"""Who may do what: the URL and key are the superuser's, the analysis runs with the
caller's privileges, and identifiers are data, never SQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from stat_guard.wire import decode_envelope
from tests.fault_server import FaultServer, refused_port, self_signed_tls
from tests.perform_drift_analysis.conftest import (
    SEEN_MESSAGES,
    TEST_KEY,
    analyze,
    attempt,
    connect,
    record_error,
    run_sql_error,
)

LOAD_LIBRARY = "SELECT tdigest_count(tdigest_agg(x)) FROM (VALUES (1.0::float8)) v(x)"
SECRET_SETTINGS = ("pg_stat_guard.function_url", "pg_stat_guard.function_key")
SIGHUP_SETTINGS = (*SECRET_SETTINGS, "pg_stat_guard.timeout", "pg_stat_guard.max_concurrent",
                   "pg_stat_guard.max_response_bytes", "pg_stat_guard.transport")


@pytest.fixture(scope="module")
def plain(admin, module_sources):
    """An ordinary LOGIN role and tables it may read fully, not at all, or in part."""
    role = f"psg_plain_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
        sql.Identifier(role)))
    schema = module_sources.new_schema()
    tables = {name: module_sources.create(table=name, schema=schema, current_rows=300,
                                          hist_rows=1000)
              for name in ("granted", "denied", "partial", "no_time")}
    r, s = sql.Identifier(role), sql.Identifier(schema)
    admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
    admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables["granted"].ident, r))
    admin.execute(sql.SQL("GRANT SELECT (id, created_at, amount) ON {} TO {}").format(
        tables["partial"].ident, r))
    admin.execute(sql.SQL("GRANT SELECT (id, amount, latency) ON {} TO {}").format(
        tables["no_time"].ident, r))
    yield role, tables
    admin.execute(sql.SQL("DROP OWNED BY {}").format(r))
    admin.execute(sql.SQL("DROP ROLE {}").format(r))


def _secrets(fault) -> tuple[str, ...]:
    return (TEST_KEY, f"127.0.0.1:{fault.port}")


def _reads(conn: psycopg.Connection, name: str) -> list[str]:
    """Every way an ordinary role might read a setting; the values it got (errors skipped)."""
    values: list[str] = []
    for statement in (sql.SQL("SHOW {}").format(sql.SQL(name)),
                      sql.SQL("SELECT current_setting({})").format(sql.Literal(name)),
                      sql.SQL("SELECT current_setting({}, true)").format(sql.Literal(name)),
                      sql.SQL("SELECT setting FROM pg_settings WHERE name = {}").format(
                          sql.Literal(name)),
                      sql.SQL("SELECT reset_val FROM pg_settings WHERE name = {}").format(
                          sql.Literal(name)),
                      sql.SQL("SELECT setting FROM pg_file_settings WHERE name = {}").format(
                          sql.Literal(name)),
                      sql.SQL("SELECT pg_read_file('postgresql.auto.conf')")):
        try:
            rows = conn.execute(statement).fetchall()
        except psycopg.Error as exc:
            record_error(exc)
            continue
        values += [str(v) for row in rows for v in row if v is not None]
    try:
        values += [str(v) for row in conn.execute("SHOW ALL").fetchall() for v in row]
    except psycopg.Error as exc:
        record_error(exc)
    return values


@pytest.mark.parametrize("library", ["fresh_backend", "library_loaded",
                                     "session_preload_for_the_role"])
def test_ordinary_role_cannot_read_the_url_or_the_key(library, plain, config, fault, admin):
    """In a new backend the library is not loaded yet unless preloaded, and PostgreSQL
    keeps the configured values of unknown settings as plain placeholders. The third case
    preloads the library for this role only (what docs/analysis.md advises server-wide)."""
    config.apply(function_url=fault.url("ok"), function_key=TEST_KEY)
    role, _ = plain
    if library == "session_preload_for_the_role":
        admin.execute(sql.SQL("ALTER ROLE {} SET session_preload_libraries = "
                              "'pg_stat_guard'").format(sql.Identifier(role)))
    try:
        with connect(role) as conn:
            if library == "library_loaded":
                conn.execute(LOAD_LIBRARY)
            leaked = {name: [v for v in _reads(conn, name)
                             if any(secret in v for secret in _secrets(fault))]
                      for name in SECRET_SETTINGS}
    finally:
        admin.execute(sql.SQL("ALTER ROLE {} RESET session_preload_libraries").format(
            sql.Identifier(role)))
    preload = admin.execute(
        "SELECT current_setting('shared_preload_libraries') || ',' "
        "|| current_setting('session_preload_libraries')").fetchone()[0]
    assert leaked == {name: [] for name in SECRET_SETTINGS}, (
        f"an ordinary role read a secret setting ({library}; preload libraries: "
        f"{preload!r}): {leaked}")


def test_ordinary_role_cannot_set_server_settings_once_loaded(plain, config, fault):
    config.apply(function_url=fault.url("ok"), function_key=TEST_KEY)
    role, _ = plain
    evil = fault.url("status/418")
    with connect(role) as conn:
        conn.execute(LOAD_LIBRARY)
        for name in SIGHUP_SETTINGS:
            value = {"pg_stat_guard.function_url": evil, "pg_stat_guard.function_key": "x",
                     "pg_stat_guard.timeout": "1000", "pg_stat_guard.max_concurrent": "2",
                     "pg_stat_guard.max_response_bytes": "2048",
                     "pg_stat_guard.transport": "curl"}[name]
            for statement in (sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value)),
                              sql.SQL("SELECT set_config({}, {}, false)").format(
                                  sql.Literal(name), sql.Literal(value))):
                error = run_sql_error(conn, statement)
                assert error is not None, f"{role} could run: {statement.as_string(conn)}"
                assert error.sqlstate in ("42501", "55P02"), (statement.as_string(conn),
                                                              error.sqlstate, str(error))


@pytest.mark.parametrize("how", ["set_before_load", "set_after_load", "alter_role",
                                 "alter_database", "set_config"])
def test_ordinary_role_cannot_redirect_the_data(how, plain, config, fault, admin):
    """Whatever an ordinary role tries, the request goes to the configured URL."""
    config.apply(function_url=fault.url("ok"), function_key=TEST_KEY)
    role, tables = plain
    evil = fault.url("status/418")
    url_setting = sql.SQL("pg_stat_guard.function_url")
    with connect(role) as conn:
        if how == "set_after_load":
            conn.execute(LOAD_LIBRARY)
        if how in ("set_before_load", "set_after_load"):
            run_sql_error(conn, sql.SQL("SET {} = {}").format(url_setting, sql.Literal(evil)))
            run_sql_error(conn, sql.SQL("SET pg_stat_guard.function_key = 'attacker'"))
        elif how == "set_config":
            run_sql_error(conn, "SELECT set_config('pg_stat_guard.function_url', %s, false)",
                          [evil])
        elif how == "alter_role":
            run_sql_error(conn, sql.SQL("ALTER ROLE CURRENT_USER SET {} = {}").format(
                url_setting, sql.Literal(evil)))
        elif how == "alter_database":
            error = run_sql_error(conn, sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(conn.info.dbname), url_setting, sql.Literal(evil)))
            assert error is not None and error.sqlstate == "42501"
        try:
            # a new connection picks up role/database settings
            with connect(role) as fresh:
                outcome = attempt(fresh, source=tables["granted"].qualified,
                                  columns=["amount"])
            outcome_same = attempt(conn, source=tables["granted"].qualified,
                                   columns=["amount"])
        finally:
            admin.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(role)))
    paths = [r.path for r in fault.requests]
    assert all(p == "/ok/api/drift" for p in paths), f"data went to {paths} ({how})"
    for result in (outcome, outcome_same):
        assert result.error is None, result.describe()
        assert result.result["status"] == "ok"
    assert all(r.headers.get("x-functions-key") == TEST_KEY for r in fault.requests)


def test_no_select_on_the_table_is_42501_and_nothing_is_sent(plain, config, fault):
    config.apply(function_url=fault.url("ok"), function_key=TEST_KEY)
    role, tables = plain
    with connect(role) as conn:
        outcome = attempt(conn, source=tables["denied"].qualified, columns=["amount"])
        baseline = run_sql_error(
            conn, "SELECT capture_baseline(%s::regclass, 'created_at', ARRAY['amount']::name[],"
            " now() - interval '1 day', now())", [tables["denied"].qualified])
    assert outcome.sqlstate == "42501", outcome.describe()
    assert outcome.message.startswith("permission denied"), outcome.describe()
    assert baseline is not None and baseline.sqlstate == "42501", baseline
    assert fault.requests == [], "rows of a table the caller may not read were sent"


def test_no_select_on_a_column_is_42501(plain, config, fault):
    config.apply(function_url=fault.url("ok"), function_key=TEST_KEY)
    role, tables = plain
    with connect(role) as conn:
        denied_value = attempt(conn, source=tables["partial"].qualified,
                               columns=["amount", "latency"])
        denied_time = attempt(conn, source=tables["no_time"].qualified,
                              columns=["amount"])
        allowed = attempt(conn, source=tables["partial"].qualified, columns=["amount"])
    assert denied_value.sqlstate == "42501", denied_value.describe()
    assert denied_value.message.startswith("permission denied")
    assert denied_time.sqlstate == "42501", denied_time.describe()
    assert allowed.error is None, allowed.describe()
    assert allowed.result["columns"]["amount"]["current"]["count"] == 300
    assert len(fault.requests) == 1


@pytest.fixture()
def plain_role_faults(plain, config, fault):
    """Errors an ordinary role gets from five kinds of failing endpoints (key configured)."""
    role, tables = plain
    outcomes = []
    with refused_port() as port:
        cases = [fault.url("key/other/ok"), fault.url("status/500"), fault.url("malformed"),
                 fault.url("close"), f"http://127.0.0.1:{port}/secret-path/api/drift"]
        for url in cases:
            config.apply(function_url=url, function_key=TEST_KEY, timeout=500)
            with connect(role) as conn:
                outcome = attempt(conn, source=tables["granted"].qualified, columns=["amount"])
            assert outcome.error is not None and outcome.sqlstate.startswith("08"), \
                outcome.describe()
            diag = outcome.error.diag
            text = " ".join(str(x) for x in (outcome.error, diag.message_detail,
                                             diag.message_hint, diag.context) if x)
            outcomes.append((url, text))
    return outcomes


def test_errors_shown_to_an_ordinary_role_never_show_the_key(plain_role_faults):
    for _url, text in plain_role_faults:
        assert TEST_KEY not in text, text


def test_errors_shown_to_an_ordinary_role_do_not_show_the_url(plain_role_faults):
    """The URL is a superuser-only setting: an error must not hand it to any caller."""
    shown = []
    for url, text in plain_role_faults:
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        if host_port in text or "secret-path" in text:
            shown.append(text)
    assert shown == [], f"errors show the function URL to an ordinary role: {shown}"


def test_key_never_appears_in_messages_or_the_server_log(server_health):
    """Everything seen so far in the run (errors, notices) and the server's error
    reports in its log."""
    leaked = [m for m in SEEN_MESSAGES if TEST_KEY in m]
    assert leaked == []
    if server_health.new_log_text() is None:
        pytest.skip("server log not readable here")
    assert [line for line in server_health.error_report_lines() if TEST_KEY in line] == []


# ---- hostile identifiers -------------------------------------------------------------

HOSTILE_TABLE = 'we"ird; DROP TABLE x'
HOSTILE_TIME = 'created at;'
HOSTILE_COLUMNS = ('am"t; --', "lat ency", "Score", "ünïcødé ∆")


@pytest.fixture(scope="module")
def hostile(admin, module_sources):
    schema = module_sources.new_schema()
    table = sql.Identifier(schema, HOSTILE_TABLE)
    cols = [sql.Identifier(c) for c in HOSTILE_COLUMNS]
    admin.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "x")))
    admin.execute(sql.SQL(
        "CREATE TABLE {t} ({time} timestamptz NOT NULL, {a} float8, {b} float8, {c} real, "
        "{d} numeric, txt text, ts_int int, js jsonb)").format(
            t=table, time=sql.Identifier(HOSTILE_TIME), a=cols[0], b=cols[1], c=cols[2],
            d=cols[3]))
    admin.execute(sql.SQL(
        "INSERT INTO {t} SELECT now() - interval '10 minutes' + g * interval '1 second', "
        "g % 97, g % 13, (g % 7)::real, (g % 11)::numeric, 'text ' || g, g, '{{}}' "
        "FROM generate_series(0, 499) g").format(t=table))
    admin.execute(sql.SQL(
        "INSERT INTO {t} SELECT now() - interval '2 days' + g * interval '1 minute', "
        "g % 89, g % 13, (g % 7)::real, (g % 11)::numeric, 'old ' || g, g, '{{}}' "
        "FROM generate_series(0, 1999) g").format(t=table))
    qualified = sql.Identifier(schema, HOSTILE_TABLE).as_string(admin)
    return schema, qualified


def _canary_exists(admin, schema: str) -> bool:
    return admin.execute("SELECT to_regclass(%s) IS NOT NULL",
                         [sql.Identifier(schema, "x").as_string(admin)]).fetchone()[0]


def _hostile_conn(schema: str) -> psycopg.Connection:
    conn = connect()
    conn.execute(sql.SQL("SET search_path = {}, public").format(sql.Identifier(schema)))
    return conn


def test_hostile_identifiers_are_analysed_as_names(hostile, config, fault, admin):
    schema, qualified = hostile
    config.apply(function_url=fault.url("ok"))
    with _hostile_conn(schema) as conn:
        result = analyze(conn, source=qualified, time_column=HOSTILE_TIME,
                         columns=list(HOSTILE_COLUMNS))
    assert set(result["columns"]) == set(HOSTILE_COLUMNS)
    assert all(result["columns"][c]["current"]["count"] == 500 for c in HOSTILE_COLUMNS)
    assert all(result["columns"][c]["baseline"]["count"] == 2000 for c in HOSTILE_COLUMNS)
    assert result["analysis"]["time_column"] == HOSTILE_TIME
    envelope = decode_envelope(fault.requests[-1].body)
    assert list(envelope.columns) == list(HOSTILE_COLUMNS)
    assert envelope.metadata["time_column"] == HOSTILE_TIME
    assert HOSTILE_TABLE in envelope.metadata["source"].replace('""', '"')
    assert _canary_exists(admin, schema)


def test_hostile_identifiers_work_for_capture_baseline(hostile, config, fault, admin):
    schema, qualified = hostile
    config.apply(function_url=fault.url("ok"))
    with _hostile_conn(schema) as conn:
        stored = conn.execute(
            "SELECT capture_baseline(%s::regclass, %s::name, %s::name[], "
            "now() - interval '3 days', now() - interval '1 hour')",
            [qualified, HOSTILE_TIME, list(HOSTILE_COLUMNS)]).fetchone()[0]
        assert stored == len(HOSTILE_COLUMNS)
        result = analyze(conn, source=qualified, time_column=HOSTILE_TIME,
                         columns=list(HOSTILE_COLUMNS))
        conn.execute("SELECT drop_baseline(%s::regclass)", [qualified])
    kinds = {c: b["kind"] for c, b in result["analysis"]["baselines"].items()}
    assert kinds == dict.fromkeys(HOSTILE_COLUMNS, "stored")
    assert _canary_exists(admin, schema)


@pytest.mark.parametrize("columns, time_column, sqlstate", [
    (['nope"; DROP TABLE x; --'], HOSTILE_TIME, "42703"),
    (["score"], HOSTILE_TIME, "42703"),  # the column is "Score": no case folding
    (['am"t'], HOSTILE_TIME, "42703"),
    (["lat ency"], 'created at; DROP TABLE x', "42703"),
    (["js"], HOSTILE_TIME, "42804"),  # text is a category (test_categorical.py), jsonb neither
    (['am"t; --', "js"], HOSTILE_TIME, "42804"),
    (["lat ency"], "ts_int", "42804"),
    (["lat ency"], "txt", "42804"),
], ids=["injection_attempt", "case_folded", "prefix", "bad_time_column", "jsonb_value",
        "jsonb_among_numbers", "int_time_column", "text_time_column"])
def test_missing_or_unsupported_columns_are_refused(columns, time_column, sqlstate, hostile,
                                                    config, fault, admin):
    schema, qualified = hostile
    config.apply(function_url=fault.url("ok"))
    with _hostile_conn(schema) as conn:
        outcome = attempt(conn, source=qualified, time_column=time_column, columns=columns)
    assert outcome.sqlstate == sqlstate, outcome.describe()
    if sqlstate == "42703" or time_column == HOSTILE_TIME:
        assert outcome.message.startswith("column"), outcome.describe()
    assert fault.requests == []
    assert _canary_exists(admin, schema)


# ---- row-level security, stored baselines, search_path -------------------------------


@pytest.fixture(scope="module")
def rls_table(plain, admin, module_sources):
    """A table whose policy lets the ordinary role see only rows with label < 5 (half)."""
    role, tables = plain
    source = module_sources.create(table="rls", schema=tables["granted"].schema,
                                   current_rows=300, hist_rows=1000)
    r = sql.Identifier(role)
    admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(source.ident, r))
    admin.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(source.ident))
    admin.execute(sql.SQL("CREATE POLICY low_labels ON {} FOR SELECT TO {} "
                          "USING (label < 5)").format(source.ident, r))
    return source


def test_row_level_security_applies_to_the_analysis(rls_table, plain, config, fault):
    config.apply(function_url=fault.url("ok"))
    role, _ = plain
    with connect(role) as conn:
        as_role = analyze(conn, source=rls_table.qualified, columns=["amount"])
    with connect() as conn:
        as_owner = analyze(conn, source=rls_table.qualified, columns=["amount"])
    assert as_owner["columns"]["amount"]["current"]["count"] == 300
    assert as_role["columns"]["amount"]["current"]["count"] == 150, \
        "the analysis read rows the caller's row-level security policy hides"
    assert as_role["columns"]["amount"]["baseline"]["count"] == 500


def test_stored_baseline_is_used_for_an_ordinary_role_that_cannot_read_the_table_of_them(
        plain, config, fault, admin):
    config.apply(function_url=fault.url("ok"))
    role, tables = plain
    source = tables["granted"]
    admin.execute("SELECT capture_baseline(%s::regclass, 'created_at', ARRAY['amount']::name[],"
                  " now() - interval '3 days', now() - interval '1 hour')",
                  [source.qualified])
    try:
        with connect(role) as conn:
            result = analyze(conn, source=source.qualified, columns=["amount"])
            read = run_sql_error(conn, "SELECT count(*) FROM pg_stat_guard_baselines")
            capture = run_sql_error(
                conn, "SELECT capture_baseline(%s::regclass, 'created_at', "
                "ARRAY['amount']::name[], now() - interval '1 day', now())",
                [source.qualified])
            dropped = run_sql_error(conn, "SELECT drop_baseline(%s::regclass)",
                                    [source.qualified])
        assert result["analysis"]["baselines"]["amount"]["kind"] == "stored"
        assert read is not None and read.sqlstate == "42501", read
        assert capture is not None and capture.sqlstate == "42501", capture
        assert dropped is not None and dropped.sqlstate == "42501", dropped
        assert admin.execute("SELECT count(*) FROM pg_stat_guard_baselines WHERE source = %s",
                             [f"{source.schema}.{source.table}"]).fetchone()[0] == 1
    finally:
        admin.execute("SELECT drop_baseline(%s::regclass)", [source.qualified])


DECOY_OPERATORS = [("=", "text", "text"), ("=", "name", "name"), ("=", "oid", "oid"),
                   (">=", "timestamptz", "timestamptz"), ("<", "timestamptz", "timestamptz"),
                   ("-", "timestamptz", "interval")]


def test_search_path_decoys_never_run_with_more_privileges(plain, config, fault, admin):
    """An ordinary role puts its own operators and tdigest_agg ahead of pg_catalog and
    public. They may run as that role (SECURITY INVOKER), never as anyone else: the stored
    baselines are read as their owner, and that must not run the caller's code."""
    config.apply(function_url=fault.url("ok"))
    role, tables = plain
    source = tables["granted"]
    schema = f"psg_decoy_{uuid.uuid4().hex[:8]}"
    r, s = sql.Identifier(role), sql.Identifier(schema)
    admin.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(s, r))
    admin.execute("SELECT capture_baseline(%s::regclass, 'created_at', ARRAY['amount']::name[],"
                  " now() - interval '3 days', now() - interval '1 hour')",
                  [source.qualified])
    try:
        with connect(role) as conn:
            conn.execute(sql.SQL("CREATE TABLE {}.calls (what text, run_as text)").format(s))
            conn.execute(sql.SQL("GRANT INSERT ON {}.calls TO PUBLIC").format(s))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(s))
            for i, (op, left, right) in enumerate(DECOY_OPERATORS):
                result_type = "timestamptz" if op == "-" else "boolean"
                conn.execute(sql.SQL(
                    "CREATE FUNCTION {s}.{f}(a {l}, b {r}) RETURNS {t} LANGUAGE plpgsql AS $f$ "
                    "BEGIN INSERT INTO {s}.calls VALUES ({what}, current_user); "
                    "RETURN a OPERATOR(pg_catalog.{op}) b; END $f$").format(
                        s=s, f=sql.Identifier(f"decoy_{i}"), l=sql.SQL(left),
                        r=sql.SQL(right), t=sql.SQL(result_type),
                        what=sql.Literal(f"{left} {op} {right}"), op=sql.SQL(op)))
                conn.execute(sql.SQL(
                    "CREATE OPERATOR {s}.{op} (LEFTARG = {l}, RIGHTARG = {r}, "
                    "FUNCTION = {s}.{f})").format(s=s, op=sql.SQL(op), l=sql.SQL(left),
                                                  r=sql.SQL(right),
                                                  f=sql.Identifier(f"decoy_{i}")))
            conn.execute(sql.SQL(
                "CREATE FUNCTION {s}.decoy_agg(a float8, b float8) RETURNS float8 "
                "LANGUAGE plpgsql AS $f$ BEGIN INSERT INTO {s}.calls VALUES "
                "('tdigest_agg', current_user); RETURN 0; END $f$").format(s=s))
            conn.execute(sql.SQL("CREATE AGGREGATE {s}.tdigest_agg(float8) "
                                 "(SFUNC = {s}.decoy_agg, STYPE = float8)").format(s=s))
            conn.execute(sql.SQL("SET search_path = {}, pg_catalog, public").format(s))
            outcome = attempt(conn, source=source.qualified, columns=["amount", "latency"])
            calls = admin.execute(sql.SQL("SELECT what, run_as, count(*) FROM {}.calls "
                                          "GROUP BY 1, 2 ORDER BY 1, 2").format(s)).fetchall()
        print(f"\ndecoy calls: {calls}; analysis: {outcome.describe()[:200]}")
        assert [c for c in calls if c[1] != role] == [], \
            f"caller-controlled code ran as another role: {calls}"
        assert outcome.error is None, outcome.describe()
        assert outcome.result["columns"]["amount"]["current"]["count"] == 300
        assert outcome.result["analysis"]["baselines"]["amount"]["kind"] == "stored"
    finally:
        admin.execute("SELECT drop_baseline(%s::regclass)", [source.qualified])
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


# ---- transport safety ----------------------------------------------------------------


def test_https_with_an_untrusted_certificate_is_refused(config, small_tls_server, plain):
    """TLS with a certificate no CA vouches for: the call fails before any byte of the
    envelope (or the key) is sent."""
    _, tables = plain
    config.apply(function_url=small_tls_server.url("ok"), function_key=TEST_KEY)
    with connect() as conn:
        outcome = attempt(conn, source=tables["granted"].qualified, columns=["amount"])
    print(f"\n{outcome.describe()}; server saw TLS failures {small_tls_server.tls_failures}")
    assert outcome.sqlstate in ("08000", "08001", "08006"), outcome.describe()
    assert outcome.message.startswith("drift function"), outcome.describe()
    assert small_tls_server.requests == [], "the envelope was sent to an untrusted server"
    assert small_tls_server.tls_failures, "no TLS handshake was attempted"


@pytest.fixture()
def small_tls_server(tmp_path):
    with FaultServer(tls=self_signed_tls(tmp_path)) as server:
        yield server


@pytest.mark.parametrize("name, value", [
    ("function_url", "file:///etc/passwd"),
    ("function_url", "ftp://127.0.0.1/api/drift"),
    ("function_url", "gopher://127.0.0.1:1/_FLUSHALL"),
    ("function_url", "http://127.0.0.1/api/drift\r\nX-Injected: 1"),
    ("function_key", "key\r\nX-Injected: 1"),
], ids=["file", "ftp", "gopher", "url_crlf", "key_crlf"])
def test_settings_refuse_other_schemes_and_header_injection(name, value, admin):
    admin.execute("LOAD 'pg_stat_guard'")
    error = run_sql_error(admin, sql.SQL("ALTER SYSTEM SET {} = {}").format(
        sql.SQL(f"pg_stat_guard.{name}"), sql.Literal(value)))
    assert error is not None, f"pg_stat_guard.{name} accepted {value!r}"
    assert error.sqlstate == "22023", (error.sqlstate, str(error))
    on_disk = admin.execute("SELECT count(*) FROM pg_file_settings WHERE name = %s AND "
                            "setting = %s", [f"pg_stat_guard.{name}", value]).fetchone()[0]
    assert on_disk == 0
