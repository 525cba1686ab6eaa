"""Fixtures for the perform_drift_analysis tests: a live PostgreSQL, server settings, source
tables with known contents, the fault server and the real verdict service.

The whole package is skipped only while the function does not exist in the database
(``to_regprocedure('perform_drift_analysis(interval)') IS NULL``); set
``PSG_REQUIRE_ANALYSIS=1`` (CI) to make that a failure instead. Anything else that is
wrong (PostgreSQL unreachable, the extension not installable) fails the tests.

Connection: ``PSG_TEST_DSN``, which tests/conftest.py points at the test run's private
cluster (tests/servers.py), with the library preloaded. The tests change
``pg_stat_guard.*`` server settings with ``ALTER SYSTEM`` there, and reset them at the end.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.fault_server import FaultServer
from tests.http_server import verdict_service

DSN = os.environ.get("PSG_TEST_DSN") or (
    f"host={os.environ.get('PGHOST', '127.0.0.1')} port={os.environ.get('PGPORT', '5432')} "
    f"user={os.environ.get('PGUSER', 'postgres')} dbname={os.environ.get('PGDATABASE', 'test')}")
SERVER_LOG = Path(os.environ.get("PSG_SERVER_LOG",
                                  "/var/log/postgresql/postgresql-15-main.log"))
FUNCTION = "perform_drift_analysis(interval)"
# A recognisable key: it must never show up in an error message, a notice or the log.
TEST_KEY = "psg-test-key-" + uuid.uuid4().hex[:16]
SETTING_PREFIX = "pg_stat_guard."
SERVER_SETTINGS = ("function_url", "function_key", "connect_timeout", "timeout",
                   "max_response_bytes", "max_concurrent", "transport")

# Rows of the standard source tables (see SourceFactory.create).
HIST_ROWS = 20_000
CURRENT_ROWS = 3_000
VALUE_COLUMNS = ("amount", "latency", "score", "label")

# Every error message, detail, hint, context and notice the tests saw: the key check
# (test_security.py) reads them all at the end.
SEEN_MESSAGES: list[str] = []


# ---- connections ------------------------------------------------------------------


def connect(user: str | None = None, *, database: str | None = None, **settings: Any
            ) -> psycopg.Connection:
    """A new autocommit connection (as ``user``, to ``database`` if given) with notices
    recorded."""
    conninfo = make_conninfo(DSN, **{k: v for k, v in (("user", user), ("dbname", database))
                                     if v})
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.add_notice_handler(lambda diag: SEEN_MESSAGES.append(
        " | ".join(str(x) for x in (diag.message_primary, diag.message_detail,
                                    diag.message_hint, diag.context) if x)))
    for name, value in settings.items():
        conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(
            sql.Literal(_setting_name(name)), sql.Literal(str(value))))
    return conn


def listen_notices(conn: psycopg.Connection) -> list[str]:
    """Every notice the connection receives from now on (severity and all its fields)."""
    heard: list[str] = []
    conn.add_notice_handler(lambda diag: heard.append(" | ".join(
        str(x) for x in (diag.severity, diag.message_primary, diag.message_detail,
                         diag.message_hint, diag.context) if x)))
    return heard


def _setting_name(name: str) -> str:
    return name if "." in name else SETTING_PREFIX + name


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


# ---- calling the function ---------------------------------------------------------


@dataclass
class Attempt:
    """One call of perform_drift_analysis: its result or its error, and its wall time."""

    result: dict | None
    error: psycopg.Error | None
    elapsed: float
    started: float = 0.0
    ended: float = 0.0

    @property
    def sqlstate(self) -> str | None:
        return self.error.sqlstate if self.error is not None else None

    @property
    def message(self) -> str:
        if self.error is None:
            return ""
        return self.error.diag.message_primary or str(self.error)

    def describe(self) -> str:
        if self.error is None:
            return f"result after {self.elapsed * 1e3:.0f} ms: {str(self.result)[:300]}"
        return (f"SQLSTATE {self.sqlstate} after {self.elapsed * 1e3:.0f} ms: "
                f"{self.message!r}")


def analysis_sql(source: str | None = None) -> str:
    if source is None:
        return "SELECT perform_drift_analysis(%s::interval)"
    return ("SELECT perform_drift_analysis(%s::interval, %s::regclass, %s::name, "
            "%s::name[])")


def attempt(conn: psycopg.Connection, window: str = "15 minutes", source: str | None = None,
            time_column: str = "created_at", columns: list[str] | tuple[str, ...] | None = None
            ) -> Attempt:
    """Call the function (the explicit form when ``source`` is given); never raises."""
    params: list[Any] = [window]
    if source is not None:
        params += [source, time_column, list(columns if columns is not None else VALUE_COLUMNS)]
    started = time.monotonic()
    try:
        row = conn.execute(analysis_sql(source), params).fetchone()
        ended = time.monotonic()
        return Attempt(row[0], None, ended - started, started, ended)
    except psycopg.Error as exc:
        ended = time.monotonic()
        record_error(exc)
        return Attempt(None, exc, ended - started, started, ended)
    except UnicodeDecodeError as exc:
        # The server returned a value that is not valid UTF-8: a result, and a broken one.
        ended = time.monotonic()
        return Attempt({"undecodable_result": str(exc)}, None, ended - started, started,
                       ended)


def analyze(conn: psycopg.Connection, **kwargs: Any) -> dict:
    """Call the function and return its verdict; fail the test with the error otherwise."""
    outcome = attempt(conn, **kwargs)
    if outcome.error is not None:
        pytest.fail(f"perform_drift_analysis failed: {outcome.describe()}")
    assert isinstance(outcome.result, dict), f"result is not a JSON object: {outcome.result!r}"
    return outcome.result


def record_error(exc: psycopg.Error) -> None:
    diag = exc.diag
    SEEN_MESSAGES.append(" | ".join(str(x) for x in (
        str(exc), diag.message_primary, diag.message_detail, diag.message_hint, diag.context,
        diag.internal_query) if x))


def run_sql_error(conn: psycopg.Connection, statement: str, params: Any = None
                  ) -> psycopg.Error | None:
    """Run a statement; return its error (recorded) or None."""
    try:
        conn.execute(statement, params)
    except psycopg.Error as exc:
        record_error(exc)
        return exc
    return None


def call_in_thread(make_conn: Callable[[], psycopg.Connection], **kwargs: Any
                   ) -> tuple[threading.Thread, dict]:
    """Start a call in a thread; the dict gets ``pid``, ``conn`` and, at the end, ``attempt``."""
    box: dict = {}
    ready = threading.Event()

    def run() -> None:
        conn = make_conn()
        box["conn"] = conn
        box["pid"] = backend_pid(conn)
        ready.set()
        try:
            box["attempt"] = attempt(conn, **kwargs)
        finally:
            box["done"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("the calling connection did not open")
    return thread, box


# ---- server settings --------------------------------------------------------------


class ServerConfig:
    """``pg_stat_guard.*`` server settings through ALTER SYSTEM, applied and awaited.

    ``apply(**settings)`` states the complete set of non-default server settings a test
    needs: what differs from the current state is set or reset, the configuration is
    reloaded, and the call returns only once a new connection sees every value. At the end
    of the test run everything is reset.
    """

    def __init__(self) -> None:
        self.applied: dict[str, str] = {}

    def apply(self, **settings: Any) -> None:
        wanted = {_setting_name(k): str(v) for k, v in settings.items()}
        # Every server setting is written each time, not only what changed since the last
        # call: another connection may have run ALTER SYSTEM on the same server meanwhile.
        to_reset = [SETTING_PREFIX + n for n in SERVER_SETTINGS
                    if SETTING_PREFIX + n not in wanted]
        for attempt_no in range(2):
            with connect() as conn:
                conn.execute("LOAD 'pg_stat_guard'")  # so ALTER SYSTEM validates the values
                for name, value in wanted.items():
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.SQL(name), sql.Literal(value)))
                for name in to_reset:
                    conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.SQL(name)))
                conn.execute("SELECT pg_reload_conf()")
            self.applied = wanted
            try:
                self._wait_until_visible(wanted, to_reset, timeout=5.0 if attempt_no == 0
                                         else 15.0)
                return
            except TimeoutError:
                if attempt_no == 1:
                    raise

    def reset_all(self, names: list[str] | None = None) -> None:
        names = names if names is not None else [SETTING_PREFIX + n for n in SERVER_SETTINGS]
        with connect() as conn:
            conn.execute("LOAD 'pg_stat_guard'")
            for name in names:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.SQL(name)))
            conn.execute("SELECT pg_reload_conf()")
        self.applied = {}
        self._wait_until_visible({}, names)

    @staticmethod
    def _wait_until_visible(wanted: dict[str, str], reset: list[str], timeout: float = 15.0
                            ) -> None:
        names = list(wanted) + list(reset)
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while True:
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute("LOAD 'pg_stat_guard'")
                rows = conn.execute(
                    "SELECT n, s.setting, s.source, current_setting(n, true) "
                    "FROM unnest(%s::text[]) n LEFT JOIN pg_settings s ON s.name = n",
                    [names]).fetchall()
            seen = {n: (setting, source, current) for n, setting, source, current in rows}
            done = all(seen[n][0] == v or seen[n][2] == v for n, v in wanted.items()) and all(
                seen[n][1] in (None, "default") and (seen[n][0] is not None
                                                     or not seen[n][2]) for n in reset)
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"server settings not visible after {timeout} s: "
                                   f"wanted {wanted}, reset {reset}, seen {seen}")
            time.sleep(0.02)


# ---- source tables ----------------------------------------------------------------


@dataclass
class SourceTable:
    """A source table created for a test and what it holds."""

    schema: str
    table: str
    current_rows: int
    hist_rows: int
    drift_columns: frozenset[str]
    noisy: bool
    columns: tuple[str, ...] = VALUE_COLUMNS

    @property
    def qualified(self) -> str:
        """The quoted, schema-qualified name (what regclass input and SQL text take)."""
        return f"{_quote(self.schema)}.{_quote(self.table)}"

    @property
    def ident(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.table)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _normal(mean: float, sd: float) -> str:
    return (f"({mean} + {sd} * sqrt(-2 * ln(1 - random())) "
            f"* cos(2 * pi() * random()))")


class SourceFactory:
    """Creates source tables in fresh schemas and drops them (and their baselines) after."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.schemas: list[str] = []
        self.sources: list[SourceTable] = []

    def new_schema(self) -> str:
        schema = f"psg_t_{uuid.uuid4().hex[:10]}"
        self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        self.schemas.append(schema)
        return schema

    def create(self, *, current_rows: int = CURRENT_ROWS, hist_rows: int = HIST_ROWS,
               drift: set[str] | frozenset[str] = frozenset(), noisy: bool = False,
               table: str = "events", schema: str | None = None, seed: float = 0.42
               ) -> SourceTable:
        """``events(id, created_at, amount, latency, score, label[, noisy])`` with an index
        on created_at.

        History: ``hist_rows`` rows spread evenly over [now - 6 days, now - 1 hour].
        Current: ``current_rows`` rows over [now - 10 min, now - 10 s] — inside a 15-minute
        window for the next five minutes. Distributions: amount ~ N(100, 15),
        latency ~ lognormal(ln 50, 0.5), score ~ U(0, 1) (real), label = row % 10 (int).
        Columns in ``drift`` change in the current window: amount +1.5 σ, latency ×2,
        score ~ U(0.3, 1.3). ``noisy`` adds a float8 column that is 30 % NULL, 10 % NaN,
        2 % +Inf, 2 % -Inf and N(0, 1) otherwise (pattern by row number, so exact).
        """
        schema = schema or self.new_schema()
        source = SourceTable(schema, table, current_rows, hist_rows, frozenset(drift), noisy,
                             VALUE_COLUMNS + (("noisy",) if noisy else ()))
        ident = source.ident
        noisy_col = sql.SQL(", noisy float8") if noisy else sql.SQL("")
        self.conn.execute(sql.SQL(
            "CREATE TABLE {} (id bigserial PRIMARY KEY, "
            "created_at timestamptz NOT NULL DEFAULT now(), amount float8, latency float8, "
            "score real, label int{})").format(ident, noisy_col))
        self.conn.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(ident))
        with self.conn.transaction():
            self.conn.execute("SELECT setseed(%s)", [seed])
            self._fill(source, hist_rows, current=False)
            self._fill(source, current_rows, current=True)
        self.conn.execute(sql.SQL("ANALYZE {}").format(ident))
        self.sources.append(source)
        return source

    def _fill(self, source: SourceTable, rows: int, current: bool) -> None:
        if rows <= 0:
            return
        drift = source.drift_columns if current else frozenset()
        if current:
            when = "now() - interval '10 minutes' + (g::float8 / {n}) * interval '590 seconds'"
        else:
            when = ("now() - interval '6 days' + (g::float8 / {n}) "
                    "* (interval '6 days' - interval '1 hour')")
        amount = _normal(122.5 if "amount" in drift else 100.0, 15)
        latency = f"exp({_normal(3.912023005428146 + (0.6931471805599453 if 'latency' in drift else 0.0), 0.5)})"  # noqa: E501
        score = "(0.3 + random())" if "score" in drift else "random()"
        columns = "created_at, amount, latency, score, label"
        values = f"{when.format(n=max(rows - 1, 1))}, {amount}, {latency}, {score}::real, g % 10"
        if source.noisy:
            columns += ", noisy"
            values += (", CASE WHEN g % 10 < 3 THEN NULL WHEN g % 10 = 3 THEN 'NaN'::float8 "
                       "WHEN g % 50 = 4 THEN 'Infinity'::float8 "
                       "WHEN g % 50 = 14 THEN '-Infinity'::float8 "
                       f"ELSE {_normal(0.0, 1.0)} END")
        # No parameters: the modulo operators stay literal.
        self.conn.execute(sql.SQL("INSERT INTO {} (" + columns + ") SELECT " + values
                                  + " FROM generate_series(0, {}) g").format(
                                      source.ident, sql.Literal(rows - 1)))

    def window_counts(self, source: SourceTable, column: str, window: str = "15 minutes"
                      ) -> dict[str, int]:
        """Exact counts of the window ``[now() - window, now())`` for one column."""
        col = sql.Identifier(column)
        row = self.conn.execute(sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE {c} IS NULL), "
            "count(*) FILTER (WHERE {c}::float8 = 'NaN'), "
            "count(*) FILTER (WHERE {c}::float8 = 'Infinity'), "
            "count(*) FILTER (WHERE {c}::float8 = '-Infinity') "
            "FROM {t} WHERE created_at >= now() - %s::interval AND created_at < now()").format(
                c=col, t=source.ident), [window]).fetchone()
        rows, nulls, nans, pinf, ninf = row
        return {"rows": rows, "count": rows - nulls - nans - pinf - ninf, "null_count": nulls,
                "nan_count": nans, "pos_inf_count": pinf, "neg_inf_count": ninf}

    def drop_all(self) -> None:
        for source in self.sources:
            try:
                self.conn.execute("SELECT drop_baseline(%s::regclass)", [source.qualified])
            except psycopg.Error:
                pass
        for schema in self.schemas:
            self.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
        self.schemas.clear()
        self.sources.clear()


