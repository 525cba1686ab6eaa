"""The function URL and key per database: each database reaches its own function with its
own key on both transports, in the documented order of precedence; an ordinary role can
neither read a database's key nor move the request; the key is refused where every role
could read it (ALTER DATABASE / ALTER ROLE / a function's SET) and stays out of dumps."""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from tests.fault_server import FaultServer
from tests.perform_drift_analysis.conftest import (
    DSN,
    TEST_KEY,
    SourceFactory,
    SourceTable,
    analyze,
    attempt,
    connect,
    listen_notices,
    record_error,
    run_sql_error,
)
from tests.servers import _bindir

KEY_HEADER = "x-functions-key"
STORE_URL = "SELECT pg_stat_guard_set_function_url(%s)"
STORE_KEY = "SELECT pg_stat_guard_set_function_key(%s)"


@dataclass
class AppDatabase:
    """A database of the cluster with its own function server, key and source table."""

    name: str
    server: FaultServer
    key: str
    source: SourceTable

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    def admin(self) -> psycopg.Connection:
        return connect(database=self.name)


@pytest.fixture(scope="module")
def db_owner(admin) -> Iterator[str]:
    """An ordinary role that owns the two databases (and so their public schema)."""
    role = f"psg_db_owner_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
        sql.Identifier(role)))
    yield role
    admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _http_available(admin) -> bool:
    return admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'http'"
                         ).fetchone() is not None


@pytest.fixture(scope="module")
def apps(admin, db_owner) -> Iterator[tuple[AppDatabase, AppDatabase]]:
    """Two databases owned by the ordinary role. The first has its URL and key stored with
    the superuser's functions; the second its URL set with ALTER DATABASE and its key
    stored. Both get pgsql-http where it is available."""
    made: list[AppDatabase] = []
    owner = sql.Identifier(db_owner)
    with FaultServer() as first_server, FaultServer() as second_server:
        try:
            for i, server in enumerate((first_server, second_server)):
                name = f"psg_app{i}_{uuid.uuid4().hex[:8]}"
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), owner))
                with connect(database=name) as conn:
                    conn.execute("CREATE EXTENSION pg_stat_guard")
                    if _http_available(admin):
                        conn.execute("CREATE EXTENSION http")
                    source = SourceFactory(conn).create(current_rows=300, hist_rows=1000)
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                        sql.Identifier(source.schema), owner))
                    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(source.ident,
                                                                          owner))
                made.append(AppDatabase(name, server, f"{TEST_KEY}-db{i}", source))
            first, second = made
            with first.admin() as conn:
                conn.execute(STORE_URL, [first.server.url("ok")])
                conn.execute(STORE_KEY, [first.key])
            admin.execute(sql.SQL("ALTER DATABASE {} SET pg_stat_guard.function_url = {}").format(
                second.ident, sql.Literal(second.server.url("ok"))))
            with second.admin() as conn:
                conn.execute(STORE_KEY, [second.key])
            yield first, second
        finally:
            for app in made:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    app.ident))


def _clear(apps, *servers: FaultServer) -> None:
    for server in (*[app.server for app in apps], *servers):
        server.clear()


@pytest.mark.parametrize("transport", ["curl", "pgsql-http"])
def test_each_database_reaches_its_own_function_with_its_own_key(transport, apps, db_owner,
                                                                 config, fault, admin):
    if transport == "pgsql-http" and not _http_available(admin):
        pytest.skip("the pgsql-http extension ('http') is not available on this server")
    # the server-wide URL and key: neither database may use them
    config.apply(function_url=fault.url("status/418"), function_key=TEST_KEY,
                 transport=transport)
    _clear(apps, fault)
    secrets = [TEST_KEY, *(app.server.url("ok").split("://", 1)[1] for app in apps)]
    for app in apps:
        with connect(db_owner, database=app.name) as conn:
            heard = listen_notices(conn)
            conn.execute("SET client_min_messages = debug5")
            result = analyze(conn, source=app.source.qualified, columns=["amount"])
        assert result["analysis"]["transport"] == transport
        assert result["columns"]["amount"]["current"]["count"] == 300
        assert [m for m in heard if any(s in m for s in secrets)] == [], heard
    for app in apps:
        (request,) = app.server.requests
        assert request.path == "/ok/api/drift"
        assert request.headers.get(KEY_HEADER) == app.key, app.name
    assert fault.requests == []


