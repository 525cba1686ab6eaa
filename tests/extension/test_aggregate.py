"""tdigest_agg and tdigest_merge against exact answers, serially and in parallel workers."""

from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest

TABLE = "psg_test_values"
ROWS = 400_000
FORCE_PARALLEL = [
    "SET parallel_setup_cost = 0",
    "SET parallel_tuple_cost = 0",
    "SET min_parallel_table_scan_size = 0",
    "SET max_parallel_workers_per_gather = 2",
]


@pytest.fixture(scope="module")
def values_table(pg) -> np.ndarray:
    """A regular (parallel-scannable) table of several distributions; returns nothing useful
    itself, the columns are read back per test.

    Values are multiples of 2^-10 below 2^11 so every sum is exact in binary64 whatever
    the order of additions: serial and parallel sums must then be identical.
    """
    pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
    pg.execute("SELECT setseed(0.25)")
    pg.execute(f"""
        CREATE TABLE {TABLE} AS
        SELECT g,
               round(random() * 1000 * 1024) / 1024 AS uniform,
               round((100 + 15 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) * 1024)
                 / 1024 AS normal,
               exp(3 + 0.8 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS lognormal,
               (g % 17)::float8 AS ties,
               CASE WHEN g % 101 = 0 THEN NULL WHEN g % 103 = 0 THEN 'NaN'::float8
                    WHEN g % 107 = 0 THEN 'Infinity' WHEN g % 109 = 0 THEN '-Infinity'
                    ELSE g::float8 END AS dirty
        FROM generate_series(1, {ROWS}) g""")
    pg.execute(f"ANALYZE {TABLE}")
    yield
    pg.execute(f"DROP TABLE IF EXISTS {TABLE}")


def _column(pg: psycopg.Connection, column: str) -> np.ndarray:
    rows = pg.execute(f"SELECT {column} FROM {TABLE}").fetchall()
    return np.array([r[0] for r in rows], dtype=np.float64)


def _max_rank_error(pg: psycopg.Connection, digest_sql: str, values: np.ndarray) -> float:
    """Largest |cdf(x) - exact rank| over 1,000 grid points and the 0.001/0.999 quantiles."""
    finite = np.sort(values[np.isfinite(values)])
    grid_q = np.concatenate([(np.arange(1000) + 0.5) / 1000, [0.001, 0.999]])
    grid_x = np.quantile(finite, grid_q, method="inverted_cdf")
    cdf = pg.execute(f"SELECT tdigest_cdf(({digest_sql}), %s::float8[])",
                     [grid_x.tolist()]).fetchone()[0]
    exact = np.searchsorted(finite, grid_x, side="right") / finite.size
    return float(np.max(np.abs(np.array(cdf) - exact)))


def test_forced_parallel_plan_runs_partial_tdigest_agg_under_gather(fresh_pg, values_table):
    for setting in FORCE_PARALLEL:
        fresh_pg.execute(setting)
    plan = "\n".join(r[0] for r in fresh_pg.execute(
        f"EXPLAIN (VERBOSE, COSTS OFF) SELECT tdigest_agg(normal) FROM {TABLE}").fetchall())
    assert "Finalize Aggregate" in plan and "Gather" in plan, plan
    assert "Partial Aggregate" in plan, plan
    assert "PARTIAL tdigest_agg(" in plan, plan
    gather_at = plan.index("Gather")
    assert plan.index("Partial Aggregate") > gather_at, plan

    plan = "\n".join(r[0] for r in fresh_pg.execute(
        f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
        f"SELECT tdigest_agg(normal, 200) FROM {TABLE}").fetchall())
    assert "Workers Launched: 2" in plan, plan


@pytest.mark.parametrize("column", ["uniform", "normal", "lognormal", "ties", "dirty"])
def test_parallel_and_serial_digests_agree(fresh_pg, values_table, column):
    fresh_pg.execute("SET max_parallel_workers_per_gather = 0")
    serial = fresh_pg.execute(
        f"SELECT tdigest_agg({column}, 200)::bytea FROM {TABLE}").fetchone()[0]
    for setting in FORCE_PARALLEL:
        fresh_pg.execute(setting)
    fresh_pg.execute("SET parallel_leader_participation = off")  # every row in a worker
    parallel = fresh_pg.execute(
        f"SELECT tdigest_agg({column}, 200)::bytea FROM {TABLE}").fetchone()[0]

    summary = ("SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), "
               "(tdigest_invalid_counts(d)).*, d::text::jsonb -> 'm2' "
               "FROM (SELECT %s::bytea::tdigest AS d) s")
    s_row = fresh_pg.execute(summary, [serial]).fetchone()
    p_row = fresh_pg.execute(summary, [parallel]).fetchone()
    if column == "lognormal":  # arbitrary doubles: sums may differ in the last bits
        assert s_row[:3] == p_row[:3] and s_row[4:8] == p_row[4:8]
        assert math.isclose(s_row[3], p_row[3], rel_tol=1e-12)
    else:
        assert s_row[:8] == p_row[:8]
    assert math.isclose(float(s_row[8]), float(p_row[8]), rel_tol=1e-9)  # rounding only

    values = _column(fresh_pg, column)
    for digest in (serial, parallel):
        error = _max_rank_error(fresh_pg, f"SELECT '\\x{digest.hex()}'::bytea::tdigest", values)
        assert error < 0.01, (column, error)
    grid = np.linspace(np.nanmin(values[np.isfinite(values)]),
                       np.nanmax(values[np.isfinite(values)]), 500).tolist()
    a, b = fresh_pg.execute(
        "SELECT tdigest_cdf(%s::bytea::tdigest, %s::float8[]), "
        "tdigest_cdf(%s::bytea::tdigest, %s::float8[])",
        [serial, grid, parallel, grid]).fetchone()
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 0.01


