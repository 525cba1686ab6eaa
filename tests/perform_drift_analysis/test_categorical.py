"""Categorical columns on the on-demand path: text, enum, boolean and integer-coded columns
counted in the database into bounded category tables, sent in a version 2 envelope and
judged by the real verdict service with the scheduled path's categorical rule."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from stat_guard.categories import DEFAULT_MAX_CATEGORIES, CategoryCounts
from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.wire import (
    ColumnCategories,
    ColumnDigests,
    decode_category_table,
    decode_envelope,
    encode_envelope,
)
from tests.perform_drift_analysis.conftest import (
    TEST_KEY,
    analyze,
    attempt,
    call_in_thread,
    connect,
    run_sql_error,
)

HIST_ROWS = 20_000
CURRENT_ROWS = 3_000
CITIES = {"paris": 0.40, "lyon": 0.25, "nice": 0.15, "lille": 0.10, "Zürich": 0.06, "": 0.04}
PLANS = {"free": 0.60, "pro": 0.25, "team": 0.10, "enterprise": 0.05}
CODES = {1: 0.50, 2: 0.30, 3: 0.15, 7: 0.05}
CATEGORICAL = ("city", "plan", "active", "code")
COLUMNS = [*CATEGORICAL, "amount"]
EXPLICIT = ("SELECT perform_drift_analysis(%s::interval, %s::regclass, 'created_at', "
            "%s::name[], %s::name[])")


@dataclass(frozen=True)
class Window:
    """What one window of a test table holds."""

    cities: dict[str, float]
    city_nulls: float = 0.01
    plans: dict[str, float] | None = None
    active_share: float = 0.7


@dataclass(frozen=True)
class CategoricalTable:
    schema: str
    table: str

    @property
    def ident(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.table)

    @property
    def qualified(self) -> str:
        return f'"{self.schema}"."{self.table}"'


class Tables:
    """Creates ``events(created_at, city text, plan tier, active boolean, code int, amount
    float8)`` tables with a history of 20,000 rows over [now - 6 days, now - 1 hour] and a
    current window of 3,000 rows over [now - 10 min, now - 10 s], from a seeded generator;
    drops them (and their baselines) at the end."""

    def __init__(self, admin: psycopg.Connection) -> None:
        self.admin = admin
        self.schema = f"psg_cat_{uuid.uuid4().hex[:10]}"
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        admin.execute(sql.SQL("CREATE TYPE {}.tier AS ENUM ('free', 'pro', 'team', "
                              "'enterprise')").format(sql.Identifier(self.schema)))
        self.created: list[CategoricalTable] = []

    def create(self, name: str, current: Window, history: Window = Window(CITIES),
               current_rows: int = CURRENT_ROWS, history_rows: int = HIST_ROWS, seed: int = 1,
               extra: dict[str, tuple[str, list]] | None = None) -> CategoricalTable:
        """``extra``: more columns, name -> (type, values of the history then the current
        window, in row order)."""
        table = CategoricalTable(self.schema, name)
        extra = extra or {}
        extra_defs = sql.SQL("").join(sql.SQL(", {} {}").format(sql.Identifier(c), sql.SQL(t))
                                      for c, (t, _) in extra.items())
        self.admin.execute(sql.SQL(
            "CREATE TABLE {} (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, "
            "city text, plan {}.tier, active boolean, code int, amount float8{})").format(
                table.ident, sql.Identifier(self.schema), extra_defs))
        self.admin.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(table.ident))
        now = self.admin.execute("SELECT now()").fetchone()[0]
        rng = random.Random(seed)
        rows = []
        for window, n, start, span in (
                (history, history_rows, now - timedelta(days=6), timedelta(days=6, hours=-1)),
                (current, current_rows, now - timedelta(minutes=10), timedelta(seconds=590))):
            for i in range(n):
                rows.append((start + span * (i / max(n - 1, 1)),
                             _draw(rng, window.cities, window.city_nulls),
                             _draw(rng, window.plans or PLANS, 0.0),
                             rng.random() < window.active_share,
                             _draw(rng, CODES, 0.0), rng.gauss(100, 15)))
        columns = ["created_at", "city", "plan", "active", "code", "amount", *extra]
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            table.ident, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        with self.admin.cursor().copy(copy_sql) as copy:
            for index, row in enumerate(rows):
                copy.write_row((*row, *(values[index] for _, values in extra.values())))
        self.admin.execute(sql.SQL("ANALYZE {}").format(table.ident))
        self.created.append(table)
        return table

    def drop_all(self) -> None:
        for table in self.created:
            self.admin.execute("SELECT drop_baseline(%s::regclass)", [table.qualified])
        self.admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
            sql.Identifier(self.schema)))


def _draw(rng: random.Random, shares: dict, null_share: float):
    if null_share and rng.random() < null_share:
        return None
    return rng.choices(list(shares), list(shares.values()))[0]


@pytest.fixture(scope="module")
def tables(admin):
    factory = Tables(admin)
    shifted = dict(CITIES, paris=0.15, lille=0.35)
    factory.create("calm", Window(CITIES))
    factory.create("shift", Window(shifted, plans={"free": 0.2, "pro": 0.3, "team": 0.3,
                                                   "enterprise": 0.2}))
    factory.create("renamed", Window({"tokyo": 0.5, "osaka": 0.3, "kyoto": 0.2}))
    factory.create("nulls", Window(CITIES, city_nulls=0.40))
    factory.create("empty", Window(CITIES), current_rows=0)
    picks = random.Random(9)
    users = [f"user-{i:05d}" for i in range(50_000)] + [
        f"user-{picks.randrange(50_000):05d}" for _ in range(CURRENT_ROWS)]
    factory.create("wide", Window(CITIES), history_rows=50_000,
                   extra={"user_id": ("text", users)})
    long_values = [("é" * 150 + str(i % 7)) if i % 3 else ("x" * (250 + i % 20))
                   for i in range(HIST_ROWS + CURRENT_ROWS)]
    factory.create("long", Window(CITIES), extra={
        "note": ("varchar", long_values),
        "label": ("char(4)", [("ab" if i % 2 else "abcd") for i in range(HIST_ROWS
                                                                          + CURRENT_ROWS)]),
        "tag": ("name", [f"tag{i % 5}" for i in range(HIST_ROWS + CURRENT_ROWS)])})
    yield {t.table: t for t in factory.created}
    factory.drop_all()


@pytest.fixture()
def real_service(config, verdict_url):
    config.apply(function_url=verdict_url, function_key=TEST_KEY)
    return verdict_url


@pytest.fixture()
def fault_ok(config, fault):
    config.apply(function_url=fault.url("ok"))
    return fault


def _analyse(conn: psycopg.Connection, table: CategoricalTable, columns=COLUMNS,
             categories=None) -> dict:
    """The explicit form; the integer-coded column "code" a category when analysed."""
    if categories is None:
        categories = [c for c in ("code",) if c in columns]
    return conn.execute(EXPLICIT, ["15 minutes", table.qualified, list(columns),
                                   list(categories)]).fetchone()[0]


def _entries(envelope: bytes) -> bytes:
    """An envelope's bytes after its metadata: the entry count and the entries."""
    return envelope[12 + int.from_bytes(envelope[8:12], "little"):]