def _received(app: AppDatabase, role: str, servers: list[FaultServer]
              ) -> tuple[str, str | None]:
    """Analyse in ``app`` on a new connection as ``role``: the path and key one of
    ``servers`` received (paths that are no directive of the server answer 404)."""
    for server in servers:
        server.clear()
    with connect(role, database=app.name) as conn:
        attempt(conn, source=app.source.qualified, columns=["amount"])
    (request,) = [r for server in servers for r in server.requests]
    return request.path, request.headers.get(KEY_HEADER)


def test_precedence_stored_then_role_and_database_settings_then_server(apps, db_owner, config,
                                                                       fault, admin):
    """Stored for the database > ALTER ROLE ... IN DATABASE > ALTER DATABASE > server, for
    the URL and the key each on its own."""
    first, second = apps
    config.apply(function_url=fault.url("status/418"), function_key=TEST_KEY)
    servers = [fault, first.server, second.server]
    db, role = first.ident, sql.Identifier(db_owner)
    url = "pg_stat_guard.function_url"
    steps = []
    try:
        admin.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
            db, sql.SQL(url), sql.Literal(second.server.url("from-database/ok"))))
        steps.append(("stored URL and key", _received(first, db_owner, servers)))
        with first.admin() as conn:
            conn.execute(STORE_URL, [None])
        steps.append(("database URL, stored key", _received(first, db_owner, servers)))
        admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
            role, db, sql.SQL(url), sql.Literal(second.server.url("from-role/ok"))))
        steps.append(("role-in-database URL", _received(first, db_owner, servers)))
        with first.admin() as conn:
            conn.execute(STORE_KEY, [None])
        steps.append(("server key", _received(first, db_owner, servers)))
        admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(
            role, db, sql.SQL(url)))
        admin.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(db, sql.SQL(url)))
        steps.append(("server URL and key", _received(first, db_owner, servers)))
    finally:
        admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(role, db))
        admin.execute(sql.SQL("ALTER DATABASE {} RESET {}").format(db, sql.SQL(url)))
        with first.admin() as conn:
            conn.execute(STORE_URL, [first.server.url("ok")])
            conn.execute(STORE_KEY, [first.key])
    print(f"\n{steps}")
    assert steps == [
        ("stored URL and key", ("/ok/api/drift", first.key)),
        ("database URL, stored key", ("/from-database/ok/api/drift", first.key)),
        ("role-in-database URL", ("/from-role/ok/api/drift", first.key)),
        ("server key", ("/from-role/ok/api/drift", TEST_KEY)),
        ("server URL and key", ("/status/418/api/drift", TEST_KEY)),
    ]


# ---- what an ordinary role can do ----------------------------------------------------


def _values(conn: psycopg.Connection, statements: list[str]) -> tuple[list[str], list[str]]:
    """Run each statement; the values it returned and the SQLSTATEs of those that failed."""
    values: list[str] = []
    failed: list[str] = []
    for statement in statements:
        try:
            rows = conn.execute(statement).fetchall()
        except psycopg.Error as exc:
            record_error(exc)
            failed.append(exc.sqlstate or "")
            continue
        values += [str(v) for row in rows for v in row if v is not None]
    return values, failed


