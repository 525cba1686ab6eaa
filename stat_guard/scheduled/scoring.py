"""From the aggregates DuckDB returned to per-feature statistics and verdicts.

Pure Python over counts: every formula comes from ``stat_guard.counts`` (which
``stat_guard.stats`` builds on for the verdict service), the pooling of categories from
``stat_guard.categories`` (which the verdict service uses too) and every rule from
``stat_guard.verdict``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping

from stat_guard import counts
from stat_guard.categories import (
    OTHER_CATEGORY,
    UNSEEN_CATEGORY,
    pool_categories,
    unseen_categories,
)
from stat_guard.display import (
    FeatureDisplay,
    binned_cdf,
    categorical_display,
    numeric_display,
)
from stat_guard.scheduled.aggregates import CATEGORICAL, FeatureAggregate, WindowCounts
from stat_guard.scheduled.results import FeatureDrift
from stat_guard.scheduled.windows import CURRENT, HISTORICAL
from stat_guard.verdict import ERROR, Evidence, Thresholds, Verdict, decide

logger = logging.getLogger(__name__)


def error_feature(name: str, kind: str, message: str) -> FeatureDrift:
    return FeatureDrift(name=name, kind=kind, verdict=ERROR, error=message)


def score_feature(aggregate: FeatureAggregate, max_categories: int) -> FeatureDrift:
    """Statistics of one feature; the verdict is set later by :func:`apply_verdicts`."""
    historical = aggregate.windows.get(HISTORICAL, WindowCounts())
    current = aggregate.windows.get(CURRENT, WindowCounts())
    base = FeatureDrift(
        name=aggregate.spec.name, kind=aggregate.spec.kind, verdict=Verdict.OK.value,
        n_historical=historical.values, n_current=current.values,
        missing_historical=historical.nulls + historical.nonfinite,
        missing_current=current.nulls + current.nonfinite,
        notes=_missing_notes(historical, current),
        display_shape=_safe_display_shape(aggregate, historical, current))
    if aggregate.spec.kind == CATEGORICAL:
        return _score_categorical(base, historical, current, max_categories)
    return _score_numeric(base, aggregate, historical, current)


def _safe_display_shape(aggregate: FeatureAggregate, historical: WindowCounts,
                        current: WindowCounts) -> FeatureDisplay | None:
    """A display that cannot be built is left out (logged): it never costs the scores."""
    try:
        return display_shape(aggregate, historical, current)
    except Exception:  # the run's figures matter more than a picture
        logger.exception("feature %r: display summary not built", aggregate.spec.name[:100])
        return None


def display_shape(aggregate: FeatureAggregate, historical: WindowCounts,
                  current: WindowCounts) -> FeatureDisplay:
    """The display summary's bins or categories (stat_guard.display) from the aggregates:
    numeric from the fine bins (their mass spread evenly between the fine edges, the end
    bins reaching each window's minimum and maximum), categorical from the category counts.
    The verdict and figures are filled in by ``FeatureDrift.display_summary``."""
    name = aggregate.spec.name
    if aggregate.spec.kind == CATEGORICAL:
        return categorical_display(name, historical.categories, current.categories,
                                   verdict=Verdict.OK.value)
    fine = aggregate.fine_edges
    sides = []
    for window in (historical, current):
        bins = window.fine_counts
        if not fine or bins is None or window.values <= 0 or not any(bins):
            sides.append(None)
            continue
        low = window.minimum if window.minimum <= fine[0] else fine[0]  # NaN: fine[0]
        high = window.maximum if window.maximum >= fine[-1] else fine[-1]
        sides.append(binned_cdf([low, *fine, high], bins))
    (baseline_cdf, baseline_quantile), (current_cdf, current_quantile) = (
        side or (None, None) for side in sides)
    return numeric_display(name, baseline_cdf, current_cdf, baseline_quantile,
                           current_quantile, verdict=Verdict.OK.value)


def _missing_notes(historical: WindowCounts, current: WindowCounts) -> tuple[str, ...]:
    notes = []
    for label, window in (("historical", historical), ("current", current)):
        if window.nulls or window.nonfinite:
            notes.append(f"{label}: {window.nulls} NULL and {window.nonfinite} NaN/Inf "
                         "values left out")
    return tuple(notes)


def _score_numeric(base: FeatureDrift, aggregate: FeatureAggregate, historical: WindowCounts,
                   current: WindowCounts) -> FeatureDrift:
    if historical.psi_counts is None or current.psi_counts is None:
        return base
    n_b, n_c = historical.values, current.values
    edges = aggregate.psi_edges
    psi = counts.psi_from_bins(edges, historical.psi_counts, current.psi_counts, n_b, n_c)
    both = n_b > 0 and n_c > 0
    kl = counts.kl_from_counts(historical.psi_counts, current.psi_counts) if both else math.nan
    js = counts.js_distance_from_counts(historical.psi_counts, current.psi_counts)
    ks = counts.ks_from_binned_counts(historical.fine_counts, current.fine_counts,
                                  aggregate.fine_edges, historical.fine_at_edges,
                                  current.fine_at_edges)
    fine = aggregate.fine_edges
    low = min(v for v in (historical.minimum, current.minimum, fine[0]) if not math.isnan(v))
    high = max(v for v in (historical.maximum, current.maximum, fine[-1]) if not math.isnan(v))
    wasserstein = counts.wasserstein_from_binned_counts(
        [low, *fine, high], historical.fine_counts, current.fine_counts,
        aggregate.stddev, aggregate.iqr)
    return dataclasses.replace(
        base, psi=psi.statistic, psi_critical=psi.critical_value, psi_pvalue=psi.pvalue,
        psi_bin_edges=psi.bin_edges,
        kl=kl, js=js, ks_statistic=ks.statistic, ks_pvalue=ks.pvalue,
        ks_error_bound=ks.error_bound if both else math.nan,
        wasserstein=wasserstein.distance, wasserstein_normalized=wasserstein.statistic,
        wasserstein_scale=wasserstein.scale_kind)


def _score_categorical(base: FeatureDrift, historical: WindowCounts, current: WindowCounts,
                       max_categories: int) -> FeatureDrift:
    expected, actual = pool_categories(historical.categories, current.categories,
                                       max_categories)
    result = counts.categorical_drift(expected, actual)
    unseen, unseen_share = unseen_categories(historical.categories, current.categories)
    distinct = len(set(historical.categories) | set(current.categories))
    notes = base.notes
    if distinct > max_categories:
        notes += (f"high cardinality: {distinct} distinct categories, the rarest historical "
                  f"ones pooled into {OTHER_CATEGORY}, new ones into {UNSEEN_CATEGORY}",)
    return dataclasses.replace(
        base, psi=result.psi, js=result.js_distance, chi2=result.chi2,
        chi2_pvalue=result.chi2_pvalue, psi_pvalue=result.chi2_pvalue,
        unseen_categories=unseen, unseen_share=unseen_share, distinct_categories=distinct,
        notes=notes,
        kl=counts.kl_from_counts(list(expected.get(c, 0) for c in result.categories),
                             list(actual.get(c, 0) for c in result.categories))
        if result.n_baseline and result.n_current else math.nan,
        psi_critical=counts.psi_critical_value(result.n_baseline, result.n_current,
                                           len(result.categories)))


def evidence(feature: FeatureDrift) -> Evidence:
    """What the verdict rules look at, from a scored feature."""
    return Evidence(n_baseline=feature.n_historical, n_current=feature.n_current,
                    psi=feature.psi, psi_pvalue=feature.psi_pvalue,
                    ks_statistic=feature.ks_statistic, ks_pvalue=feature.ks_pvalue,
                    missing_baseline=feature.missing_historical,
                    missing_current=feature.missing_current)


def apply_verdicts(features: Mapping[str, FeatureDrift],
                   thresholds: Thresholds) -> dict[str, FeatureDrift]:
    """Correct the features' p-values together (Benjamini–Hochberg), then apply the
    verdict rules (stat_guard.verdict)."""
    scored = [name for name, f in features.items() if f.verdict != ERROR]
    pvalues = [evidence(features[n]).pvalue() for n in scored]
    adjusted = dict(zip(scored, counts.benjamini_hochberg(pvalues), strict=True))
    decided = {}
    for name, feature in features.items():
        if feature.verdict == ERROR:
            decided[name] = feature
            continue
        decision = decide(evidence(feature), thresholds, adjusted[name])
        error = None
        if decision.verdict == Verdict.INSUFFICIENT_DATA:
            error = "; ".join(decision.reasons + feature.notes)
        elif _constant_in_both(feature):
            decision = dataclasses.replace(decision, verdict=Verdict.INSUFFICIENT_DATA)
            error = f"constant in both windows (value {feature.psi_bin_edges[0]:g})"
        decided[name] = dataclasses.replace(
            feature, verdict=decision.verdict.value, reasons=decision.reasons, error=error,
            pvalue_adjusted=adjusted[name])
    return decided


def _constant_in_both(feature: FeatureDrift) -> bool:
    """One historical edge and nothing moved: there is no distribution to compare."""
    return (feature.kind != CATEGORICAL and len(feature.psi_bin_edges) == 1
            and feature.ks_statistic == 0.0 and feature.wasserstein == 0.0)