def _window_values(admin: psycopg.Connection, table: CategoricalTable, column: str,
                   start: str, end: str) -> list:
    rows = admin.execute(sql.SQL(
        "SELECT {}::text FROM {} WHERE created_at >= %s::timestamptz AND created_at < "
        "%s::timestamptz").format(sql.Identifier(column), table.ident), [start, end]).fetchall()
    return [r[0] for r in rows]


# ---- verdicts ----------------------------------------------------------------------


def test_same_distribution_is_ok_for_text_enum_boolean_and_integer_codes(real_service,
                                                                          tables, new_conn):
    result = _analyse(new_conn(), tables["calm"])
    assert result["status"] == "ok" and result["verdict"] == "ok", result
    for column in CATEGORICAL:
        figures = result["columns"][column]
        assert figures["kind"] == "categorical", column
        assert figures["verdict"] == "ok", (column, figures)
        assert figures["psi"] < 0.05 and figures["chi2_pvalue"] > 0.001, (column, figures)
        assert figures["unseen_share"] == 0.0 and figures["pooled"] is False
    assert "kind" not in result["columns"]["amount"]  # numeric, as before
    assert result["columns"]["active"]["current"]["distinct"] == 2
    assert {c["category"] for c in result["columns"]["plan"]["top_categories"]} == set(PLANS)
    assert {c["category"] for c in result["columns"]["code"]["top_categories"]} == {
        "1", "2", "3", "7"}
    assert result["analysis"]["max_categories"] == DEFAULT_MAX_CATEGORIES
    assert result["analysis"]["baselines"]["city"]["kind"] == "previous_window"
    assert result["analysis"]["rows"] == CURRENT_ROWS