TABLE = "pg_stat_guard_function"
READS = [
    f"SELECT * FROM {TABLE}",
    f"SELECT function_key FROM public.{TABLE}",
    f"EXPLAIN (VERBOSE, COSTS OFF) SELECT function_key FROM {TABLE}",
    f"COPY {TABLE} TO STDOUT",
    f"SELECT * FROM pg_stats WHERE tablename = '{TABLE}'",
    "SELECT * FROM pg_db_role_setting",
    "SHOW pg_stat_guard.function_key",
    "SHOW pg_stat_guard.function_url",
    "SELECT current_setting('pg_stat_guard.function_key', true)",
    "SELECT current_setting('pg_stat_guard.function_url', true)",
    "SELECT name, setting, reset_val, boot_val FROM pg_settings "
    "WHERE name LIKE 'pg_stat_guard.function%'",
    "SELECT name, setting FROM pg_file_settings",
    "SHOW ALL",
]


def test_ordinary_role_cannot_read_a_databases_url_or_key(apps, db_owner, admin):
    """The role owns the database and its public schema, and still reads nothing of them."""
    first, second = apps
    with first.admin() as conn:
        conn.execute(f"ANALYZE {TABLE}")  # pg_statistic now holds the values
    secrets = [first.key, second.key, TEST_KEY, first.server.url("ok").split("://", 1)[1]]
    for app in apps:
        with connect(db_owner, database=app.name) as conn:
            values, failed = _values(conn, READS)
        leaked = [v for v in values if any(s in v for s in secrets)]
        assert leaked == [], f"{app.name}: {leaked}"
        # the table itself: permission denied, not an empty answer
        assert failed[:4] == ["42501"] * 4, failed
    # the second database's URL is in pg_db_role_setting for every role to see, as
    # docs/analysis.md says; its key is not
    with connect(db_owner, database=second.name) as conn:
        settings = conn.execute("SELECT array_to_string(setconfig, ' ') FROM pg_db_role_setting"
                                ).fetchall()
    assert any(second.server.url("ok") in row[0] for row in settings)
    assert not any(second.key in row[0] for row in settings)


def test_ordinary_role_cannot_store_set_or_move_the_url_or_key(apps, db_owner, config, fault):
    first, _ = apps
    config.apply(function_url=fault.url("status/418"), function_key=TEST_KEY)
    evil = fault.url("evil")
    evil_literal = sql.Literal(evil).as_string(None)
    role = sql.Identifier(db_owner).as_string(None)
    db = sql.Identifier(first.name).as_string(None)
    attempts = {
        "store url": f"SELECT pg_stat_guard_set_function_url({evil_literal})",
        "store key": "SELECT pg_stat_guard_set_function_key('attacker')",
        "clear key": "SELECT pg_stat_guard_set_function_key(NULL)",
        "insert": f"INSERT INTO {TABLE} (function_url) VALUES ({evil_literal})",
        "update": f"UPDATE {TABLE} SET function_url = {evil_literal}",
        "delete": f"DELETE FROM {TABLE}",
        "truncate": f"TRUNCATE {TABLE}",
        "drop": f"DROP TABLE {TABLE}",
        "rename": f"ALTER TABLE {TABLE} RENAME TO gone",
        "set": f"SET pg_stat_guard.function_url = {evil_literal}",
        "set_config": f"SELECT set_config('pg_stat_guard.function_url', {evil_literal}, false)",
        "alter database": f"ALTER DATABASE {db} SET pg_stat_guard.function_url = {evil_literal}",
        "alter role": f"ALTER ROLE {role} SET pg_stat_guard.function_url = {evil_literal}",
        "alter role in database": f"ALTER ROLE {role} IN DATABASE {db} "
                                  f"SET pg_stat_guard.function_url = {evil_literal}",
        "function SET clause": "CREATE FUNCTION psg_evil_set() RETURNS int LANGUAGE sql "
                               "SECURITY DEFINER SET pg_stat_guard.function_url = "
                               f"{evil_literal} AS 'SELECT 1'",
    }
    with connect(db_owner, database=first.name) as conn:
        errors = {what: run_sql_error(conn, statement) for what, statement in attempts.items()}
        # its own SECURITY DEFINER function runs as itself: no more rights
        conn.execute("CREATE FUNCTION psg_evil_definer() RETURNS void LANGUAGE plpgsql "
                     "SECURITY DEFINER AS $f$ BEGIN "
                     f"PERFORM set_config('pg_stat_guard.function_url', {evil_literal}, false);"
                     f" PERFORM pg_stat_guard_set_function_key('attacker'); END $f$")
        errors["security definer"] = run_sql_error(conn, "SELECT psg_evil_definer()")
        # a table of the same name ahead on its search_path is not the extension's
        conn.execute("CREATE SCHEMA psg_shadow")
        conn.execute(f"CREATE TABLE psg_shadow.{TABLE} (singleton boolean, function_url text, "
                     "function_key text, changed_at timestamptz)")
        conn.execute(f"INSERT INTO psg_shadow.{TABLE} VALUES (true, %s, 'attacker', now())",
                     [evil])
        conn.execute("SET search_path = psg_shadow, public")
        result = analyze(conn, source=first.source.qualified, columns=["amount"])
    with connect(db_owner, database=first.name) as fresh:
        fresh_result = analyze(fresh, source=first.source.qualified, columns=["amount"])
    refused = {what: (e.sqlstate if e is not None else None) for what, e in errors.items()}
    print(f"\n{refused}")
    assert refused == {what: "42501" for what in refused} | {"drop": "2BP01"}, refused
    assert result["status"] == fresh_result["status"] == "ok"
    assert fault.requests == []
    assert [(r.path, r.headers.get(KEY_HEADER)) for r in first.server.requests] == [
        ("/ok/api/drift", first.key)] * 2


