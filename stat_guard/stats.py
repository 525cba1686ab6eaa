"""Drift statistics between a baseline and a current window.

Every function returns a small frozen result (statistic, p-value where there is one,
sample sizes, the bins used), in the manner of scipy.stats. The same formulas serve raw
samples, t-digests and pre-binned counts (the DuckDB path), so there is one source of
truth for each statistic: the formulas over counts live in ``stat_guard.counts`` (plain
Python, re-exported here); this module adds raw samples and t-digests (numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stat_guard.counts import (
    DEFAULT_ALPHA,
    DEFAULT_EPSILON,
    DEFAULT_PSI_BINS,
    KS_EXACT_MAX_CELLS,
    KS_FINITE_N_LIMIT,
    BinnedResult,
    CategoricalResult,
    KSResult,
    PSIResult,
    WassersteinResult,
    abs_linear_integral,
    benjamini_hochberg,
    binned_result,
    categorical_drift,
    js_distance_from_counts,
    kl_from_counts,
    ks_from_binned_counts,
    ks_pvalue,
    psi_critical_value,
    psi_from_bins,
    psi_from_counts,
    smooth_proportions,
    spread,
    wasserstein_from_binned_counts,
)
from stat_guard.tdigest import TDigest

__all__ = [
    "DEFAULT_ALPHA", "DEFAULT_EPSILON", "DEFAULT_PSI_BINS", "KS_EXACT_MAX_CELLS",
    "KS_FINITE_N_LIMIT",
    "BinnedResult", "CategoricalResult", "KSResult", "PSIResult", "WassersteinResult",
    "benjamini_hochberg", "bin_counts", "categorical_drift", "digest_bin_edges",
    "digest_bin_masses", "js_digests", "js_distance_from_counts", "js_samples", "kl_digests",
    "kl_from_counts", "kl_samples", "ks_digests", "ks_from_binned_counts", "ks_pvalue",
    "ks_samples", "psi_critical_value", "psi_digests", "psi_from_bins", "psi_from_counts",
    "psi_samples", "quantile_bin_edges", "smooth_proportions", "wasserstein_digests",
    "wasserstein_from_binned_counts", "wasserstein_samples",
]


# ---- raw samples ------------------------------------------------------------------


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def ks_samples(baseline: Sequence[float] | np.ndarray,
               current: Sequence[float] | np.ndarray) -> KSResult:
    """Exact two-sample KS statistic from raw samples (non-finite values dropped)."""
    b = np.sort(_finite(baseline))
    c = np.sort(_finite(current))
    if b.size == 0 or c.size == 0:
        return KSResult(math.nan, math.nan, int(b.size), int(c.size), math.nan, "exact")
    points = np.concatenate([b, c])
    diff = (np.searchsorted(c, points, side="right") / c.size
            - np.searchsorted(b, points, side="right") / b.size)
    where = int(np.argmax(np.abs(diff)))
    statistic = float(abs(diff[where]))
    return KSResult(statistic, ks_pvalue(statistic, b.size, c.size), int(b.size), int(c.size),
                    float(points[where]), "exact")


def quantile_bin_edges(baseline: Sequence[float] | np.ndarray,
                       bins: int = DEFAULT_PSI_BINS) -> np.ndarray:
    """Interior edges of equal-frequency bins from the baseline's quantiles, deduplicated."""
    b = _finite(baseline)
    if b.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(b, np.arange(1, bins) / bins, method="inverted_cdf"))