# ---- server health ----------------------------------------------------------------

CRASH_PATTERNS = re.compile(
    r"terminated by signal|exited with exit code|PANIC:|TRAP:|"
    r"all server processes terminated|terminating any other active server processes|"
    r"database system was not properly shut down|was interrupted|"
    r"segmentation fault|double free|corrupted|leak", re.IGNORECASE)


# A parallel worker whose leader was cancelled ends with an ERROR: exit code 1, no crash.
PARALLEL_WORKER_ERROR_EXIT = re.compile(
    r'background worker "parallel worker" \(PID \d+\) exited with exit code 1$')

ERROR_REPORT = re.compile(r"\b(ERROR|WARNING|NOTICE|FATAL|PANIC|DETAIL|HINT|CONTEXT|"
                          r"STATEMENT|QUERY):")


@dataclass
class ServerHealth:
    """The postmaster start time and server log position at the start of the test run."""

    postmaster_start: Any
    log_offset: int | None

    def new_log_text(self) -> str | None:
        if self.log_offset is None or not SERVER_LOG.exists():
            return None
        with SERVER_LOG.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode("utf-8", errors="replace")

    def error_report_lines(self) -> list[str]:
        """Lines of error reports (and their DETAIL/HINT/CONTEXT/STATEMENT) since the start."""
        text = self.new_log_text() or ""
        return [line for line in text.splitlines() if ERROR_REPORT.search(line)]

    def crash_lines(self) -> list[str]:
        text = self.new_log_text() or ""
        return [line for line in text.splitlines()
                if CRASH_PATTERNS.search(line) and not PARALLEL_WORKER_ERROR_EXIT.search(line)]