def test_a_category_share_shift_is_drift(real_service, tables, new_conn):
    result = _analyse(new_conn(), tables["shift"])
    verdicts = {c: result["columns"][c]["verdict"] for c in COLUMNS}
    assert verdicts == {"city": "drift", "plan": "drift", "active": "ok", "code": "ok",
                        "amount": "ok"}, verdicts
    city = result["columns"]["city"]
    assert city["psi"] > 0.25 and city["chi2_pvalue"] < 1e-10, city
    shares = {c["category"]: c for c in city["top_categories"]}
    assert abs(shares["lille"]["current_share"] - 0.35) < 0.03
    assert abs(shares["lille"]["baseline_share"] - 0.10) < 0.01
    print(f"\ncity psi {city['psi']:.3f} chi2 {city['chi2']:.1f} js {city['js_distance']:.3f}")


def test_a_wholesale_change_to_new_categories_is_drift_with_the_unseen_share(
        real_service, tables, new_conn):
    city = _analyse(new_conn(), tables["renamed"])["columns"]["city"]
    assert city["verdict"] == "drift", city
    assert city["unseen_categories"] == ["tokyo", "osaka", "kyoto"]
    assert city["unseen_share"] == 1.0
    assert city["psi"] > 5


def test_a_null_burst_in_a_text_column_is_drift_by_the_missing_share(real_service, tables,
                                                                      new_conn):
    city = _analyse(new_conn(), tables["nulls"])["columns"]["city"]
    assert city["verdict"] == "drift", city
    assert city["reasons"][0].startswith("missing share")
    assert abs(city["missing_rate_baseline"] - 0.01) < 0.005
    assert abs(city["missing_rate_current"] - 0.40) < 0.03
    assert city["psi"] < 0.1  # the shares of the categories did not move


def test_an_empty_window_is_insufficient_data_and_counts_its_rows(real_service, tables,
                                                                   new_conn):
    result = _analyse(new_conn(), tables["empty"], columns=CATEGORICAL)
    assert result["verdict"] == "insufficient_data", result
    assert result["analysis"]["rows"] == 0
    assert result["columns"]["city"]["current"]["count"] == 0


def test_high_cardinality_is_bounded_and_said_so(fault_ok, tables, new_conn):
    """50,000 distinct values: 200 named per window, the rest counted together; the
    request stays small and the answer says the column was pooled."""
    conn = new_conn()
    started = time.monotonic()
    result = _analyse(conn, tables["wide"], columns=["user_id", "city"])
    elapsed = time.monotonic() - started
    body = fault_ok.requests[-1].body
    envelope = decode_envelope(body)
    baseline, current = (envelope.columns["user_id"].baseline,
                         envelope.columns["user_id"].current)
    assert len(baseline.categories) == DEFAULT_MAX_CATEGORIES
    assert baseline.distinct == 50_000 and baseline.other_distinct == 49_800
    assert len(current.categories) <= 2 * DEFAULT_MAX_CATEGORIES
    assert current.total == CURRENT_ROWS
    assert len(body) < 40_000
    # the real service's answer to the same envelope
    answer = analyze_envelope(body)["columns"]["user_id"]
    assert answer["pooled"] is True and answer["baseline"]["distinct"] == 50_000
    assert answer["unseen_share"] is None
    assert any("counted together" in note for note in answer["notes"])
    assert result["analysis"]["rows"] == CURRENT_ROWS
    print(f"\n50,000 distinct: envelope {len(body)} bytes, call {elapsed * 1e3:.0f} ms, "
          f"aggregation {result['analysis']['timings_ms']['aggregate']:.0f} ms")


