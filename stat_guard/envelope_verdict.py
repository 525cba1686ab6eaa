"""From a request envelope of digests and category count tables to the verdict JSON
(docs/wire-format.md §4): every statistic per feature, the verdict rules, then the model's
verdict.

The verdict service (stat_guard/service.py, which the Azure Function wraps) answers with
:func:`analyze_envelope`; ``compare_samples`` applies the same statistics to raw samples
(the digest demo and the tests). Categorical columns are scored as the scheduled DuckDB
engine scores them: ``stat_guard.categories.pool_categories`` and
``stat_guard.counts.categorical_drift``; both paths apply the rules of
``stat_guard.verdict``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stat_guard import __version__, display, stats
from stat_guard.categories import (
    DEFAULT_MAX_CATEGORIES,
    CategoryCounts,
    align_tables,
    is_named,
    pool_categories,
    unseen_categories,
)
from stat_guard.tdigest import TDigest
from stat_guard.verdict import (
    DEFAULT_THRESHOLDS,
    Decision,
    Evidence,
    Thresholds,
    Verdict,
    decide,
    model_verdict,
)
from stat_guard.wire import ColumnCategories, WireFormatError, decode_envelope

logger = logging.getLogger(__name__)

# Categories listed with their shares in a categorical column's verdict.
MAX_TOP_LISTED = 20
# The columns' ``display`` objects together stay within this many bytes of compact JSON
# (the most severe columns get theirs first; ``display_omitted`` says some went without):
# the extension refuses an answer above pg_stat_guard.max_response_bytes (1 MiB by
# default), and its 256 columns' verdict is about 330 kB without displays. An envelope
# whose metadata names ``max_response_bytes`` (the extension's does) gets at most what that
# limit leaves after the verdicts and the answer's head.
DISPLAY_BUDGET_BYTES = 512 * 1024
_DISPLAY_LEVELS = np.array(display.RANGE_LEVELS + display.QUANTILE_LEVELS)


@dataclass(frozen=True)
class NumericComparison:
    """Every statistic between a baseline and a current window of one numeric feature."""

    ks: stats.KSResult
    psi: stats.PSIResult
    kl: stats.BinnedResult
    js: stats.BinnedResult
    wasserstein: stats.WassersteinResult
    missing_baseline: int = 0  # NULL, NaN and ±Inf values, left out of the statistics
    missing_current: int = 0

    def evidence(self) -> Evidence:
        return Evidence(n_baseline=self.ks.n_baseline, n_current=self.ks.n_current,
                        psi=self.psi.statistic, psi_pvalue=self.psi.pvalue,
                        ks_statistic=self.ks.statistic, ks_pvalue=self.ks.pvalue,
                        missing_baseline=self.missing_baseline,
                        missing_current=self.missing_current)

    @property
    def drift_score(self) -> float:
        return self.psi.statistic


@dataclass(frozen=True)
class CategoricalComparison:
    """Every statistic between the baseline's and the current window's count tables of one
    categorical feature, over the bins of ``align_tables`` pooled by ``pool_categories``."""

    result: stats.CategoricalResult
    baseline: CategoryCounts
    current: CategoryCounts
    bins_baseline: dict[str, int]  # the bins scored, before pooling
    bins_current: dict[str, int]
    kl: float
    psi_critical: float
    unseen: tuple[str, ...]  # named new categories, the most frequent first
    unseen_share: float  # of the current window; NaN when the baseline pooled categories

    def evidence(self) -> Evidence:
        return Evidence(n_baseline=self.baseline.total, n_current=self.current.total,
                        psi=self.result.psi, psi_pvalue=self.result.chi2_pvalue,
                        missing_baseline=self.baseline.missing,
                        missing_current=self.current.missing)

    @property
    def drift_score(self) -> float:
        return self.result.psi


Comparison = NumericComparison | CategoricalComparison


@dataclass(frozen=True)
class FeatureReport:
    name: str
    comparison: Comparison
    decision: Decision
    pvalue_adjusted: float  # the feature's p-value, Benjamini–Hochberg across the model


@dataclass(frozen=True)
class ModelReport:
    verdict: Verdict
    features: dict[str, FeatureReport]


def compare_digests(baseline: TDigest, current: TDigest, bins: int = stats.DEFAULT_PSI_BINS,
                    epsilon: float = stats.DEFAULT_EPSILON) -> NumericComparison:
    return NumericComparison(
        ks=stats.ks_digests(baseline, current),
        psi=stats.psi_digests(baseline, current, bins, epsilon),
        kl=stats.kl_digests(baseline, current, bins, epsilon),
        js=stats.js_digests(baseline, current, bins),
        wasserstein=stats.wasserstein_digests(baseline, current),
        missing_baseline=baseline.invalid_count, missing_current=current.invalid_count,
    )


def compare_samples(baseline: np.ndarray, current: np.ndarray, bins: int = stats.DEFAULT_PSI_BINS,
                    epsilon: float = stats.DEFAULT_EPSILON) -> NumericComparison:
    """Raw samples; NaN and ±Inf count as missing values."""
    baseline, current = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    return NumericComparison(
        ks=stats.ks_samples(baseline, current),
        psi=stats.psi_samples(baseline, current, bins, epsilon),
        kl=stats.kl_samples(baseline, current, bins, epsilon),
        js=stats.js_samples(baseline, current, bins),
        wasserstein=stats.wasserstein_samples(baseline, current),
        missing_baseline=int(np.count_nonzero(~np.isfinite(baseline))),
        missing_current=int(np.count_nonzero(~np.isfinite(current))),
    )


def compare_categories(baseline: CategoryCounts, current: CategoryCounts,
                       max_categories: int = DEFAULT_MAX_CATEGORIES,
                       epsilon: float = stats.DEFAULT_EPSILON) -> CategoricalComparison:
    """Score two bounded count tables: bins exact on both sides (``align_tables``), pooled
    beyond ``max_categories`` as the scheduled engine pools (every baseline bin is kept)."""
    historical, recent = align_tables(baseline, current)
    expected, actual = pool_categories(historical, recent,
                                       max(max_categories, len(historical) + 2))
    result = stats.categorical_drift(expected, actual, epsilon)
    unseen, unseen_share = unseen_categories(historical, recent)
    both = result.n_baseline > 0 and result.n_current > 0
    kl = (stats.kl_from_counts([expected.get(c, 0) for c in result.categories],
                               [actual.get(c, 0) for c in result.categories], epsilon)
          if both else math.nan)
    return CategoricalComparison(
        result=result, baseline=baseline, current=current, bins_baseline=historical,
        bins_current=recent, kl=kl,
        psi_critical=stats.psi_critical_value(result.n_baseline, result.n_current,
                                              len(result.categories)),
        unseen=tuple(c for c in unseen if is_named(c)),
        unseen_share=math.nan if baseline.pooled else unseen_share)


def evaluate(comparisons: Mapping[str, Comparison],
             thresholds: Thresholds = DEFAULT_THRESHOLDS) -> ModelReport:
    """Apply the verdict rules to each feature; the features' p-values are corrected
    together (Benjamini–Hochberg), which the rules use when configured to."""
    names = list(comparisons)
    evidence = {name: comparisons[name].evidence() for name in names}
    adjusted = stats.benjamini_hochberg([evidence[n].pvalue() for n in names])
    features = {}
    for name, p_adjusted in zip(names, adjusted, strict=True):
        decision = decide(evidence[name], thresholds, p_adjusted)
        features[name] = FeatureReport(name, comparisons[name], decision, p_adjusted)
    overall = model_verdict((f.decision.verdict.value, f.comparison.drift_score)
                            for f in features.values())
    return ModelReport(Verdict(overall.verdict), features)


def json_number(value: float) -> float | None:
    """JSON has no NaN or Infinity: undefined figures become null."""
    if value is None or isinstance(value, bool):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def feature_json(report: FeatureReport) -> dict[str, Any]:
    c = report.comparison
    if isinstance(c, CategoricalComparison):
        return categorical_json(report, c)
    missing_baseline, missing_current = c.evidence().missing_rates
    return {
        "verdict": report.decision.verdict.value,
        "reasons": list(report.decision.reasons),
        "psi": json_number(c.psi.statistic),
        "psi_critical": json_number(c.psi.critical_value),
        "psi_pvalue": json_number(c.psi.pvalue),
        "psi_bins": [json_number(e) for e in c.psi.bin_edges],
        "ks_statistic": json_number(c.ks.statistic),
        "ks_pvalue": json_number(c.ks.pvalue),
        "pvalue_adjusted": json_number(report.pvalue_adjusted),
        "missing_rate_baseline": json_number(missing_baseline),
        "missing_rate_current": json_number(missing_current),
        "kl_divergence": json_number(c.kl.statistic),
        "js_distance": json_number(c.js.statistic),
        "wasserstein_normalized": json_number(c.wasserstein.statistic),
        "wasserstein": json_number(c.wasserstein.distance),
        "wasserstein_scale": c.wasserstein.scale_kind,
    }


def categorical_json(report: FeatureReport, c: CategoricalComparison) -> dict[str, Any]:
    """A categorical column of the verdict (docs/wire-format.md §4)."""
    r = c.result
    evidence = c.evidence()
    notes = []
    if c.baseline.pooled:
        notes.append(f"baseline: {c.baseline.other_distinct} rarer categories counted "
                     "together; a category it does not name may be new or one of them")
    if c.current.pooled:
        notes.append(f"current: {c.current.other_distinct} rarer categories counted "
                     "together")
    return {
        "kind": "categorical",
        "verdict": report.decision.verdict.value,
        "reasons": list(report.decision.reasons),
        "psi": json_number(r.psi),
        "psi_critical": json_number(c.psi_critical),
        "psi_pvalue": json_number(r.chi2_pvalue),
        "chi2": json_number(r.chi2),
        "chi2_pvalue": json_number(r.chi2_pvalue),
        "chi2_dof": r.chi2_dof,
        "pvalue_adjusted": json_number(report.pvalue_adjusted),
        "missing_rate_baseline": json_number(evidence.missing_rates[0]),
        "missing_rate_current": json_number(evidence.missing_rates[1]),
        "kl_divergence": json_number(c.kl),
        "js_distance": json_number(r.js_distance),
        "top_categories": _top_categories(c),
        "unseen_categories": list(c.unseen),
        "unseen_share": json_number(c.unseen_share),
        "other_share_baseline": json_number(_share(c.baseline.other_count, c.baseline.total)),
        "other_share_current": json_number(_share(c.current.other_count, c.current.total)),
        "pooled": c.baseline.pooled or c.current.pooled,
        "notes": notes,
    }


def _share(part: int, whole: int) -> float:
    return part / whole if whole > 0 else math.nan


def _top_categories(c: CategoricalComparison) -> list[dict[str, Any]]:
    """The named categories with the largest share in either window, with both shares (a
    baseline share is null when the baseline pooled the category with others)."""
    baseline, current = c.baseline.counts, c.current.counts
    known_zero = not c.baseline.pooled
    rows = []
    for name in baseline.keys() | current.keys():
        if name in baseline or known_zero:
            share_b = _share(baseline.get(name, 0), c.baseline.total)
        else:
            share_b = math.nan
        share_c = _share(current.get(name, 0), c.current.total)
        largest = max((v for v in (share_b, share_c) if not math.isnan(v)), default=0.0)
        rows.append((-largest, name.encode("utf-8"), name, share_b, share_c))
    rows.sort()
    return [{"category": name, "baseline_share": json_number(share_b),
             "current_share": json_number(share_c)}
            for _, _, name, share_b, share_c in rows[:MAX_TOP_LISTED]]


def analyze_envelope(body: bytes, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                     display_budget_bytes: int = DISPLAY_BUDGET_BYTES) -> dict[str, Any]:
    """Decode a request envelope and answer the verdict JSON (docs/wire-format.md §4).

    Each column gets a ``display`` object (``stat_guard.display.FeatureDisplay.to_json``),
    the most severe columns first, while they fit in ``display_budget_bytes`` (and in what
    a ``max_response_bytes`` the metadata names leaves after the verdicts);
    ``display_omitted`` is true when some column went without. Raises
    :class:`stat_guard.wire.WireFormatError` for a malformed body.
    """
    started = time.perf_counter()
    envelope = decode_envelope(body)
    request_id = envelope.metadata.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise WireFormatError(f"metadata request_id must be a string, got "
                              f"{type(request_id).__name__}")
    decoded = time.perf_counter()
    comparisons: dict[str, Comparison] = {
        name: compare_categories(pair.baseline, pair.current)
        if isinstance(pair, ColumnCategories) else compare_digests(pair.baseline, pair.current)
        for name, pair in envelope.columns.items()}
    report = evaluate(comparisons, thresholds)
    columns = {}
    for name, feature in report.features.items():
        pair = envelope.columns[name]
        summary = _table_json if isinstance(pair, ColumnCategories) else _summary_json
        columns[name] = feature_json(feature) | {
            "current": summary(pair.current),
            "baseline": summary(pair.baseline),
        }
    scored = time.perf_counter()
    omitted = add_displays(columns, report, envelope.columns,
                           _display_budget(display_budget_bytes, envelope.metadata, columns))
    finished = time.perf_counter()
    return {
        "status": "ok",
        "verdict": report.verdict.value,
        "request_id": request_id,
        "function_version": __version__,
        "thresholds": thresholds.as_dict(),
        "columns": columns,
        "display_omitted": omitted,
        "timings_ms": {"decode": round((decoded - started) * 1e3, 3),
                       "statistics": round((scored - decoded) * 1e3, 3),
                       "display": round((finished - scored) * 1e3, 3)},
    }


# Room kept in a client's answer limit for what is not a column (status, thresholds,
# timings, display_omitted): well above their few hundred bytes.
ANSWER_HEAD_BYTES = 2048


def _display_budget(budget: int, metadata: Mapping[str, Any],
                    columns: Mapping[str, Any]) -> int:
    """``budget``, or less when the client names its answer limit (``max_response_bytes``):
    what the limit leaves after the columns' verdicts (as the service writes them,
    compact JSON) and the answer's head."""
    limit = metadata.get("max_response_bytes")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        verdicts = len(json.dumps(columns, separators=(",", ":"), allow_nan=False,
                                  default=str))
        return max(0, min(budget, limit - verdicts - ANSWER_HEAD_BYTES))
    return budget


