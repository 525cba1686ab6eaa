"""Drift statistics from raw samples agree with scipy and plain numpy to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss
from scipy.spatial.distance import jensenshannon

from stat_guard import stats as st
from stat_guard.tdigest import TDigest

RNG = np.random.default_rng(11)
PAIRS = {
    "normal": (RNG.normal(0, 1, 1500), RNG.normal(0.2, 1.1, 1300)),
    "lognormal": (RNG.lognormal(0, 1, 40_000), RNG.lognormal(0.05, 1, 25_000)),
    "ties": (RNG.poisson(3, 5000).astype(float), RNG.poisson(3.3, 4000).astype(float)),
    "tiny": (RNG.uniform(size=40), RNG.uniform(0.3, 1.3, size=35)),
}


@pytest.mark.parametrize("name", PAIRS)
def test_ks_statistic_matches_scipy(name):
    baseline, current = PAIRS[name]
    ours = st.ks_samples(baseline, current)
    theirs = ss.ks_2samp(baseline, current, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    en = baseline.size * current.size / (baseline.size + current.size)
    if en <= st.KS_FINITE_N_LIMIT:  # small samples: the exact null distribution
        theirs = ss.ks_2samp(baseline, current, method="exact")
        assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)
    else:  # Stephens-corrected limit distribution above the finite-n range
        assert ours.pvalue == pytest.approx(theirs.pvalue, rel=0.05, abs=1e-6)
    assert (ours.n_baseline, ours.n_current) == (baseline.size, current.size)


def _numpy_bins(baseline, current, bins=10):
    edges = np.unique(np.quantile(baseline, np.arange(1, bins) / bins, method="inverted_cdf"))
    idx_b = np.searchsorted(edges, baseline, side="left")
    idx_c = np.searchsorted(edges, current, side="left")
    e = np.bincount(idx_b, minlength=edges.size + 1) / baseline.size
    a = np.bincount(idx_c, minlength=edges.size + 1) / current.size
    eps = st.DEFAULT_EPSILON
    e_s = np.maximum(e, eps) / np.maximum(e, eps).sum()
    a_s = np.maximum(a, eps) / np.maximum(a, eps).sum()
    return edges, e, a, e_s, a_s


@pytest.mark.parametrize("name", PAIRS)
def test_psi_kl_js_match_plain_numpy_on_the_same_bins(name):
    baseline, current = PAIRS[name]
    edges, e, a, e_s, a_s = _numpy_bins(baseline, current)
    psi = st.psi_samples(baseline, current)
    assert np.array_equal(np.array(psi.bin_edges), edges)
    assert psi.statistic == pytest.approx(np.sum((a_s - e_s) * np.log(a_s / e_s)), abs=1e-9)
    assert st.kl_samples(baseline, current).statistic == pytest.approx(
        ss.entropy(a_s, e_s), abs=1e-9)
    assert st.js_samples(baseline, current).statistic == pytest.approx(
        jensenshannon(a, e, base=2), abs=1e-9)


@pytest.mark.parametrize("name", PAIRS)
def test_wasserstein_matches_scipy(name):
    baseline, current = PAIRS[name]
    result = st.wasserstein_samples(baseline, current)
    distance = ss.wasserstein_distance(baseline, current)
    assert result.distance == pytest.approx(distance, abs=1e-9)
    assert result.statistic == pytest.approx(distance / np.std(baseline, ddof=1), abs=1e-9)


def test_empty_bins_get_a_bounded_epsilon_never_infinity():
    baseline = np.arange(1000.0)
    current = np.full(500, 10_000.0)  # everything lands in the top bin
    for result in (st.psi_samples(baseline, current), st.kl_samples(baseline, current)):
        assert math.isfinite(result.statistic) and result.statistic > 1.0
    bound = 1.0 * math.log(1.0 / st.DEFAULT_EPSILON) * 2
    assert st.psi_samples(baseline, current).statistic < bound


def test_psi_critical_value_follows_the_chi_square_approximation():
    value = st.psi_critical_value(1000, 500, 10, alpha=0.05)
    assert value == pytest.approx((1 / 1000 + 1 / 500) * ss.chi2.ppf(0.95, 9), rel=1e-12)
    # Under no drift, about 5% of PSI values exceed it.
    rng = np.random.default_rng(12)
    exceed = [st.psi_samples(rng.normal(size=1000), rng.normal(size=500)).statistic > value
              for _ in range(400)]
    assert 0.01 < np.mean(exceed) < 0.12


def test_benjamini_hochberg_matches_scipy():
    pvalues = [0.001, 0.2, 0.03, 0.04, float("nan"), 0.9, 0.011]
    ours = st.benjamini_hochberg(pvalues)
    finite = [p for p in pvalues if not math.isnan(p)]
    theirs = ss.false_discovery_control(finite, method="bh")
    assert np.allclose([p for p in ours if not math.isnan(p)], theirs, atol=1e-12)
    assert math.isnan(ours[4])


def test_categorical_drift_matches_scipy_and_handles_unseen_categories():
    baseline = {"red": 500, "green": 300, "blue": 200}
    current = {"red": 300, "green": 300, "blue": 150, "purple": 50}
    result = st.categorical_drift(baseline, current)
    table = np.array([[200, 300, 0, 500], [150, 300, 50, 300]])
    chi2 = ss.chi2_contingency(table, correction=False)
    assert result.chi2 == pytest.approx(chi2.statistic, abs=1e-9)
    assert result.chi2_pvalue == pytest.approx(chi2.pvalue, abs=1e-12)
    assert result.unseen_in_baseline == ("purple",)
    assert math.isfinite(result.psi) and result.psi > 0.1
    assert result.js_distance == pytest.approx(
        jensenshannon(table[1] / table[1].sum(), table[0] / table[0].sum(), base=2), abs=1e-9)


def test_categorical_drift_of_identical_counts_is_zero():
    counts = {"a": 10, "b": 20}
    result = st.categorical_drift(counts, counts)
    assert result.psi == pytest.approx(0.0, abs=1e-12) and result.chi2_pvalue == 1.0


def test_empty_windows_give_undefined_not_crashing_statistics():
    empty = TDigest.from_values([None])
    full = TDigest.from_values(np.arange(100.0))
    assert math.isnan(st.ks_digests(full, empty).statistic)
    assert math.isnan(st.psi_digests(full, empty).statistic)
    assert math.isnan(st.ks_samples([], [1.0, 2.0]).statistic)
    assert math.isnan(st.categorical_drift({}, {"a": 3}).psi)


def test_digest_statistics_of_identical_windows_are_zero():
    digest = TDigest.from_values(np.random.default_rng(13).gamma(2.0, size=50_000))
    assert st.ks_digests(digest, digest).statistic == 0.0
    assert st.psi_digests(digest, digest).statistic == pytest.approx(0.0, abs=1e-12)
    assert st.wasserstein_digests(digest, digest).distance == 0.0


@pytest.mark.parametrize("name", PAIRS)
def test_binned_ks_brackets_the_exact_statistic(name):
    baseline, current = PAIRS[name]
    edges = np.unique(np.quantile(baseline, np.arange(1, 200) / 200, method="inverted_cdf"))
    binned = st.ks_from_binned_counts(st.bin_counts(baseline, edges),
                                      st.bin_counts(current, edges), edges)
    exact = ss.ks_2samp(baseline, current).statistic
    assert binned.method == "binned"
    assert binned.statistic <= exact + 1e-12
    assert exact <= binned.statistic + binned.error_bound + 1e-12
    largest_bin = max(st.bin_counts(baseline, edges).max() / baseline.size,
                      st.bin_counts(current, edges).max() / current.size)
    assert binned.error_bound <= largest_bin + 1e-12


def test_binned_ks_with_point_masses_at_the_edges_is_exact_for_discrete_data():
    baseline, current = PAIRS["ties"]
    edges = np.unique(baseline)
    plain = st.ks_from_binned_counts(st.bin_counts(baseline, edges),
                                     st.bin_counts(current, edges), edges)
    exact_points = st.ks_from_binned_counts(
        st.bin_counts(baseline, edges), st.bin_counts(current, edges), edges,
        [np.sum(baseline == v) for v in edges], [np.sum(current == v) for v in edges])
    exact = ss.ks_2samp(baseline, current).statistic
    assert exact_points.statistic == pytest.approx(exact, abs=1e-12)
    assert exact_points.error_bound <= 1e-12 < plain.error_bound


def test_binned_ks_of_a_single_bin_is_zero_with_bound_one():
    result = st.ks_from_binned_counts([10], [7])
    assert (result.statistic, result.error_bound) == (0.0, 1.0)


@pytest.mark.parametrize("name", ["normal", "lognormal", "tiny"])
def test_binned_wasserstein_approaches_scipy_with_fine_bins(name):
    baseline, current = PAIRS[name]
    edges = np.unique(np.quantile(baseline, np.arange(1, 1000) / 1000, method="inverted_cdf"))
    points = np.concatenate(([min(baseline.min(), current.min())], edges,
                             [max(baseline.max(), current.max())]))
    result = st.wasserstein_from_binned_counts(points, st.bin_counts(baseline, edges),
                                               st.bin_counts(current, edges),
                                               float(np.std(baseline, ddof=1)))
    exact = ss.wasserstein_distance(baseline, current)
    widths = np.diff(points)
    masses = np.maximum(st.bin_counts(baseline, edges) / baseline.size,
                        st.bin_counts(current, edges) / current.size)
    assert abs(result.distance - exact) <= float(np.sum(widths * masses)) + 1e-12
    assert result.statistic == pytest.approx(result.distance / np.std(baseline, ddof=1))
    assert result.scale_kind == "stddev"


def test_binned_wasserstein_of_identical_counts_is_zero():
    result = st.wasserstein_from_binned_counts([0.0, 1.0, 2.0, 3.0], [5, 5, 5], [2, 2, 2], 1.0)
    assert result.distance == 0.0
