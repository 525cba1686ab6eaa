"""Mean and standard deviation are exact at any magnitude (digest format version 2): the
aggregate (serially, in parallel workers, merged) and the Python writer (built and
merged) agree with a two-pass computation to 1e-9, relative."""

from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest

from stat_guard.tdigest import TDigest
from stat_guard.wire import decode_digest
from tests.extension.values import load_values

TABLE = "psg_test_moments"
ROWS = 200_000
CASES = {
    "1e12 + 1e-3·N(0,1)": lambda rng: 1e12 + 1e-3 * rng.normal(0.0, 1.0, ROWS),
    "1e-12·N(0,1)": lambda rng: 1e-12 * rng.normal(0.0, 1.0, ROWS),
    "1e9 + N(0,1)": lambda rng: 1e9 + rng.normal(0.0, 1.0, ROWS),
    "-1e12 + 1e-3·N(0,1)": lambda rng: -1e12 + 1e-3 * rng.normal(0.0, 1.0, ROWS),
    "1e-300·(1 + N(0,1))": lambda rng: 1e-300 * (1.0 + rng.normal(0.0, 1.0, ROWS)),
    "epoch seconds": lambda rng: 1.7e9 + rng.integers(0, 86_400, ROWS).astype(float),
}
FORCE_PARALLEL = ["SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                  "SET min_parallel_table_scan_size = 0",
                  "SET max_parallel_workers_per_gather = 2",
                  "SET parallel_leader_participation = off"]


def _two_pass(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation, two passes with exact sums: the corrected
    two-pass algorithm (Chan, Golub & LeVeque), as the mean rounded to a double is off by
    up to half an ulp, which at 1e12 is 6e-5, comparable with a spread of 1e-3."""
    n = values.size
    mean = math.fsum(values.tolist()) / n
    deviations = values - mean
    m2 = math.fsum((deviations * deviations).tolist()) - math.fsum(deviations.tolist())**2 / n
    return mean, math.sqrt(m2 / (n - 1))


def _assert_close(got: tuple[float, float], want: tuple[float, float], what: str) -> None:
    mean, stddev = want
    # The mean of 1e-12·N(0,1) is near 0: relative to the spread there.
    assert abs(got[0] - mean) <= 1e-9 * max(abs(mean), stddev / math.sqrt(ROWS)), (what, got, want)
    assert abs(got[1] - stddev) <= 1e-9 * stddev, (what, got, want)


@pytest.mark.parametrize("case", list(CASES))
def test_moments_match_a_two_pass_computation(fresh_pg, case):
    values = CASES[case](np.random.default_rng(list(CASES).index(case) + 11))
    want = _two_pass(values)
    load_values(fresh_pg, TABLE, values)
    stats = "SELECT tdigest_mean(d), tdigest_stddev(d) FROM ({}) s(d)"
    fresh_pg.execute("SET max_parallel_workers_per_gather = 0")
    _assert_close(fresh_pg.execute(stats.format(f"SELECT tdigest_agg(v) FROM {TABLE}"))
                  .fetchone(), want, f"{case}: serial")
    _assert_close(fresh_pg.execute(stats.format(
        f"SELECT tdigest_merge(d) FROM (SELECT tdigest_agg(v) d FROM {TABLE} "
        f"GROUP BY (ctid::text::point)[1]::int % 7) g")).fetchone(), want, f"{case}: merged")
    for setting in FORCE_PARALLEL:
        fresh_pg.execute(setting)
    plan = "\n".join(r[0] for r in fresh_pg.execute(
        f"EXPLAIN SELECT tdigest_agg(v) FROM {TABLE}").fetchall())
    assert "Partial Aggregate" in plan
    _assert_close(fresh_pg.execute(stats.format(f"SELECT tdigest_agg(v) FROM {TABLE}"))
                  .fetchone(), want, f"{case}: parallel")

    digest = TDigest.from_values(values)
    _assert_close((digest.mean, digest.stddev), want, f"{case}: python")
    parts = TDigest.merge([TDigest.from_values(p) for p in np.array_split(values, 7)])
    _assert_close((parts.mean, parts.stddev), want, f"{case}: python merged")
    fresh_pg.execute(f"DROP TABLE {TABLE}")


def test_huge_values_never_give_nan(pg):
    """Values up to ±1e308: the mean stays finite and exact enough, M2 overflows to
    +Infinity (stddev NULL) only when the spread itself passes ~1e154."""
    rows = pg.execute(
        "SELECT tdigest_mean(d), tdigest_stddev(d), d::text::jsonb -> 'm2', tdigest_sum(d) "
        "FROM (SELECT tdigest_agg(v, 10) d FROM (SELECT (CASE WHEN x % 2 = 0 THEN 1e308 "
        "ELSE -1e308 END)::float8 v FROM generate_series(1, 100001) x) s) t "
        "UNION ALL SELECT tdigest_mean(d), tdigest_stddev(d), d::text::jsonb -> 'm2', "
        "tdigest_sum(d) FROM (SELECT tdigest_agg(1e150 + x * 1e136) d "
        "FROM generate_series(1, 100000) x) t").fetchall()
    (mean1, sd1, m2_1, sum1), (mean2, sd2, _, sum2) = rows
    assert math.isfinite(mean1) and abs(mean1 - (-1e308 / 100001)) < 1e-6 * 1e308
    assert sd1 is None and m2_1 == "Infinity"
    assert math.isfinite(mean2) and math.isfinite(sd2) and sd2 > 0
    assert not math.isnan(sum1) and not math.isnan(sum2)


def test_a_version_1_digest_reads_with_its_sums(pg):
    """A stored version 1 digest (sum, sum_sq) reads back with the moments its sums
    give; mean and stddev match the Python reader's."""
    from tests.conftest import GOLDEN_DIR

    data = (GOLDEN_DIR / "v1" / "normal_20000.psgd").read_bytes()
    mean, stddev = pg.execute("SELECT tdigest_mean(d), tdigest_stddev(d) "
                              "FROM (SELECT %s::bytea::tdigest d) s", [data]).fetchone()
    digest = decode_digest(data)
    assert (mean, stddev) == (digest.mean, digest.stddev)


def test_moments_survive_a_binary_round_trip(pg):
    cur = pg.cursor(binary=True)
    cur.execute("SELECT tdigest_agg(1e12 + x * 1e-4) FROM generate_series(1, 50000) x")
    digest = decode_digest(bytes(cur.fetchone()[0]))
    exact = 1e12 + 1e-4 * 25000.5
    assert abs(digest.mean + digest.mean_residual - exact) < 1e-9 * 1e-4 * 50000
    assert digest.stddev == pytest.approx(1e-4 * math.sqrt(50000 * 50001 / 12), rel=1e-9)
    with pytest.raises(psycopg.errors.InvalidBinaryRepresentation):
        pg.execute("SELECT %s::bytea::tdigest", [b"PSGD\x04" + bytes(200)])