def add_displays(columns: dict[str, dict[str, Any]], report: ModelReport,
                 pairs: Mapping[str, Any], budget_bytes: int) -> bool:
    """Give each column of the verdict its ``display`` object, the most severe first
    (verdict, then PSI) while their compact JSON fits in ``budget_bytes``; True when a
    column went without. A display that cannot be built is left out (logged): it never
    costs the verdict."""
    def severity(name: str) -> tuple[int, float]:
        feature = report.features[name]
        psi = feature.comparison.drift_score
        return (display.verdict_rank(feature.decision.verdict.value),
                -psi if math.isfinite(psi) else 1.0)

    left = budget_bytes
    omitted = False
    for name in sorted(report.features, key=severity):
        if left <= 0:
            omitted = True
            continue
        try:
            document, size = feature_display(name, report.features[name],
                                             pairs[name]).to_json_sized()
        except Exception:  # a bug here must never cost the verdict
            logger.exception("display of column %r not built", name[:100])
            omitted = True
            continue
        if size > left:
            omitted = True
            left = 0  # the rest would not fit either, or barely: stop building
            continue
        left -= size
        columns[name]["display"] = document
    return omitted


def feature_display(name: str, report: FeatureReport, pair: Any) -> display.FeatureDisplay:
    """One column's display summary: numeric from the digests (41 CDF values and 9
    quantiles per window, vectorised), categorical from the count tables."""
    c = report.comparison
    evidence = c.evidence()
    missing_baseline, missing_current = evidence.missing_rates
    if isinstance(c, CategoricalComparison):
        statistics = {"psi": c.result.psi, "kl": c.kl, "js": c.result.js_distance,
                      "chi2": c.result.chi2, "chi2_pvalue": c.result.chi2_pvalue}
    else:
        statistics = {"psi": c.psi.statistic, "ks_statistic": c.ks.statistic,
                      "ks_pvalue": c.ks.pvalue, "kl": c.kl.statistic, "js": c.js.statistic,
                      "wasserstein": c.wasserstein.statistic}
    common = {"verdict": report.decision.verdict.value,
              "reasons": tuple(report.decision.reasons),
              "statistics": {k: json_number(v) for k, v in statistics.items()},
              "n_baseline": int(evidence.n_baseline), "n_current": int(evidence.n_current),
              "missing_baseline": json_number(missing_baseline),
              "missing_current": json_number(missing_current)}
    if isinstance(c, CategoricalComparison):
        return _categorical_display(name, c.baseline, c.current, common)
    sides = [_display_curve(pair.baseline), _display_curve(pair.current)]
    ranged = len(display.RANGE_LEVELS)
    values = [None if side is None else _quantiles(side, _DISPLAY_LEVELS) for side in sides]
    edges = display.display_edges(*(() if v is None else v[:ranged] for v in values))
    if not edges:
        return display.FeatureDisplay(name=name, kind=display.NUMERIC, **common)
    inner = np.asarray(edges[1:-1])
    cdfs = [None if side is None else _cdf(side, inner) for side in sides]
    quantiles = [() if v is None else v[ranged:] for v in values]
    return display.numeric_display_at(name, edges, cdfs[0], cdfs[1], quantiles[0],
                                      quantiles[1], **common)