# Bounds are 1.5-2x what this data gives serially (k2 normalised: at δ = 100 a middle
# centroid holds ~14% of 400k values, so ranks inside it are interpolated).  Heavy ties
# are exact.
@pytest.mark.parametrize("column,compression,bound", [
    ("uniform", 100, 0.006), ("normal", 100, 0.003), ("lognormal", 100, 0.008),
    ("ties", 100, 1e-12), ("ties", 1000, 1e-12), ("uniform", 500, 0.0008),
    ("normal", 1000, 0.0005), ("lognormal", 1000, 0.0005)])
def test_digest_ranks_match_exact_ranks(fresh_pg, values_table, column, compression, bound):
    fresh_pg.execute("SET max_parallel_workers_per_gather = 0")  # one digest, deterministic
    values = _column(fresh_pg, column)
    error = _max_rank_error(
        fresh_pg, f"SELECT tdigest_agg({column}, {compression}) FROM {TABLE}", values)
    assert error <= bound, (column, compression, error)


def test_quantiles_match_exact_quantiles_in_rank(fresh_pg, values_table):
    pg = fresh_pg
    pg.execute("SET max_parallel_workers_per_gather = 0")
    values = np.sort(_column(pg, "normal"))
    qs = [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
    got = pg.execute(f"SELECT tdigest_quantile(tdigest_agg(normal), %s::float8[]) FROM {TABLE}",
                     [qs]).fetchone()[0]
    ranks = np.searchsorted(values, got, side="right") / values.size
    assert np.max(np.abs(ranks - np.array(qs))) < 0.003
    # Tails are where k2 keeps centroids small: relative error in rank stays small there too.
    assert abs(ranks[0] - 0.001) < 0.0005 and abs(ranks[-1] - 0.999) < 0.0005


def test_invalid_values_are_counted_and_kept_out(pg, values_table):
    row = pg.execute(f"""
        SELECT tdigest_count(d), (tdigest_invalid_counts(d)).*, tdigest_min(d), tdigest_max(d)
        FROM (SELECT tdigest_agg(dirty) d FROM {TABLE}) s""").fetchone()
    expected = pg.execute(f"""
        SELECT count(*) FILTER (WHERE dirty IS NOT NULL
                                  AND dirty NOT IN ('NaN', 'Infinity', '-Infinity')),
               count(*) FILTER (WHERE dirty IS NULL), count(*) FILTER (WHERE dirty = 'NaN'),
               count(*) FILTER (WHERE dirty = 'Infinity'),
               count(*) FILTER (WHERE dirty = '-Infinity'),
               min(dirty) FILTER (WHERE dirty > '-Infinity'),
               max(dirty) FILTER (WHERE dirty < 'Infinity')
        FROM {TABLE}""").fetchone()
    assert tuple(int(v) for v in row[:5]) == tuple(expected[:5])
    assert row[5:] == expected[5:]


def test_merged_group_digests_match_the_whole(pg, values_table):
    whole, merged = pg.execute(f"""
        SELECT (SELECT tdigest_agg(normal) FROM {TABLE}),
               (SELECT tdigest_merge(d) FROM (SELECT tdigest_agg(normal) d FROM {TABLE}
                                              GROUP BY g % 37) s)""").fetchone()
    row = pg.execute(
        "SELECT tdigest_count(%s::tdigest) = tdigest_count(%s::tdigest), "
        "tdigest_sum(%s::tdigest) = tdigest_sum(%s::tdigest)",
        [whole, merged, whole, merged]).fetchone()
    assert row == (True, True)
    values = _column(pg, "normal")
    assert _max_rank_error(pg, f"SELECT '{merged}'::tdigest", values) < 0.01