def test_max_categories_bounds_the_tables(fault_ok, tables, new_conn):
    conn = new_conn()
    conn.execute("SET pg_stat_guard.max_categories = 10")
    _analyse(conn, tables["wide"], columns=["user_id"])
    envelope = decode_envelope(fault_ok.requests[-1].body)
    assert envelope.metadata["max_categories"] == 10
    assert len(envelope.columns["user_id"].baseline.categories) == 10
    for value in ("5", "1001"):
        error = run_sql_error(conn, f"SET pg_stat_guard.max_categories = {value}")
        assert error is not None and error.sqlstate == "22023"


# ---- the envelope ------------------------------------------------------------------


def test_the_tables_are_the_ones_python_computes_from_the_rows(fault_ok, admin, tables,
                                                              new_conn):
    """The extension's version 2 envelope holds exactly the tables Python's
    CategoryCounts computes from the same rows, and Python writes the same entries, byte
    for byte (the metadata is the same JSON; the extension keeps the column order inside
    "baselines")."""
    table = tables["long"]
    columns = ["city", "plan", "active", "code", "note", "label", "tag", "amount"]
    _analyse(new_conn(), table, columns=columns)
    body = fault_ok.requests[-1].body
    assert body[:5] == b"PSGE\x02"
    envelope = decode_envelope(body)
    again = encode_envelope(envelope)
    assert _entries(again) == _entries(body) and again[:5] == body[:5]
    meta = envelope.metadata
    previous_start = meta["baselines"]["city"]["window_start"]
    for column in columns[:-1]:
        pair = envelope.columns[column]
        assert isinstance(pair, ColumnCategories), column
        baseline = CategoryCounts.from_values(
            _window_values(admin, table, column, previous_start, meta["window_start"]),
            DEFAULT_MAX_CATEGORIES)
        current = CategoryCounts.from_values(
            _window_values(admin, table, column, meta["window_start"], meta["window_end"]),
            DEFAULT_MAX_CATEGORIES, listed=baseline.counts)
        assert pair.baseline == baseline, column
        assert pair.current == current, column
    assert isinstance(envelope.columns["amount"], ColumnDigests)
    names = envelope.columns["note"].current.counts
    assert all(len(name.encode()) <= 256 for name in names)
    assert any("..." in name for name in names) and any(name.startswith("x" * 250)
                                                        for name in names)
    assert set(envelope.columns["label"].current.counts) == {"ab", "abcd"}  # char(4) trimmed
    assert set(envelope.columns["active"].current.counts) == {"true", "false"}


def test_numeric_columns_still_travel_in_a_version_1_envelope(fault_ok, tables, new_conn):
    _analyse(new_conn(), tables["calm"], columns=["amount", "code"], categories=())
    body = fault_ok.requests[-1].body
    assert body[4] == 1
    envelope = decode_envelope(body)
    assert "max_categories" not in envelope.metadata
    assert all(isinstance(p, ColumnDigests) for p in envelope.columns.values())


# ---- which columns are categories --------------------------------------------------


def test_integer_columns_are_numeric_unless_listed(fault_ok, tables, new_conn):
    table = tables["calm"]
    conn = new_conn()
    four = analyze(conn, source=table.qualified, columns=["code", "city"])
    assert "ks_statistic" in four["columns"]["code"]  # the 4-argument form: numeric
    assert four["columns"]["city"]["kind"] == "categorical"
    five = _analyse(conn, table, columns=["code"], categories=["code"])
    assert five["columns"]["code"]["kind"] == "categorical"
    conn.execute(sql.SQL("SET pg_stat_guard.source = {}").format(sql.Literal(table.qualified)))
    conn.execute("SET pg_stat_guard.time_column = 'created_at'")
    conn.execute("SET pg_stat_guard.value_columns = 'code, amount'")
    short = analyze(conn)
    assert "ks_statistic" in short["columns"]["code"]
    conn.execute("SET pg_stat_guard.category_columns = 'code'")
    short = analyze(conn)
    assert short["columns"]["code"]["kind"] == "categorical"
    assert "kind" not in short["columns"]["amount"]


