"""The aggregation step: parallel workers inside the call, a cancel or an error in the
middle of it, and the digests it ships agreeing with tdigest_agg run directly."""

from __future__ import annotations

import re
import time

import pytest
from psycopg import sql

from stat_guard.tdigest import DEFAULT_COMPRESSION
from stat_guard.wire import decode_envelope
from tests.perform_drift_analysis.conftest import analyze, attempt, backend_pid

BIG_ROWS = 400_000
FORCE_PARALLEL = ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                  "SET min_parallel_table_scan_size = 0", "SET min_parallel_index_scan_size = 0",
                  "SET max_parallel_workers_per_gather = 2")


@pytest.fixture(scope="module")
def big_source(module_sources):
    return module_sources.create(current_rows=BIG_ROWS, hist_rows=50_000)


def test_parallel_inner_aggregate_counts_every_row_once(big_source, module_sources, config,
                                                        fault, new_conn, server_health):
    config.apply(function_url=fault.url("ok"))
    conn = new_conn()
    for statement in FORCE_PARALLEL:
        conn.execute(statement)
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_analyze = on")
    log_start = server_health.new_log_text()
    log_start_len = len(log_start) if log_start is not None else None
    result = analyze(conn, source=big_source.qualified, columns=["amount", "latency"])
    conn.execute("RESET auto_explain.log_min_duration")
    exact = module_sources.window_counts(big_source, "amount")
    assert result["columns"]["amount"]["current"]["count"] == exact["count"] == BIG_ROWS
    assert result["columns"]["latency"]["current"]["count"] == BIG_ROWS
    assert result["columns"]["amount"]["baseline"]["count"] == 50_000
    if log_start_len is None:
        pytest.skip("server log not readable: parallel workers not checked")
    pid = backend_pid(conn)
    time.sleep(0.2)
    text = (server_health.new_log_text() or "")[log_start_len:]
    mine = "\n".join(line for line in text.splitlines() if f"[{pid}]" in line
                     or line.startswith((" ", "\t")))
    launched = [int(n) for n in re.findall(r"Workers Launched: (\d+)", mine)]
    print(f"\nworkers launched in the logged plans: {launched}; "
          f"timings {result['analysis']['timings_ms']}")
    assert any(n > 0 for n in launched), "the inner aggregate ran without parallel workers"


def test_shipped_digests_equal_tdigest_agg_over_the_same_window(big_source, config, fault,
                                                                new_conn, admin):
    config.apply(function_url=fault.url("ok"))
    conn = new_conn()
    with conn.transaction():  # one now() for both
        analyze(conn, source=big_source.qualified, columns=["amount"])
        direct = conn.execute(sql.SQL(
            "SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), "
            "tdigest_compression(d) FROM (SELECT tdigest_agg(amount, {}) d FROM {} "
            "WHERE created_at >= now() - interval '15 minutes' AND created_at < now()) s"
        ).format(sql.Literal(DEFAULT_COMPRESSION), big_source.ident)).fetchone()
    shipped = decode_envelope(fault.requests[-1].body).columns["amount"].current
    assert shipped.count == direct[0]
    assert (shipped.min, shipped.max) == (direct[1], direct[2])
    assert shipped.compression == direct[4]
    assert abs(shipped.sum - direct[3]) <= 1e-9 * abs(direct[3])


def test_statement_timeout_during_the_aggregation_is_clean(big_source, config, fault,
                                                           new_conn):
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1)
    conn = new_conn()
    for statement in FORCE_PARALLEL:
        conn.execute(statement)
    first = analyze(conn, source=big_source.qualified, columns=["amount", "latency", "score"])
    aggregate_ms = first["analysis"]["timings_ms"]["aggregate"]
    limit_ms = max(5, int(aggregate_ms / 4))
    conn.execute(f"SET statement_timeout = '{limit_ms}ms'")
    outcome = attempt(conn, source=big_source.qualified, columns=["amount", "latency", "score"])
    print(f"\naggregate {aggregate_ms:.1f} ms; statement_timeout {limit_ms} ms -> "
          f"{outcome.describe()}")
    assert outcome.sqlstate == "57014", outcome.describe()
    assert outcome.elapsed < limit_ms / 1e3 + 0.1, outcome.describe()
    conn.execute("SET statement_timeout = 0")
    requests_before = len(fault.requests)
    again = attempt(new_conn(), source=big_source.qualified, columns=["amount"])
    assert again.error is None, f"slot or state left behind: {again.describe()}"
    assert len(fault.requests) == requests_before + 1


def test_error_inside_the_aggregation_is_clean_and_frees_the_slot(config, fault, admin,
                                                                  module_sources, new_conn):
    """A numeric value too large for double precision fails the cast mid-scan."""
    config.apply(function_url=fault.url("ok-fast"), max_concurrent=1)
    schema = module_sources.new_schema()
    table = sql.Identifier(schema, "overflow")
    admin.execute(sql.SQL("CREATE TABLE {} (created_at timestamptz NOT NULL, n numeric)"
                          ).format(table))
    admin.execute(sql.SQL("INSERT INTO {} SELECT now() - g * interval '1 second', g "
                          "FROM generate_series(1, 100) g").format(table))
    admin.execute(sql.SQL("INSERT INTO {} VALUES (now() - interval '5 minutes', "
                          "1e400)").format(table))
    qualified = table.as_string(admin)
    conn = new_conn()
    outcome = attempt(conn, source=qualified, columns=["n"])
    print(f"\n{outcome.describe()}")
    assert outcome.sqlstate == "22003", outcome.describe()
    assert fault.requests == []
    assert conn.execute("SELECT 1").fetchone() == (1,)
    admin.execute(sql.SQL("DELETE FROM {} WHERE n > 1e300").format(table))
    again = attempt(new_conn(), source=qualified, columns=["n"])
    assert again.error is None, again.describe()
    assert again.result["columns"]["n"]["current"]["count"] == 100