# ---- fixtures ---------------------------------------------------------------------


def _prepare_extension(conn: psycopg.Connection) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_guard")
    versions = conn.execute(
        "SELECT e.extversion, a.default_version FROM pg_extension e "
        "JOIN pg_available_extensions a ON a.name = e.extname "
        "WHERE e.extname = 'pg_stat_guard'").fetchone()
    if versions and versions[0] != versions[1]:
        conn.execute("ALTER EXTENSION pg_stat_guard UPDATE")


@pytest.fixture(scope="session")
def admin() -> Iterator[psycopg.Connection]:
    """Superuser autocommit connection to the test database, extension created."""
    conn = connect()
    assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                        ).fetchone()[0], "the analysis tests need a superuser connection"
    _prepare_extension(conn)
    yield conn
    conn.close()


@pytest.fixture(scope="session", autouse=True)
def analysis_function_installed(admin: psycopg.Connection, server_health: ServerHealth) -> None:
    """Skip the package only while perform_drift_analysis(interval) does not exist."""
    missing = admin.execute("SELECT to_regprocedure(%s) IS NULL", [FUNCTION]).fetchone()[0]
    if not missing:
        return
    reason = (f"to_regprocedure('{FUNCTION}') IS NULL in database "
              f"{admin.info.dbname!r}: the C function is not installed yet (make -C "
              "pg_extension install; if the library is newer than the database's objects, "
              "DROP EXTENSION pg_stat_guard CASCADE; CREATE EXTENSION pg_stat_guard)")
    if os.environ.get("PSG_REQUIRE_ANALYSIS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def server_health(admin: psycopg.Connection) -> Iterator[ServerHealth]:
    start = admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    offset = SERVER_LOG.stat().st_size if SERVER_LOG.exists() else None
    yield ServerHealth(start, offset)


@pytest.fixture(scope="session")
def config(admin: psycopg.Connection, server_health: ServerHealth) -> Iterator[ServerConfig]:
    """Server settings; everything the tests may set is reset at the start and the end."""
    cfg = ServerConfig()
    cfg.reset_all()
    yield cfg
    cfg.reset_all()


@pytest.fixture(scope="session")
def shared_fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture()
def fault(shared_fault_server: FaultServer) -> FaultServer:
    """The fault server, its records cleared for this test."""
    shared_fault_server.clear()
    return shared_fault_server


@pytest.fixture(scope="session")
def verdict_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real verdict service under uvicorn, expecting TEST_KEY; its /api/drift URL."""
    log_path = tmp_path_factory.mktemp("verdict") / "service.log"
    with verdict_service({"STAT_GUARD_FUNCTION_KEY": TEST_KEY}, log_path) as url:
        yield f"{url}/api/drift"


@pytest.fixture()
def sources(admin: psycopg.Connection) -> Iterator[SourceFactory]:
    """Source tables for one test."""
    factory = SourceFactory(admin)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="module")
def module_sources(admin: psycopg.Connection) -> Iterator[SourceFactory]:
    """Source tables shared by the tests of one module."""
    factory = SourceFactory(admin)
    yield factory
    factory.drop_all()


@pytest.fixture()
def new_conn() -> Iterator[Callable[..., psycopg.Connection]]:
    """A factory of connections (closed after the test); open them after config.apply."""
    opened: list[psycopg.Connection] = []

    def make(user: str | None = None, **settings: Any) -> psycopg.Connection:
        conn = connect(user, **settings)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        try:
            conn.close()
        except psycopg.Error:
            pass
