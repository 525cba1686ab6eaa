"""Drift statistics from counts, in plain Python: PSI, KL, Jensen–Shannon, chi-square,
binned KS and Wasserstein, p-values and the false-discovery-rate adjustment.

Every statistic over counts lives here once. ``stat_guard.stats`` builds its raw-sample
and t-digest statistics on these (it re-exports them); the DuckDB engine imports only
this module, so a drift run never loads numpy: its process stays about 11 MB smaller
(docs/scheduled-drift.md). Inputs are any sequences of numbers (lists, tuples or numpy
arrays); the bins are few (at most a few thousand), so plain loops cost well under a
millisecond each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from stat_guard.distributions import (
    chi2_ppf,
    chi2_sf,
    kolmogorov_sf,
    ks_2samp_exact_cells,
    ks_2samp_exact_sf,
)

DEFAULT_PSI_BINS = 10
DEFAULT_EPSILON = 1e-3
DEFAULT_ALPHA = 0.05
# The KS p-value is exact up to this effective sample size n·m/(n + m) ...
KS_FINITE_N_LIMIT = 2000
# ... when the exact computation visits at most this many lattice points (about 0.5 s).
KS_EXACT_MAX_CELLS = 2_000_000

Numbers = Sequence[float]


# ---- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov–Smirnov: sup |F_current − F_baseline|."""

    statistic: float
    pvalue: float
    n_baseline: int
    n_current: int
    location: float
    method: str  # "exact" (raw samples), "digest" or "binned"
    error_bound: float = 0.0


@dataclass(frozen=True)
class BinnedResult:
    """A divergence over bins: PSI, KL or Jensen–Shannon."""

    statistic: float
    bin_edges: tuple[float, ...]
    expected: tuple[float, ...]  # baseline proportions per bin, before smoothing
    actual: tuple[float, ...]  # current proportions per bin, before smoothing
    n_baseline: int
    n_current: int
    epsilon: float


@dataclass(frozen=True)
class PSIResult(BinnedResult):
    critical_value: float = math.nan  # sample-size-aware threshold at ``alpha``
    alpha: float = DEFAULT_ALPHA
    pvalue: float = math.nan  # Pearson's chi-square test of the same bins' counts


@dataclass(frozen=True)
class WassersteinResult:
    """Wasserstein-1 distance, and the same divided by the baseline's spread."""

    statistic: float  # normalised
    distance: float  # in the feature's own units
    scale: float
    scale_kind: str  # "stddev", "iqr" or "none"
    n_baseline: int
    n_current: int


@dataclass(frozen=True)
class CategoricalResult:
    """Drift over category counts."""

    psi: float
    chi2: float
    chi2_pvalue: float
    chi2_dof: int
    js_distance: float
    categories: tuple[str, ...]
    expected: tuple[float, ...]
    actual: tuple[float, ...]
    unseen_in_baseline: tuple[str, ...]
    n_baseline: int
    n_current: int
    epsilon: float


# ---- proportions and divergences --------------------------------------------------


def floats(values: Numbers) -> list[float]:
    return [float(v) for v in values]


def proportions(counts: Numbers) -> list[float]:
    """Counts divided by their total; all zeros when the total is 0."""
    values = floats(counts)
    total = math.fsum(values)
    return [v / total for v in values] if total > 0 else [0.0] * len(values)


def smooth_proportions(counts: Numbers, epsilon: float = DEFAULT_EPSILON) -> list[float]:
    """Proportions with empty bins lifted to ``epsilon`` and renormalised.

    Keeps PSI and KL finite: no bin ever has probability 0.
    """
    values = floats(counts)
    total = math.fsum(values)
    shares = ([v / total for v in values] if total > 0
              else [1.0 / max(len(values), 1)] * len(values))
    lifted = [max(p, epsilon) for p in shares]
    norm = math.fsum(lifted)
    return [p / norm for p in lifted]


def psi_from_counts(expected_counts: Numbers, actual_counts: Numbers,
                    epsilon: float = DEFAULT_EPSILON) -> float:
    """Population Stability Index: Σ (a − e) · ln(a / e) on smoothed proportions."""
    e = smooth_proportions(expected_counts, epsilon)
    a = smooth_proportions(actual_counts, epsilon)
    return math.fsum((q - p) * math.log(q / p) for p, q in zip(e, a, strict=True))


def kl_from_counts(expected_counts: Numbers, actual_counts: Numbers,
                   epsilon: float = DEFAULT_EPSILON) -> float:
    """KL(current ‖ baseline) in nats, on smoothed proportions."""
    e = smooth_proportions(expected_counts, epsilon)
    a = smooth_proportions(actual_counts, epsilon)
    return math.fsum(q * math.log(q / p) for p, q in zip(e, a, strict=True))


