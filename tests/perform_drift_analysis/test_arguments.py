"""Argument checks: window bounds, column limits, types, the planner's row estimate."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from stat_guard.wire import decode_envelope
from tests.perform_drift_analysis.conftest import CURRENT_ROWS, analyze, attempt

MAX_COLUMNS = 256


@pytest.fixture(scope="module")
def source(module_sources):
    return module_sources.create(current_rows=CURRENT_ROWS, hist_rows=2000)


@pytest.fixture()
def ok_endpoint(config, fault):
    config.apply(function_url=fault.url("ok"))
    return fault


@pytest.mark.parametrize("window, setting", [
    ("0 seconds", None),
    ("-15 minutes", None),
    ("2 days", None),  # above the default max_window of 1 day
    ("2 hours", "1h"),  # an integer setting in seconds: '1 hour' is not accepted
    ("1 month", None),
], ids=["zero", "negative", "above_default_max", "above_set_max", "one_month"])
def test_bad_window_is_22023(window, setting, ok_endpoint, source, new_conn):
    conn = new_conn()
    if setting:
        conn.execute(sql.SQL("SET pg_stat_guard.max_window = {}").format(sql.Literal(setting)))
    outcome = attempt(conn, window=window, source=source.qualified, columns=["amount"])
    assert outcome.sqlstate == "22023", outcome.describe()
    assert outcome.message.startswith("window"), outcome.describe()
    assert ok_endpoint.requests == []


def test_window_at_the_maximum_is_accepted(ok_endpoint, source, new_conn):
    result = analyze(new_conn(), window="1 day", source=source.qualified, columns=["amount"])
    assert result["columns"]["amount"]["current"]["count"] >= CURRENT_ROWS


@pytest.fixture(scope="module")
def wide(admin, module_sources):
    """A table with 260 float8 value columns and 40 rows in the current window."""
    schema = module_sources.new_schema()
    table = sql.Identifier(schema, "wide")
    columns = [f"c{i}" for i in range(1, 261)]
    admin.execute(sql.SQL("CREATE TABLE {} (created_at timestamptz NOT NULL, {})").format(
        table, sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(c))
                                  for c in columns)))
    admin.execute(sql.SQL("INSERT INTO {} SELECT now() - g * interval '10 seconds', {} "
                          "FROM generate_series(1, 40) g").format(
        table, sql.SQL(", ").join(sql.SQL("g * {}").format(sql.Literal(i))
                                  for i in range(1, 261))))
    return table.as_string(admin), columns


def test_too_many_columns_is_22023(wide, ok_endpoint, new_conn):
    qualified, columns = wide
    outcome = attempt(new_conn(), source=qualified, columns=columns[:MAX_COLUMNS + 1])
    assert outcome.sqlstate == "22023", outcome.describe()
    assert ok_endpoint.requests == []


def test_the_maximum_number_of_columns_is_accepted(wide, config, fault, new_conn):
    config.apply(function_url=fault.url("ok-fast"))
    qualified, columns = wide
    result = analyze(new_conn(), source=qualified, columns=columns[:MAX_COLUMNS])
    assert result["status"] == "ok"
    envelope = decode_envelope(fault.requests[-1].body)
    assert len(envelope.columns) == MAX_COLUMNS
    assert all(pair.current.count == 40 for pair in envelope.columns.values())


def test_window_estimated_above_max_window_rows_is_54000(ok_endpoint, source, new_conn):
    conn = new_conn()
    conn.execute("SET pg_stat_guard.max_window_rows = 100")
    outcome = attempt(conn, source=source.qualified, columns=["amount"])
    assert outcome.sqlstate == "54000", outcome.describe()
    assert outcome.message.startswith("window of about"), outcome.describe()
    assert ok_endpoint.requests == []
    conn.execute("SET pg_stat_guard.max_window_rows = 1000000")
    assert analyze(conn, source=source.qualified, columns=["amount"])["status"] == "ok"


@pytest.fixture(scope="module")
def typed(admin, module_sources):
    """Every accepted numeric type, and a timestamp-without-time-zone time column."""
    schema = module_sources.new_schema()
    table = sql.Identifier(schema, "typed")
    admin.execute(sql.SQL("CREATE TABLE {} (ts timestamp NOT NULL, f8 float8, f4 real, "
                          "n numeric, i2 smallint, i4 int, i8 bigint)").format(table))
    admin.execute(sql.SQL(
        "INSERT INTO {} SELECT localtimestamp - interval '10 minutes' + g * interval '1 second', "
        "g, g, g * 1.5, g % 100, g, g::bigint * 1000000000 FROM generate_series(1, 500) g").format(
            table))
    admin.execute(sql.SQL(
        "INSERT INTO {} SELECT localtimestamp - interval '1 day' + g * interval '1 second', "
        "g, g, g * 1.5, g % 100, g, g::bigint * 1000000000 FROM generate_series(1, 800) g").format(
            table))
    return table.as_string(admin)


def test_all_numeric_types_and_a_timestamp_column_are_accepted(typed, ok_endpoint,
                                                               new_conn):
    columns = ["f8", "f4", "n", "i2", "i4", "i8"]
    result = analyze(new_conn(), source=typed, time_column="ts", columns=columns)
    for column in columns:
        assert result["columns"][column]["current"]["count"] == 500, column
        assert result["columns"][column]["baseline"]["count"] == 800, column
    assert result["columns"]["i8"]["current"]["max"] == 500 * 1_000_000_000
    assert result["columns"]["n"]["current"]["min"] == 1.5


def test_duplicate_value_column_is_refused_or_merged_not_sent_twice(ok_endpoint, source,
                                                                    new_conn):
    """A duplicated name must not produce an envelope the function rejects."""
    outcome = attempt(new_conn(), source=source.qualified, columns=["amount", "amount"])
    if outcome.error is not None:
        assert outcome.sqlstate[:2] in ("22", "42"), outcome.describe()
        assert ok_endpoint.requests == []
    else:
        assert list(outcome.result["columns"]) == ["amount"]


def test_empty_value_columns_is_a_clean_error(ok_endpoint, source, new_conn):
    outcome = attempt(new_conn(), source=source.qualified, columns=[])
    assert outcome.error is not None and outcome.sqlstate[:2] in ("22", "42"), \
        outcome.describe()


@pytest.mark.parametrize("statement", [
    "SELECT perform_drift_analysis(NULL::interval)",
    "SELECT perform_drift_analysis(interval '15 minutes', NULL, 'created_at', "
    "ARRAY['amount']::name[])",
    "SELECT perform_drift_analysis(interval '15 minutes', {src}, NULL, ARRAY['amount']::name[])",
    "SELECT perform_drift_analysis(interval '15 minutes', {src}, 'created_at', NULL)",
    "SELECT perform_drift_analysis(interval '15 minutes', {src}, 'created_at', "
    "ARRAY[NULL]::name[])",
    "SELECT perform_drift_analysis(interval '15 minutes', {src}, 'created_at', "
    "ARRAY[['amount'], ['latency']]::name[])",
    "SELECT perform_drift_analysis(interval '15 minutes', {src}, 'created_at', "
    "ARRAY['']::name[])",
], ids=["null_window", "null_source", "null_time_column", "null_columns", "null_element",
        "two_dimensional", "empty_name"])
def test_null_and_odd_arguments_never_crash(statement, ok_endpoint, source, new_conn, admin,
                                            server_health):
    conn = new_conn()
    literal = sql.Literal(source.qualified).as_string(conn) + "::regclass"
    try:
        row = conn.execute(statement.replace("{src}", literal)).fetchone()
        assert row[0] is None or isinstance(row[0], dict)
    except psycopg.Error as exc:
        assert exc.sqlstate[:2] in ("22", "42", "55"), (exc.sqlstate, str(exc))
    assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == \
        server_health.postmaster_start


def test_short_form_without_settings_is_a_clean_error(ok_endpoint, new_conn):
    conn = new_conn()
    for name in ("source", "time_column", "value_columns"):
        conn.execute(f"RESET pg_stat_guard.{name}")
    outcome = attempt(conn)
    assert outcome.error is not None and outcome.sqlstate[:2] in ("22", "42", "55"), \
        outcome.describe()
    assert ok_endpoint.requests == []


def test_function_is_volatile_parallel_unsafe_and_security_invoker(admin):
    rows = admin.execute(
        "SELECT p.oid::regprocedure::text, p.provolatile, p.proparallel, p.prosecdef "
        "FROM pg_proc p WHERE p.proname = 'perform_drift_analysis'").fetchall()
    assert sorted(r[0] for r in rows) == [
        "perform_drift_analysis(interval)",
        "perform_drift_analysis(interval,regclass,name,name[])",
        "perform_drift_analysis(interval,regclass,name,name[],name[])"], rows
    for name, volatile, parallel, secdef in rows:
        assert volatile == "v", name
        assert parallel == "u", name
        assert secdef is False, name