# ---- where the key may not be set ---------------------------------------------------


@pytest.mark.parametrize("statement", [
    "ALTER DATABASE {db} SET pg_stat_guard.function_key = {key}",
    "ALTER ROLE {role} IN DATABASE {db} SET pg_stat_guard.function_key = {key}",
    "ALTER ROLE {role} SET pg_stat_guard.function_key = {key}",
    "ALTER ROLE ALL SET pg_stat_guard.function_key = {key}",
    "CREATE FUNCTION psg_keyed() RETURNS int LANGUAGE sql "
    "SET pg_stat_guard.function_key = {key} AS 'SELECT 1'",
], ids=["alter_database", "alter_role_in_database", "alter_role", "alter_role_all",
        "function_set_clause"])
def test_a_superuser_cannot_put_the_key_where_every_role_reads_it(statement, apps, db_owner,
                                                                 admin):
    first, _ = apps
    # PostgreSQL logs a failed statement's text (log_min_error_statement): not the test key
    refused_key = f"refused-{uuid.uuid4().hex}"
    with first.admin() as conn:
        error = run_sql_error(conn, sql.SQL(statement).format(
            db=first.ident, role=sql.Identifier(db_owner), key=sql.Literal(refused_key)))
        stored = conn.execute("SELECT count(*) FROM pg_db_role_setting "
                              "WHERE array_to_string(setconfig, ' ') LIKE '%function_key%'"
                              ).fetchone()[0]
    assert error is not None and error.sqlstate == "42501", error
    assert error.diag.message_primary == ("pg_stat_guard.function_key cannot be set with "
                                          "ALTER DATABASE, ALTER ROLE or a function's SET")
    assert "pg_stat_guard_set_function_key(" in error.diag.message_hint
    assert refused_key not in str(error)
    assert stored == 0