@pytest.mark.parametrize("columns, categories, sqlstate, message", [
    (["amount"], ["amount"], "42804", 'column "amount" is of type double precision, which'),
    (["city"], ["code"], "22023", 'category_columns names "code"'),
    (["created_at"], [], "42804", "not a number or a category"),
    (["city"], [None], "22004", "category_columns must not contain NULL"),
], ids=["float_listed", "not_a_value_column", "timestamp_value", "null_name"])
def test_columns_that_cannot_be_categories_are_refused(fault_ok, tables, new_conn, columns,
                                                       categories, sqlstate, message):
    conn = new_conn()
    with pytest.raises(psycopg.Error) as caught:
        _analyse(conn, tables["calm"], columns=columns, categories=categories)
    assert caught.value.sqlstate == sqlstate, str(caught.value)
    assert message in caught.value.diag.message_primary
    assert fault_ok.requests == []


# ---- stored baselines ---------------------------------------------------------------


CAPTURE = ("SELECT capture_baseline(%s::regclass, 'created_at', %s::name[], "
           "now() - interval '6 days 1 hour', now() - interval '30 minutes', "
           "category_columns => %s::name[])")


def test_categorical_baselines_are_captured_stored_and_used(fault_ok, admin, tables,
                                                             new_conn):
    table = tables["shift"]
    assert admin.execute(CAPTURE, [table.qualified, COLUMNS, ["code"]]).fetchone()[0] == 5
    rows = admin.execute(
        "SELECT column_name::text, digest IS NULL, categories, window_start, window_end "
        "FROM pg_stat_guard_baselines WHERE source = %s ORDER BY 1",
        [f"{table.schema}.{table.table}"]).fetchall()
    stored = {r[0]: r for r in rows}
    assert set(stored) == set(COLUMNS)
    assert all(stored[c][1] and stored[c][2] is not None for c in CATEGORICAL)
    assert not stored["amount"][1] and stored["amount"][2] is None
    city = decode_category_table(stored["city"][2])
    expected = CategoryCounts.from_values(_window_values(
        admin, table, "city", stored["city"][3].isoformat(), stored["city"][4].isoformat()),
        DEFAULT_MAX_CATEGORIES)
    assert city == expected
    readable = admin.execute("SELECT category_counts_json(%s)", [stored["city"][2]]).fetchone()[0]
    assert readable["categories"][0] == ["paris", city.counts["paris"]]
    assert readable["missing"] == city.missing

    result = _analyse(new_conn(), table)
    assert {c: b["kind"] for c, b in result["analysis"]["baselines"].items()} == dict.fromkeys(
        COLUMNS, "stored")
    envelope = decode_envelope(fault_ok.requests[-1].body)
    assert envelope.columns["city"].baseline == city
    assert set(envelope.columns["city"].current.counts) >= {"paris", "lille"}


def test_a_stored_baseline_of_the_other_kind_is_refused(fault_ok, admin, tables, new_conn):
    table = tables["calm"]
    admin.execute(CAPTURE, [table.qualified, ["code"], ["code"]])
    try:
        outcome = attempt(new_conn(), source=table.qualified, columns=["code"])
        assert outcome.sqlstate == "55000", outcome.describe()
        assert "stored baseline holds category counts" in outcome.message
        assert fault_ok.requests == []
    finally:
        admin.execute("SELECT drop_baseline(%s::regclass)", [table.qualified])


def test_corrupt_stored_category_tables_are_errors_not_crashes(fault_ok, admin, tables,
                                                               golden, new_conn):
    table = tables["nulls"]
    admin.execute(CAPTURE, [table.qualified, ["city"], []])
    try:
        conn = new_conn()
        for case in golden["malformed_category_tables"]:
            admin.execute("UPDATE pg_stat_guard_baselines SET categories = %s "
                          "WHERE source = %s AND column_name = 'city'",
                          [bytes.fromhex(case["hex"]), f"{table.schema}.{table.table}"])
            outcome = attempt(conn, source=table.qualified, columns=["city"])
            assert outcome.sqlstate == "XX001", (case["reason"], outcome.describe())
            assert "is not a valid category table" in outcome.message
        assert fault_ok.requests == []
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the backend is alive
    finally:
        admin.execute("SELECT drop_baseline(%s::regclass)", [table.qualified])