def js_distance_from_counts(expected_counts: Numbers, actual_counts: Numbers) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]); needs no smoothing."""
    e, a = proportions(expected_counts), proportions(actual_counts)
    if not any(e) or not any(a):
        return math.nan
    m = [(p + q) / 2.0 for p, q in zip(e, a, strict=True)]

    def kl_to_m(p: list[float]) -> float:
        return math.fsum(x * math.log2(x / y) for x, y in zip(p, m, strict=True) if x > 0)

    divergence = max(0.5 * kl_to_m(a) + 0.5 * kl_to_m(e), 0.0)
    return math.sqrt(min(divergence, 1.0))


def binned_result(kind: type[BinnedResult], statistic: float, edges: Numbers,
                  expected: Numbers, actual: Numbers, n_b: int, n_c: int, epsilon: float,
                  **extra: float) -> BinnedResult:
    return kind(statistic=statistic, bin_edges=tuple(floats(edges)),
                expected=tuple(proportions(expected)), actual=tuple(proportions(actual)),
                n_baseline=int(n_b), n_current=int(n_c), epsilon=epsilon, **extra)


def psi_from_bins(edges: Numbers, expected: Numbers, actual: Numbers, n_baseline: int,
                  n_current: int, epsilon: float = DEFAULT_EPSILON,
                  alpha: float = DEFAULT_ALPHA) -> PSIResult:
    """PSI from bin masses (counts or proportions) over known edges."""
    if n_baseline == 0 or n_current == 0:
        statistic = pvalue = math.nan
    else:
        statistic = psi_from_counts(expected, actual, epsilon)
        pvalue = bins_pvalue(expected, actual, n_baseline, n_current)
    return binned_result(PSIResult, statistic, edges, expected, actual, n_baseline, n_current,
                         epsilon, alpha=alpha,
                         critical_value=psi_critical_value(n_baseline, n_current,
                                                           len(edges) + 1, alpha),
                         pvalue=pvalue)


def bins_pvalue(expected: Numbers, actual: Numbers, n_baseline: int, n_current: int) -> float:
    """Pearson's chi-square test that two windows share their bin shares: the masses (counts
    or proportions) scaled to the windows' sizes, empty bins left out. PSI's significance:
    unlike the chi-square approximation of PSI itself, it needs no smoothing of empty bins,
    and it holds its level at windows of 30 values (docs/statistics.md)."""
    first = [share * n_baseline for share in proportions(expected)]
    second = [share * n_current for share in proportions(actual)]
    kept = [(x, y) for x, y in zip(first, second, strict=True) if x + y > 0]
    if len(kept) < 2:
        return 1.0
    return chi2_homogeneity([x for x, _ in kept], [y for _, y in kept])[1]


def two_proportion_pvalue(hits_first: int, n_first: int, hits_second: int,
                          n_second: int) -> float:
    """Two-sided p-value that two shares hits/n are equal (pooled z-test); NaN without
    data, 1 when the pooled share is 0 or 1."""
    if n_first <= 0 or n_second <= 0:
        return math.nan
    pooled = (hits_first + hits_second) / (n_first + n_second)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    error = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_first + 1.0 / n_second))
    z = abs(hits_first / n_first - hits_second / n_second) / error
    return math.erfc(z / math.sqrt(2.0))


def psi_critical_value(n_baseline: int, n_current: int, bins: int,
                       alpha: float = DEFAULT_ALPHA) -> float:
    """PSI above which the difference is significant at ``alpha``.

    Under no drift, PSI ≈ (1/n + 1/m) · χ²(bins − 1) (Yurdakul 2018), so small windows
    get a larger threshold than the fixed 0.1/0.25 rules assume.
    """
    if n_baseline <= 0 or n_current <= 0 or bins < 2:
        return math.nan
    return float((1.0 / n_baseline + 1.0 / n_current) * chi2_ppf(1 - alpha, bins - 1))


# ---- p-values -----------------------------------------------------------------------


def ks_pvalue(statistic: float, n_baseline: int, n_current: int) -> float:
    """Two-sided p-value of a two-sample KS statistic, treating the values as continuous
    (ties are not corrected for).

    For small samples (effective size en = n·m/(n + m) up to ``KS_FINITE_N_LIMIT`` and an
    exact computation within ``KS_EXACT_MAX_CELLS``) the exact null distribution
    (``distributions.ks_2samp_exact_sf``, as scipy's ``ks_2samp(method="exact")``); above,
    the limiting Kolmogorov distribution with Stephens' correction
    √en + 0.12 + 0.11/√en, within 0.5% of the finite-n distribution for p >= 1e-3.
    """
    if n_baseline <= 0 or n_current <= 0 or math.isnan(statistic):
        return math.nan
    effective_n = n_baseline * n_current / (n_baseline + n_current)
    if (effective_n <= KS_FINITE_N_LIMIT
            and ks_2samp_exact_cells(statistic, n_baseline, n_current) <= KS_EXACT_MAX_CELLS):
        pvalue = ks_2samp_exact_sf(statistic, n_baseline, n_current)
    else:
        root = math.sqrt(effective_n)
        pvalue = kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)
    return min(max(pvalue, 0.0), 1.0)


def benjamini_hochberg(pvalues: Numbers) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate); NaN stays NaN."""
    values = floats(pvalues)
    adjusted = [math.nan] * len(values)
    valid = sorted((i for i, p in enumerate(values) if not math.isnan(p)),
                   key=values.__getitem__)
    running = math.inf
    for rank in range(len(valid), 0, -1):  # from the largest p-value down
        i = valid[rank - 1]
        running = min(running, values[i] * len(valid) / rank)
        adjusted[i] = min(running, 1.0)
    return adjusted


# ---- categorical ------------------------------------------------------------------


def categorical_drift(baseline_counts: Mapping[str, int], current_counts: Mapping[str, int],
                      epsilon: float = DEFAULT_EPSILON) -> CategoricalResult:
    """PSI, chi-square and Jensen–Shannon over category counts.

    Categories seen only in the current window are kept (smoothed in PSI, their own
    column in the chi-square table) and listed in ``unseen_in_baseline``.
    """
    categories = sorted(set(baseline_counts) | set(current_counts), key=str)
    e = [float(baseline_counts.get(c, 0)) for c in categories]
    a = [float(current_counts.get(c, 0)) for c in categories]
    if any(v < 0 for v in e) or any(v < 0 for v in a):
        raise ValueError("category counts must be non-negative")
    n_b, n_c = int(math.fsum(e)), int(math.fsum(a))
    unseen = tuple(str(c) for c, count in zip(categories, e, strict=True) if count == 0)
    if n_b == 0 or n_c == 0:
        chi2, pvalue, dof, psi, js = math.nan, math.nan, 0, math.nan, math.nan
    else:
        kept = [(x, y) for x, y in zip(e, a, strict=True) if x + y > 0]
        if len(kept) < 2:
            chi2, pvalue, dof = 0.0, 1.0, 0
        else:
            chi2, pvalue, dof = chi2_homogeneity([x for x, _ in kept], [y for _, y in kept])
        psi = psi_from_counts(e, a, epsilon)
        js = js_distance_from_counts(e, a)
    return CategoricalResult(psi=psi, chi2=chi2, chi2_pvalue=pvalue, chi2_dof=dof,
                             js_distance=js, categories=tuple(str(c) for c in categories),
                             expected=tuple(proportions(e)), actual=tuple(proportions(a)),
                             unseen_in_baseline=unseen, n_baseline=n_b, n_current=n_c,
                             epsilon=epsilon)


def chi2_homogeneity(first: Numbers, second: Numbers) -> tuple[float, float, int]:
    """Pearson's chi-square test of a 2 × k table of counts (no continuity correction),
    as scipy's ``chi2_contingency(table, correction=False)``."""
    rows = (floats(first), floats(second))
    row_totals = [math.fsum(r) for r in rows]
    total = math.fsum(row_totals)
    column_totals = [x + y for x, y in zip(*rows, strict=True)]
    statistic = math.fsum((observed - row_total * column / total) ** 2
                          / (row_total * column / total)
                          for row, row_total in zip(rows, row_totals, strict=True)
                          for observed, column in zip(row, column_totals, strict=True))
    dof = len(column_totals) - 1
    return statistic, chi2_sf(statistic, dof), dof


# ---- binned counts (the DuckDB path) ----------------------------------------------


def _cdf(counts: list[float]) -> list[float]:
    """F at −inf and after each bin: 0, c1/n, (c1 + c2)/n, …"""
    total = math.fsum(counts)
    return [0.0] + [c / total for c in accumulate(counts)]


def ks_from_binned_counts(expected_counts: Numbers, actual_counts: Numbers,
                          edges: Numbers | None = None,
                          expected_at_edges: Numbers | None = None,
                          actual_at_edges: Numbers | None = None) -> KSResult:
    """KS from counts over the same bins (−inf, e1], (e1, e2], …, (e_last, +inf).

    Exact counts make both CDFs exact at every edge (and just left of it, when the counts
    of values equal to each edge, ``*_at_edges``, are given), so the statistic taken there
    is a lower bound of the raw-sample KS. Strictly inside a bin each CDF stays between
    its values at the bin's ends, which bounds the raw-sample KS from above;
    ``error_bound`` is that upper bound minus the statistic, never more than the largest
    bin mass, and 0 when every value sits on an edge (discrete data).
    """
    e, a = floats(expected_counts), floats(actual_counts)
    n_b, n_c = round(math.fsum(e)), round(math.fsum(a))
    if n_b == 0 or n_c == 0:
        return KSResult(math.nan, math.nan, n_b, n_c, math.nan, "binned")
    inner = len(e) - 1
    e_edge = floats(expected_at_edges) if expected_at_edges is not None else [0.0] * inner
    a_edge = floats(actual_at_edges) if actual_at_edges is not None else [0.0] * inner
    cdf_b, cdf_a = _cdf(e), _cdf(a)  # F at −inf, e1, …, e_last, +inf
    total_b, total_a = math.fsum(e), math.fsum(a)
    # F just left of each edge, then of +inf (no mass there).
    below_b = [cdf_b[j + 1] - e_edge[j] / total_b for j in range(inner)] + [1.0]
    below_a = [cdf_a[j + 1] - a_edge[j] / total_a for j in range(inner)] + [1.0]
    statistic, where = 0.0, -1
    # One pass over zipped lists (a few thousand bins per feature and run).
    for j, (at_a, at_b, left_a, left_b) in enumerate(
            zip(cdf_a[1:inner + 1], cdf_b[1:inner + 1], below_a[:inner], below_b[:inner],
                strict=True)):
        gap = abs(at_a - at_b)
        beside = abs(left_a - left_b)
        if beside > gap:
            gap = beside
        if gap > statistic or where < 0:
            statistic, where = gap, j
    upper = max(max(left_a - at_b, left_b - at_a)
                for left_a, left_b, at_a, at_b in zip(below_a, below_b, cdf_a[:inner + 1],
                                                      cdf_b[:inner + 1], strict=True))
    location = math.nan
    if edges is not None and where >= 0:
        location = float(edges[where])
    return KSResult(statistic, ks_pvalue(statistic, n_b, n_c), n_b, n_c, location, "binned",
                    error_bound=max(upper - statistic, 0.0))


def abs_linear_integral(d0: float, d1: float, width: float) -> float:
    """∫|d| over a segment of ``width`` where d runs linearly from d0 to d1."""
    total = abs(d0) + abs(d1)
    if d0 * d1 >= 0:
        return total / 2.0 * width
    return (d0 * d0 + d1 * d1) / (2.0 * total) * width


def spread(stddev: float, iqr: float) -> tuple[float, str]:
    """The baseline's scale for a normalised distance: stddev, else IQR, else 1."""
    if math.isfinite(stddev) and stddev > 0:
        return stddev, "stddev"
    if math.isfinite(iqr) and iqr > 0:
        return iqr, "iqr"
    return 1.0, "none"


def wasserstein_from_binned_counts(points: Numbers, expected_counts: Numbers,
                                   actual_counts: Numbers,
                                   baseline_stddev: float = math.nan,
                                   baseline_iqr: float = math.nan) -> WassersteinResult:
    """Wasserstein-1 from counts over bins whose ends are ``points`` (bins + 1 values).

    ``points`` are the outer ends (the smallest and largest value of either window) with
    the interior edges between them. Mass is taken as spread evenly inside each bin, so
    both CDFs are piecewise linear and ∫ |F_current − F_baseline| is integrated exactly;
    the error is at most Σ bin width × bin mass.
    """
    x, e, a = floats(points), floats(expected_counts), floats(actual_counts)
    if len(x) != len(e) + 1 or len(e) != len(a):
        raise ValueError("need one more point than bins, and equal bin counts")
    n_b, n_c = round(math.fsum(e)), round(math.fsum(a))
    if n_b == 0 or n_c == 0:
        return WassersteinResult(math.nan, math.nan, math.nan, "none", n_b, n_c)
    difference = [p - q for p, q in zip(_cdf(a), _cdf(e), strict=True)]
    # abs_linear_integral inlined: a few thousand bins per feature and run.
    pieces = []
    for d0, d1, low, high in zip(difference[:-1], difference[1:], x[:-1], x[1:],
                                 strict=True):
        width = high - low  # inf where the ends overflow; negative widths count as 0
        if width < 0:
            width = 0.0
        total = abs(d0) + abs(d1)
        if d0 * d1 >= 0:
            pieces.append(total / 2.0 * width)
        else:
            pieces.append((d0 * d0 + d1 * d1) / (2.0 * total) * width)
    distance = math.fsum(pieces)
    scale, kind = spread(baseline_stddev, baseline_iqr)
    return WassersteinResult(distance / scale, distance, scale, kind, n_b, n_c)