def test_a_url_with_a_code_goes_through_the_function_not_alter_database(apps, config, fault):
    first, _ = apps
    config.apply(function_url=fault.url("status/418"))
    coded = first.server.url("ok") + "?code=" + uuid.uuid4().hex  # logged when refused
    with first.admin() as conn:
        error = run_sql_error(conn, sql.SQL(
            "ALTER DATABASE {} SET pg_stat_guard.function_url = {}").format(
                first.ident, sql.Literal(coded)))
        userinfo = run_sql_error(conn, sql.SQL(
            "ALTER DATABASE {} SET pg_stat_guard.function_url = {}").format(
                first.ident, sql.Literal(first.server.url("ok").replace("://", "://u:p@"))))
        first.server.clear()
        conn.execute(STORE_URL, [coded])
        try:
            analyze(conn, source=first.source.qualified, columns=["amount"])
        finally:
            conn.execute(STORE_URL, [first.server.url("ok")])
    assert error is not None and error.sqlstate == "22023", error
    assert "pg_stat_guard_set_function_url(" in error.diag.message_hint
    assert userinfo is not None and userinfo.sqlstate == "22023", userinfo
    (request,) = first.server.requests
    assert request.path == "/ok/api/drift?code=" + coded.rsplit("=", 1)[1]


# ---- the setters' checks ------------------------------------------------------------

BAD_KEYS = ["line\nbreak", "carriage\rreturn", "crlf\r\nX-Injected: 1", "tab\tkey",
            "bell\x07", "del\x7f", "a" * 1025, ""]
BAD_URLS = ["ftp://127.0.0.1/api/drift", "file:///etc/passwd", "127.0.0.1/api/drift",
            "http://127.0.0.1/api drift", "http://127.0.0.1/api/drift\r\nX-Injected: 1",
            "http://127.0.0.1/" + "a" * 2040, ""]


def test_the_setters_refuse_line_breaks_and_overlong_values_and_never_echo_them(apps):
    first, _ = apps
    rng = random.Random(20261206)
    alphabet = "abcXYZ019-_=+/.~ äß€😀\n\r\t\x01\x1f\x7f"
    fuzzed = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
              for _ in range(150)]
    with first.admin() as conn:
        try:
            key_errors = {k: run_sql_error(conn, STORE_KEY, [k]) for k in BAD_KEYS}
            url_errors = {u: run_sql_error(conn, STORE_URL, [u]) for u in BAD_URLS}
            accepted = []
            for key in ["a" * 1024, *fuzzed]:
                if run_sql_error(conn, STORE_KEY, [key]) is None:
                    accepted.append(key)
                    stored = conn.execute(f"SELECT function_key FROM {TABLE}").fetchone()[0]
                    assert stored == key
        finally:
            conn.execute(STORE_KEY, [first.key])
            conn.execute(STORE_URL, [first.server.url("ok")])
    for value, error in (*key_errors.items(), *url_errors.items()):
        assert error is not None and error.sqlstate == "22023", (value, error)
        if value:
            assert value not in str(error) and value[:20] not in str(error), error
    expected = [k for k in ["a" * 1024, *fuzzed]
                if not any(ord(c) < 0x20 or ord(c) == 0x7f for c in k)]
    assert accepted == expected
    assert 10 < len(expected) < len(fuzzed)


# ---- pg_dump ------------------------------------------------------------------------


def test_a_dump_keeps_the_objects_and_leaves_the_key_out(apps, admin):
    first, _ = apps
    target = f"psg_restored_{uuid.uuid4().hex[:8]}"
    dsn = psycopg.conninfo.conninfo_to_dict(DSN)
    base = ["-h", dsn["host"], "-p", str(dsn["port"]), "-U", dsn["user"]]
    dump = subprocess.run([str(_bindir() / "pg_dump"), *base, "-d", first.name],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        restore = subprocess.run([str(_bindir() / "psql"), *base, "-X", "-q", "-d", target,
                                  "-v", "ON_ERROR_STOP=1"], input=dump, capture_output=True,
                                 text=True, timeout=60)
        assert restore.returncode == 0, restore.stderr[-2000:]
        with connect(database=target) as conn:
            rows = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
            setter = conn.execute("SELECT to_regprocedure("
                                  "'pg_stat_guard_set_function_key(text)') IS NOT NULL"
                                  ).fetchone()[0]
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(target)))
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_guard" in dump
    assert first.key not in dump
    assert rows == 0 and setter