def test_category_counts_json_refuses_what_is_not_a_table(admin, golden):
    for case in golden["malformed_category_tables"]:
        error = run_sql_error(admin, "SELECT category_counts_json(%s)",
                              [bytes.fromhex(case["hex"])])
        assert error is not None and error.sqlstate == "22P03", case["reason"]


# ---- privileges and locks -----------------------------------------------------------


def test_column_privileges_apply_to_categorical_columns(fault_ok, admin, tables):
    table = tables["calm"]
    role = f"psg_cat_{uuid.uuid4().hex[:8]}"
    r = sql.Identifier(role)
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
    try:
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(table.schema), r))
        admin.execute(sql.SQL("GRANT SELECT (created_at, code, plan) ON {} TO {}").format(
            table.ident, r))
        with connect(role) as conn:
            denied = attempt(conn, source=table.qualified, columns=["plan", "city"])
            capture = run_sql_error(conn, CAPTURE, [table.qualified, ["city"], []])
            counts = run_sql_error(
                conn, "SELECT * FROM category_counts(%s::regclass, 'created_at', "
                "ARRAY['city']::name[], now() - interval '1 day', now())", [table.qualified])
            allowed = conn.execute(EXPLICIT, ["15 minutes", table.qualified, ["plan", "code"],
                                              ["code"]]).fetchone()[0]
        assert denied.sqlstate == "42501", denied.describe()
        assert denied.message == ('permission denied for column "city" of relation '
                                  f"{table.schema}.{table.table}")
        assert capture is not None and capture.sqlstate == "42501"
        assert counts is not None and counts.sqlstate == "42501"
        assert allowed["columns"]["code"]["current"]["count"] == CURRENT_ROWS
        assert len(fault_ok.requests) == 1
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(r))
        admin.execute(sql.SQL("DROP ROLE {}").format(r))


def test_locks_are_released_before_the_http_wait(config, fault, tables, admin):
    table = tables["wide"]
    config.apply(function_url=fault.url("slow/2/ok-fast"), timeout=20000)
    relid = admin.execute("SELECT %s::regclass::oid", [table.qualified]).fetchone()[0]

    def make_conn() -> psycopg.Connection:
        return connect()

    thread, box = call_in_thread(make_conn, source=table.qualified,
                                 columns=["city", "user_id", "plan"])
    fault.wait_for_requests(1, timeout=10)
    time.sleep(0.1)
    held = admin.execute("SELECT mode FROM pg_locks WHERE pid = %s AND locktype = 'relation' "
                         "AND relation = %s", [box["pid"], relid]).fetchall()
    started = time.monotonic()
    with connect() as ddl:
        ddl.execute("SET lock_timeout = '10s'")
        ddl.execute(sql.SQL("ALTER TABLE {} ADD COLUMN extra_{} int").format(
            table.ident, sql.SQL(uuid.uuid4().hex[:6])))
    altered = time.monotonic() - started
    thread.join(15)
    assert box["attempt"].error is None, box["attempt"].describe()
    assert set(box["attempt"].result["columns"]) == {"city", "user_id", "plan"}
    assert held == [], f"locks on the source during the HTTP wait: {held}"
    assert altered < 1.0, f"ALTER TABLE waited {altered:.2f} s"


# ---- hostile names -------------------------------------------------------------------


def test_hostile_column_names_and_values_are_data(fault_ok, admin, tables, new_conn):
    table = tables["calm"]
    column = 'ci"ty; DROP TABLE x; --'
    admin.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(
        table.ident, sql.Identifier(column)))
    try:
        admin.execute(sql.SQL(
            "UPDATE {} SET {} = CASE id % 3 WHEN 0 THEN $$'); DROP TABLE x; --$$ "
            "WHEN 1 THEN E'tab\\there' ELSE NULL END").format(
                table.ident, sql.Identifier(column)))
        _analyse(new_conn(), table, columns=[column], categories=())
        pair = decode_envelope(fault_ok.requests[-1].body).columns[column]
        assert set(pair.current.counts) == {"'); DROP TABLE x; --", "tab\there"}
        assert pair.current.total + pair.current.missing == CURRENT_ROWS
    finally:
        admin.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
            table.ident, sql.Identifier(column)))


