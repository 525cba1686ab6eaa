"""The aggregate in PostgreSQL and the Python writer build the same digest: the same bytes
while every value is a centroid (up to EXACT_FACTOR·δ values), CDF, quantiles, KS and PSI
within twice the stated accuracy (0.005 each) beyond; one default compression."""

from __future__ import annotations

import numpy as np
import pytest

from stat_guard import stats as st
from stat_guard.tdigest import DEFAULT_COMPRESSION, TDigest, exact_limit
from stat_guard.wire import decode_digest, encode_digest
from tests.extension.values import load_values

TABLE = "psg_test_parity"
SIZES = [10, 100, 300, 1_000, 10_000, 100_000]
KINDS = {
    "normal": lambda rng, n, shift: rng.normal(shift, 1.0, n),
    "lognormal": lambda rng, n, shift: rng.lognormal(shift, 1.0, n),
    "integer counts": lambda rng, n, shift: rng.poisson(3.0 + 3.0 * shift, n).astype(float),
}
BOUND = 0.005  # max CDF error of either writer (docs/statistics.md)


def test_one_default_compression(pg):
    aggregate = pg.execute("SELECT tdigest_compression(tdigest_agg(1.0::float8))").fetchone()[0]
    analysis = pg.execute("SELECT boot_val::int FROM pg_settings "
                          "WHERE name = 'pg_stat_guard.compression'").fetchone()
    assert aggregate == DEFAULT_COMPRESSION
    if analysis is not None:  # the library is loaded, its settings defined
        assert analysis[0] == DEFAULT_COMPRESSION


def _aggregate(pg, values: np.ndarray, parallel: bool) -> TDigest:
    load_values(pg, TABLE, values)
    pg.execute(f"SET max_parallel_workers_per_gather = {2 if parallel else 0}")
    cur = pg.cursor(binary=True)
    cur.execute(f"SELECT tdigest_agg(v) FROM {TABLE}")
    return decode_digest(bytes(cur.fetchone()[0]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_aggregate_and_python_writer_agree(fresh_pg, kind):
    for setting in ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                    "SET min_parallel_table_scan_size = 0"):
        fresh_pg.execute(setting)
    rng = np.random.default_rng(list(KINDS).index(kind) + 40)
    for n in SIZES:
        baseline, current = KINDS[kind](rng, n, 0.0), KINDS[kind](rng, n, 0.2)
        py_b, py_c = TDigest.from_values(baseline), TDigest.from_values(current)
        for parallel in (False, True):
            pg_b = _aggregate(fresh_pg, baseline, parallel)
            pg_c = _aggregate(fresh_pg, current, parallel)
            if n <= exact_limit(DEFAULT_COMPRESSION):
                # Every value a centroid, exact moments: the very same bytes.
                assert encode_digest(pg_b) == encode_digest(py_b), (kind, n, parallel)
                assert encode_digest(pg_c) == encode_digest(py_c), (kind, n, parallel)
                continue
            grid = np.quantile(baseline, np.linspace(0.0005, 0.9995, 2000))
            assert np.max(np.abs(pg_b.cdf(grid) - py_b.cdf(grid))) <= 2 * BOUND, (kind, n)
            if kind != "integer counts":  # quantiles of point masses land on the atoms
                qs = np.linspace(0.01, 0.99, 99)
                ranks = np.searchsorted(np.sort(baseline), pg_b.quantile(qs), side="right") / n
                assert np.max(np.abs(ranks - qs)) <= BOUND + 1.0 / n, (kind, n)
            ks_pg, ks_py = st.ks_digests(pg_b, pg_c).statistic, st.ks_digests(py_b, py_c).statistic
            assert abs(ks_pg - ks_py) <= 2 * BOUND, (kind, n, ks_pg, ks_py)
            psi_pg = st.psi_digests(pg_b, pg_c).statistic
            psi_py = st.psi_digests(py_b, py_c).statistic
            assert abs(psi_pg - psi_py) <= 0.02, (kind, n, psi_pg, psi_py)
    fresh_pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