def _display_curve(digest: TDigest) -> tuple[np.ndarray, np.ndarray] | None:
    """The digest's CDF as one polyline (each anchor twice: its value before and after its
    jump), normalised; None for an empty digest. One ``np.interp`` then reads the CDF or,
    swapped, the quantiles: the digest's own piecewise-linear model (docs/wire-format.md
    §2) at a fraction of ``TDigest.cdf``'s cost, as many columns are drawn at once."""
    if digest.count == 0:
        return None
    anchors = digest._anchors()
    x = np.repeat(anchors.x, 2)
    f = np.empty(x.size)
    f[0::2] = anchors.f_low
    f[1::2] = anchors.f_high
    return x, f / anchors.total


def _cdf(curve: tuple[np.ndarray, np.ndarray], xs: np.ndarray) -> list[float]:
    return np.interp(xs, curve[0], curve[1]).tolist()


def _quantiles(curve: tuple[np.ndarray, np.ndarray], levels: np.ndarray) -> list[float]:
    return np.interp(levels, curve[1], curve[0]).tolist()


def _categorical_display(name: str, baseline: CategoryCounts, current: CategoryCounts,
                         common: dict[str, Any]) -> display.FeatureDisplay:
    """Shares of each window's non-missing values: the categories a table pooled
    (``other_count``) go to ``other``; with a pooled baseline no category is called
    unseen (it may be one of the pooled ones)."""
    shown = display.categorical_display(name, baseline.counts, current.counts, **common)
    scale_b = _scale(baseline)
    scale_c = _scale(current)
    categories = tuple(display.CategoryShare(
        name=item.name, baseline=item.baseline * scale_b, current=item.current * scale_c,
        unseen=item.unseen and not baseline.pooled) for item in shown.categories)
    return replace(
        shown, categories=categories,
        other_baseline=shown.other_baseline * scale_b
        + (baseline.other_count / baseline.total if baseline.total else 0.0),
        other_current=shown.other_current * scale_c
        + (current.other_count / current.total if current.total else 0.0),
        other_count=shown.other_count + baseline.other_distinct + current.other_distinct)


def _scale(table: CategoryCounts) -> float:
    """Named share → share of the whole table."""
    return (table.total - table.other_count) / table.total if table.total else 0.0


def _summary_json(digest: TDigest) -> dict[str, Any]:
    return {key: json_number(value) if isinstance(value, float) else value
            for key, value in digest.summary().items()}


def _table_json(table: CategoryCounts) -> dict[str, Any]:
    return {"count": table.total, "null_count": table.missing, "distinct": table.distinct,
            "named": len(table.categories), "other_count": table.other_count,
            "other_distinct": table.other_distinct}