def bin_counts(values: Sequence[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (−inf, e1], (e1, e2], …, (e_last, +inf)."""
    v = _finite(values)
    return np.bincount(np.searchsorted(edges, v, side="left"),
                       minlength=edges.size + 1).astype(np.float64)


def psi_samples(baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray,
                bins: int = DEFAULT_PSI_BINS, epsilon: float = DEFAULT_EPSILON,
                alpha: float = DEFAULT_ALPHA) -> PSIResult:
    """PSI on equal-frequency bins of the baseline."""
    b, c = _finite(baseline), _finite(current)
    edges = quantile_bin_edges(b, bins)
    return psi_from_bins(edges, bin_counts(b, edges), bin_counts(c, edges), b.size, c.size,
                         epsilon, alpha)


def kl_samples(baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray,
               bins: int = DEFAULT_PSI_BINS, epsilon: float = DEFAULT_EPSILON) -> BinnedResult:
    b, c = _finite(baseline), _finite(current)
    edges = quantile_bin_edges(b, bins)
    e, a = bin_counts(b, edges), bin_counts(c, edges)
    stat = kl_from_counts(e, a, epsilon) if b.size and c.size else math.nan
    return binned_result(BinnedResult, stat, edges, e, a, b.size, c.size, epsilon)


def js_samples(baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray,
               bins: int = DEFAULT_PSI_BINS) -> BinnedResult:
    b, c = _finite(baseline), _finite(current)
    edges = quantile_bin_edges(b, bins)
    e, a = bin_counts(b, edges), bin_counts(c, edges)
    return binned_result(BinnedResult, js_distance_from_counts(e, a), edges, e, a, b.size,
                         c.size, 0.0)


def wasserstein_samples(baseline: Sequence[float] | np.ndarray,
                        current: Sequence[float] | np.ndarray) -> WassersteinResult:
    b, c = _finite(baseline), _finite(current)
    if b.size == 0 or c.size == 0:
        return WassersteinResult(math.nan, math.nan, math.nan, "none", b.size, c.size)
    from scipy import stats as scipy_stats  # raw samples only: a costly import

    distance = float(scipy_stats.wasserstein_distance(b, c))
    stddev = float(np.std(b, ddof=1)) if b.size > 1 else math.nan
    q1, q3 = np.quantile(b, [0.25, 0.75])
    scale, kind = spread(stddev, float(q3 - q1))
    return WassersteinResult(distance / scale, distance, scale, kind, b.size, c.size)


# ---- digests ----------------------------------------------------------------------


def _union_points(baseline: TDigest, current: TDigest) -> np.ndarray:
    return np.unique(np.concatenate([baseline.anchor_points(), current.anchor_points()]))


def ks_digests(baseline: TDigest, current: TDigest) -> KSResult:
    """KS between two digests: both piecewise-linear CDFs compared at every anchor of either.

    The difference of two piecewise-linear functions is extreme at a breakpoint, so this
    is the exact supremum for the digests' CDF model; its distance from the raw-sample
    KS is the digests' own rank error.
    """
    n_b, n_c = baseline.count, current.count
    if n_b == 0 or n_c == 0:
        return KSResult(math.nan, math.nan, n_b, n_c, math.nan, "digest")
    points = _union_points(baseline, current)
    right = np.abs(current.cdf(points) - baseline.cdf(points))
    left = np.abs(current.cdf_left(points) - baseline.cdf_left(points))
    both = np.maximum(right, left)
    where = int(np.argmax(both))
    statistic = float(both[where])
    return KSResult(statistic, ks_pvalue(statistic, n_b, n_c), n_b, n_c, float(points[where]),
                    "digest")


def digest_bin_edges(baseline: TDigest, bins: int = DEFAULT_PSI_BINS) -> np.ndarray:
    if baseline.count == 0:
        return np.empty(0)
    return np.unique(baseline.quantile(np.arange(1, bins) / bins))


def digest_bin_masses(digest: TDigest, edges: np.ndarray) -> np.ndarray:
    """Estimated counts per bin (−inf, e1], …, (e_last, +inf) from the digest's CDF."""
    if digest.count == 0:
        return np.zeros(edges.size + 1)
    cumulative = np.concatenate(([0.0], digest.cdf(edges), [1.0]))
    return np.maximum(np.diff(cumulative), 0.0) * digest.count


def psi_digests(baseline: TDigest, current: TDigest, bins: int = DEFAULT_PSI_BINS,
                epsilon: float = DEFAULT_EPSILON, alpha: float = DEFAULT_ALPHA) -> PSIResult:
    edges = digest_bin_edges(baseline, bins)
    return psi_from_bins(edges, digest_bin_masses(baseline, edges),
                         digest_bin_masses(current, edges), baseline.count, current.count,
                         epsilon, alpha)


def kl_digests(baseline: TDigest, current: TDigest, bins: int = DEFAULT_PSI_BINS,
               epsilon: float = DEFAULT_EPSILON) -> BinnedResult:
    edges = digest_bin_edges(baseline, bins)
    e, a = digest_bin_masses(baseline, edges), digest_bin_masses(current, edges)
    stat = kl_from_counts(e, a, epsilon) if baseline.count and current.count else math.nan
    return binned_result(BinnedResult, stat, edges, e, a, baseline.count, current.count, epsilon)


def js_digests(baseline: TDigest, current: TDigest,
               bins: int = DEFAULT_PSI_BINS) -> BinnedResult:
    edges = digest_bin_edges(baseline, bins)
    e, a = digest_bin_masses(baseline, edges), digest_bin_masses(current, edges)
    return binned_result(BinnedResult, js_distance_from_counts(e, a), edges, e, a, baseline.count,
                   current.count, 0.0)


def wasserstein_digests(baseline: TDigest, current: TDigest) -> WassersteinResult:
    """∫ |F_current − F_baseline| dx, exact for the digests' piecewise-linear CDFs."""
    n_b, n_c = baseline.count, current.count
    if n_b == 0 or n_c == 0:
        return WassersteinResult(math.nan, math.nan, math.nan, "none", n_b, n_c)
    points = _union_points(baseline, current)
    if points.size < 2:
        distance = 0.0
    else:
        start = current.cdf(points[:-1]) - baseline.cdf(points[:-1])
        end = current.cdf_left(points[1:]) - baseline.cdf_left(points[1:])
        with np.errstate(over="ignore"):
            width = np.diff(points)
        distance = math.fsum(abs_linear_integral(d0, d1, w) for d0, d1, w in zip(
            start.tolist(), end.tolist(), width.tolist(), strict=True))
    q1, q3 = baseline.quantile([0.25, 0.75])
    scale, kind = spread(baseline.stddev, float(q3 - q1))
    return WassersteinResult(distance / scale, distance, scale, kind, n_b, n_c)
