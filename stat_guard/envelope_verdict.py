"""From a request envelope of digests to the verdict JSON (docs/wire-format.md §4): every
statistic per feature, the verdict rules, then the model's verdict.

The verdict service (stat_guard/service.py, which the Azure Function wraps) answers with
:func:`analyze_envelope`; ``compare_samples`` applies the same statistics to raw samples
(the digest demo and the tests). The scheduled DuckDB engine takes the same formulas from
``stat_guard.counts`` and the same rules from ``stat_guard.verdict``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stat_guard import __version__, stats
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
from stat_guard.wire import decode_envelope


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


@dataclass(frozen=True)
class FeatureReport:
    name: str
    comparison: NumericComparison
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


def evaluate(comparisons: Mapping[str, NumericComparison],
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
    overall = model_verdict((f.decision.verdict.value, f.comparison.psi.statistic)
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
        "missing_rate_baseline": json_number(c.evidence().missing_rates[0]),
        "missing_rate_current": json_number(c.evidence().missing_rates[1]),
        "kl_divergence": json_number(c.kl.statistic),
        "js_distance": json_number(c.js.statistic),
        "wasserstein_normalized": json_number(c.wasserstein.statistic),
        "wasserstein": json_number(c.wasserstein.distance),
        "wasserstein_scale": c.wasserstein.scale_kind,
    }


def analyze_envelope(body: bytes, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Decode a request envelope and answer the verdict JSON (docs/wire-format.md §4).

    Raises :class:`stat_guard.wire.WireFormatError` for a malformed body.
    """
    started = time.perf_counter()
    envelope = decode_envelope(body)
    decoded = time.perf_counter()
    comparisons = {name: compare_digests(pair.baseline, pair.current)
                   for name, pair in envelope.columns.items()}
    report = evaluate(comparisons, thresholds)
    columns = {}
    for name, feature in report.features.items():
        pair = envelope.columns[name]
        columns[name] = feature_json(feature) | {
            "current": _summary_json(pair.current),
            "baseline": _summary_json(pair.baseline),
        }
    finished = time.perf_counter()
    return {
        "status": "ok",
        "verdict": report.verdict.value,
        "request_id": envelope.metadata.get("request_id"),
        "function_version": __version__,
        "thresholds": thresholds.as_dict(),
        "columns": columns,
        "timings_ms": {"decode": round((decoded - started) * 1e3, 3),
                       "statistics": round((finished - decoded) * 1e3, 3)},
    }


def _summary_json(digest: TDigest) -> dict[str, Any]:
    return {key: json_number(value) if isinstance(value, float) else value
            for key, value in digest.summary().items()}