def test_the_window_cache_keeps_numeric_columns_and_counts_categories(fault_ok, tables,
                                                                      new_conn):
    conn = new_conn(window_cache_bucket="10s", window_cache_settle="1s")
    first = _analyse(conn, tables["calm"], columns=["amount", "city"], categories=())
    second = _analyse(conn, tables["calm"], columns=["amount", "city"], categories=())
    assert second["analysis"]["window_cache"]["buckets"] > 0
    one, two = (decode_envelope(r.body) for r in fault_ok.requests[-2:])
    assert one.columns["city"] == two.columns["city"]
    assert first["analysis"]["rows"] == second["analysis"]["rows"] == CURRENT_ROWS


def test_concurrent_categorical_analyses_agree(fault_ok, tables):
    results: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect() as conn:
                _analyse(conn, tables["shift"], columns=["city", "plan"], categories=())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    results = [decode_envelope(r.body).columns["city"] for r in fault_ok.requests]
    assert len(results) == 3 and results[0] == results[1] == results[2]


def test_time_window_bounds_apply_to_categories(fault_ok, admin, tables, new_conn):
    """Rows a second outside the window are not counted."""
    table = tables["calm"]
    result = _analyse(new_conn(), table, columns=["city"], categories=())
    end = datetime.fromisoformat(result["analysis"]["window_end"])
    start = datetime.fromisoformat(result["analysis"]["window_start"])
    exact = admin.execute(sql.SQL("SELECT count(*) FROM {} WHERE created_at >= %s AND "
                                  "created_at < %s").format(table.ident), [start, end]
                          ).fetchone()[0]
    pair = decode_envelope(fault_ok.requests[-1].body).columns["city"]
    assert pair.current.total + pair.current.missing == exact == CURRENT_ROWS


def test_a_database_with_the_earlier_baselines_table_still_analyses(fault_ok, admin):
    """Extension objects created before categorical baselines (no categories column): the
    library reads their stored digests and counts categorical columns against the previous
    window."""
    database = f"psg_earlier_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        dsn = make_conninfo(admin.info.dsn, dbname=database)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_guard")
            conn.execute("ALTER TABLE pg_stat_guard_baselines DROP COLUMN categories, "
                         "ALTER COLUMN digest SET NOT NULL")
            conn.execute("CREATE TABLE ev (created_at timestamptz NOT NULL, amount float8, "
                         "city text)")
            conn.execute("INSERT INTO ev SELECT now() - g * interval '1 second', g % 17, "
                         "'c' || g % 5 FROM generate_series(1, 400) g")
            conn.execute("INSERT INTO ev SELECT now() - interval '1 day' - g * interval "
                         "'1 second', g % 13, 'c' || g % 4 FROM generate_series(1, 900) g")
            conn.execute("INSERT INTO pg_stat_guard_baselines (source, column_name, digest, "
                         "window_start, window_end, compression) SELECT 'public.ev', "
                         "'amount', tdigest_agg(amount), now() - interval '2 days', "
                         "now() - interval '1 hour', 60 FROM ev "
                         "WHERE created_at < now() - interval '1 hour'")
            result = conn.execute("SELECT perform_drift_analysis(interval '15 minutes', "
                                  "'ev', 'created_at', ARRAY['amount', 'city']::name[])"
                                  ).fetchone()[0]
        assert result["status"] == "ok", result
        assert result["analysis"]["baselines"]["amount"]["kind"] == "stored"
        assert result["analysis"]["baselines"]["city"]["kind"] == "previous_window"
        envelope = decode_envelope(fault_ok.requests[-1].body)
        assert envelope.columns["amount"].baseline.count == 900
        assert envelope.columns["city"].current.total == 400
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
            sql.Identifier(database)))
