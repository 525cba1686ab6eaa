"""The Python t-digest: exact summaries, invalid-value accounting, CDF/quantile rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stat_guard.tdigest import DEFAULT_COMPRESSION, MASS_CAP, TDigest


def test_nulls_nans_and_infinities_are_counted_never_summarised():
    digest = TDigest.from_values([1.0, None, float("nan"), float("inf"), float("-inf"),
                                  float("inf"), 3.0], null_count=2)
    assert (digest.count, digest.null_count, digest.nan_count) == (2, 3, 1)
    assert (digest.pos_inf_count, digest.neg_inf_count) == (2, 1)
    assert (digest.min, digest.max, digest.sum, digest.m2) == (1.0, 3.0, 4.0, 2.0)
    assert np.all(np.isfinite(digest.means))


def test_empty_and_all_invalid_windows_give_an_empty_digest():
    digest = TDigest.from_values([None, float("nan")])
    assert digest.count == 0 and digest.means.size == 0
    assert math.isnan(digest.cdf(0.0)) and math.isnan(digest.quantile(0.5))
    assert digest.summary()["mean"] is None


def test_exact_moments_match_numpy():
    rng = np.random.default_rng(1)
    values = rng.lognormal(size=50_000)
    digest = TDigest.from_values(values)
    assert digest.count == values.size
    assert digest.min == values.min() and digest.max == values.max()
    assert digest.mean == pytest.approx(values.mean(), rel=1e-12)
    assert digest.stddev == pytest.approx(values.std(ddof=1), rel=1e-9)


def test_compressed_digest_stays_small_and_accurate():
    rng = np.random.default_rng(2)
    values = rng.normal(size=1_000_000)
    digest = TDigest.from_values(values)
    # About δ/MASS_CAP centroids (91 at δ = 40), none above MASS_CAP/δ of the values (1.1%).
    assert digest.means.size < 3 * DEFAULT_COMPRESSION
    assert int(digest.weights.max()) <= MASS_CAP / DEFAULT_COMPRESSION * values.size
    grid = np.quantile(values, np.linspace(0.001, 0.999, 999))
    exact = np.searchsorted(np.sort(values), grid, side="right") / values.size
    assert np.max(np.abs(digest.cdf(grid) - exact)) < 0.003
    # k2 keeps the tails exact-ish: the extreme centroids are single points.
    assert digest.weights[0] == 1 and digest.weights[-1] == 1
    assert digest.quantile(0.0) == values.min() and digest.quantile(1.0) == values.max()


def test_small_windows_keep_every_value():
    values = [3.0, 1.0, 2.0, 2.0, 5.0]
    digest = TDigest.from_values(values)
    assert digest.means.tolist() == [1.0, 2.0, 2.0, 3.0, 5.0]
    assert digest.cdf(2.0) == 0.6 and digest.cdf_left(2.0) == 0.2
    assert digest.quantile(0.5) == 2.0


def test_heavy_ties_become_point_masses():
    rng = np.random.default_rng(3)
    values = rng.poisson(3.0, 200_000).astype(float)
    digest = TDigest.from_values(values)
    for v in range(8):
        assert digest.cdf(float(v)) == pytest.approx(np.mean(values <= v), abs=1e-12)


def test_constant_column():
    digest = TDigest.from_values(np.full(10_000, 7.25))
    assert digest.cdf(7.25) == 1.0 and digest.cdf_left(7.25) == 0.0
    assert digest.quantile(0.3) == 7.25 and digest.stddev == 0.0


def test_huge_and_tiny_magnitudes_stay_finite():
    values = np.concatenate([np.full(1000, 1e308), np.full(1000, -1e308), [5e-324, 0.0]])
    digest = TDigest.from_values(values)
    assert np.all(np.isfinite(digest.means))
    assert digest.min == -1e308 and digest.max == 1e308
    assert 0.45 < digest.cdf(0.0) < 0.55
    assert math.isinf(digest.m2) and math.isnan(digest.variance)
    merged = TDigest.merge([digest, digest])
    assert np.all(np.isfinite(merged.means)) and merged.count == 2 * digest.count


def test_cdf_is_monotone_and_quantile_inverts_it():
    rng = np.random.default_rng(4)
    digest = TDigest.from_values(np.concatenate([rng.normal(-2, 0.5, 30_000),
                                                 rng.normal(3, 1, 70_000)]))
    grid = np.linspace(digest.min - 1, digest.max + 1, 5000)
    cdf = digest.cdf(grid)
    assert np.all(np.diff(cdf) >= 0) and cdf[0] == 0.0 and cdf[-1] == 1.0
    qs = np.linspace(0.0005, 0.9995, 500)
    assert np.max(np.abs(digest.cdf(digest.quantile(qs)) - qs)) < 1e-9


def test_merge_equals_a_digest_of_the_union_within_accuracy():
    rng = np.random.default_rng(5)
    parts = [rng.exponential(size=100_000) for _ in range(4)]
    merged = TDigest.merge([TDigest.from_values(p) for p in parts])
    union = np.concatenate(parts)
    assert merged.count == union.size and merged.min == union.min()
    assert merged.sum == pytest.approx(union.sum(), rel=1e-12)
    grid = np.quantile(union, np.linspace(0.01, 0.99, 99))
    exact = np.searchsorted(np.sort(union), grid, side="right") / union.size
    assert np.max(np.abs(merged.cdf(grid) - exact)) < 0.005
    assert merged.means.size < 3 * DEFAULT_COMPRESSION


@pytest.mark.parametrize("bad", [9, 10001, 0, -5])
def test_compression_outside_bounds_is_refused(bad):
    with pytest.raises(ValueError, match="compression"):
        TDigest.from_values([1.0], compression=bad)


@pytest.mark.parametrize("q", [-0.1, 1.5, float("nan")])
def test_quantile_levels_outside_unit_interval_are_refused(q):
    with pytest.raises(ValueError):
        TDigest.from_values([1.0, 2.0]).quantile(q)


def test_non_numeric_values_are_a_clear_error():
    with pytest.raises(TypeError, match="numbers or None"):
        TDigest.from_values(["a", "b"])
