"""The exporter's text exposition (Prometheus format 0.0.4), written directly.

prometheus_client's metric families cost about 20 µs a sample to build and format; at
1,000 models × 50 features that was most of a 12 s scrape. Here each (model, source)'s
newest record is formatted once into a :class:`RecordBlock` (its lines per metric) and
kept until a newer record replaces it; a scrape joins the blocks under the families'
headers. Which per-feature series exist: :data:`DEFAULT_FEATURE_SERIES` always,
:data:`OPTIONAL_FEATURE_SERIES` when ``exporter.feature_series`` names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from stat_guard.result_record import RECORD_VERDICTS, FeatureFigures, ResultRecord
from stat_guard.verdict import Verdict

PREFIX = "stat_guard"
VERDICTS = tuple(str(v) for v in Verdict)
# A model's verdict series cover every verdict a record may carry, "error" included, so a
# model whose runs fail and then recover sees verdict="error" go from 1 to 0.
MODEL_VERDICTS = RECORD_VERDICTS
ALL = "all"


@dataclass(frozen=True)
class FeatureSeries:
    """One per-feature gauge: its config name, metric name, help and value."""

    key: str
    help: str
    value: Callable[[FeatureFigures], float | None]

    @property
    def metric(self) -> str:
        return f"{PREFIX}_feature_{self.key}"


def _increase(figures: FeatureFigures) -> float | None:
    """How far the missing share rose (6 decimals); None when it did not rise, so the
    features without a rise (usually nearly all) cost no series."""
    current, baseline = figures.missing_rate_current, figures.missing_rate_baseline
    if current is None or baseline is None or not current > baseline:
        return None
    rise = round(current - baseline, 6)
    return rise if rise > 0 else None


VERDICT_HELP = ("The verdict of the feature's latest run, as the verdict label (value 1); "
                "with exporter.feature_series verdict_states the other verdicts too, at 0.")
VERDICT_METRIC = f"{PREFIX}_feature_verdict"
VERDICT_STATES = "verdict_states"

# Always exported (with the verdict): what the alert rules need.
DEFAULT_FEATURE_SERIES = (
    FeatureSeries("missing_ratio_increase",
                  "How far the share of NULL, NaN or infinite values rose from the baseline "
                  "to the current window (0..1); absent when it did not rise.", _increase),
)
# Opt-in (exporter.feature_series): the drift statistics the dashboard's feature panels draw.
OPTIONAL_FEATURE_SERIES = (
    FeatureSeries("psi", "Population stability index of the feature's latest run.",
                  lambda f: f.psi),
    FeatureSeries("ks_statistic", "Kolmogorov–Smirnov statistic (0..1).",
                  lambda f: f.ks_statistic),
    FeatureSeries("ks_pvalue", "Kolmogorov–Smirnov p-value.", lambda f: f.ks_pvalue),
    FeatureSeries("kl_divergence", "Kullback–Leibler divergence (smoothed bins).",
                  lambda f: f.kl),
    FeatureSeries("js_distance", "Jensen–Shannon distance (0..1).", lambda f: f.js),
    FeatureSeries("wasserstein_normalized",
                  "Wasserstein distance divided by the baseline's spread (dimensionless).",
                  lambda f: f.wasserstein),
    FeatureSeries("missing_ratio",
                  "Share of the current window's values that are NULL, NaN or infinite "
                  "(0..1).", lambda f: f.missing_rate_current),
    FeatureSeries("baseline_missing_ratio",
                  "Share of the baseline's values that are NULL, NaN or infinite (0..1).",
                  lambda f: f.missing_rate_baseline),
    FeatureSeries("error", "1 when the feature's latest run reported an error.",
                  lambda f: 1.0 if f.error else 0.0),
)
OPTIONAL_KEYS = (*(s.key for s in OPTIONAL_FEATURE_SERIES), VERDICT_STATES)

# Per-model gauges: (metric suffix, help).
MODEL_FAMILIES = (
    ("model_drift_score", "The model's drift score (largest feature PSI), latest run."),
    ("model_verdict", "1 for the verdict of the model's latest run, 0 for the others "
     "(ok, warning, drift, insufficient_data, error)."),
    ("model_last_success_timestamp_seconds",
     "When the model's latest successful run finished (Unix time): runs with verdict "
     "error (failed) do not count."),
    ("model_run_duration_seconds", "How long the model's latest run took."),
    ("model_features_omitted",
     "Features of the model's latest run left without series (beyond "
     "exporter.max_features_per_model; drift, warning and error features are kept first)."),
)

# Which features keep their series when a model has more than the cap: the worst first.
_KEEP_ORDER = {"drift": 0, "error": 1, "warning": 2}


def resolve_feature_series(names: Iterable[str]) -> frozenset[str]:
    """The opt-in series named (``all`` for every one); ValueError for an unknown name."""
    chosen = {name.strip() for name in names if name.strip()}
    if ALL in chosen:
        return frozenset(OPTIONAL_KEYS)
    unknown = chosen - set(OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"exporter.feature_series: unknown {sorted(unknown)}; known: "
                         f"{', '.join(OPTIONAL_KEYS)} or {ALL}")
    return frozenset(chosen)


class Layout:
    """The record families of one configuration, in exposition order."""

    def __init__(self, optional: frozenset[str], max_features: int = 1000) -> None:
        self.optional = optional
        self.max_features = max_features
        self.feature_series: tuple[FeatureSeries, ...] = (
            *(s for s in OPTIONAL_FEATURE_SERIES if s.key in optional),
            *DEFAULT_FEATURE_SERIES)
        self.verdict_states = VERDICT_STATES in optional
        self.families: tuple[tuple[str, str], ...] = (
            *((s.metric, s.help) for s in self.feature_series),
            (VERDICT_METRIC, VERDICT_HELP),
            *((f"{PREFIX}_{suffix}", text) for suffix, text in MODEL_FAMILIES))

    def block(self, record: ResultRecord, last_success: float | None) -> RecordBlock:
        """The record's lines per metric name; ``last_success`` is the finish of the model's
        latest run that did not fail (this one's unless it failed)."""
        lines: dict[str, list[str]] = {name: [] for name, _help in self.families}
        model = f'model="{escape_label(record.model)}",source="{escape_label(record.source)}"'
        features = record.features
        omitted = max(0, len(features) - self.max_features)
        if omitted:
            kept = sorted(features, key=lambda f: (_KEEP_ORDER.get(features[f].verdict, 3), f))
            features = {name: features[name] for name in kept[:self.max_features]}
        for feature, figures in sorted(features.items()):
            labels = f'{model},feature="{escape_label(feature)}"'
            for series in self.feature_series:
                value = series.value(figures)
                if value is not None and math.isfinite(value):
                    lines[series.metric].append(f"{series.metric}{{{labels}}} {number(value)}\n")
            if figures.verdict:
                verdicts = (_states(figures.verdict) if self.verdict_states
                            else (figures.verdict,))
                for verdict in verdicts:
                    lines[VERDICT_METRIC].append(
                        f'{VERDICT_METRIC}{{{labels},verdict="{escape_label(verdict)}"}} '
                        f'{"1" if verdict == figures.verdict else "0"}\n')
        _add(lines, "model_drift_score", model, record.drift_score)
        for verdict in _states(record.verdict, MODEL_VERDICTS):
            name = f"{PREFIX}_model_verdict"
            lines[name].append(f'{name}{{{model},verdict="{escape_label(verdict)}"}} '
                               f'{"1.0" if verdict == record.verdict else "0.0"}\n')
        _add(lines, "model_last_success_timestamp_seconds", model, last_success)
        _add(lines, "model_run_duration_seconds", model, record.duration_s)
        if omitted:
            _add(lines, "model_features_omitted", model, float(omitted))
        return RecordBlock({name: "".join(text) for name, text in lines.items() if text})

    def render(self, blocks: Sequence[RecordBlock]) -> list[str]:
        """Every record family: its header, then each block's lines, in the blocks' order."""
        parts: list[str] = []
        for name, text in self.families:
            parts.append(header(name, "gauge", text))
            parts.extend(block.lines[name] for block in blocks if name in block.lines)
        return parts


@dataclass(frozen=True)
class RecordBlock:
    lines: dict[str, str]


def _states(actual: str, known: tuple[str, ...] = VERDICTS) -> tuple[str, ...]:
    return known if actual in known else (*known, actual)


def _add(lines: dict[str, list[str]], suffix: str, labels: str, value: float | None) -> None:
    if value is not None and math.isfinite(value):
        name = f"{PREFIX}_{suffix}"
        lines[name].append(f"{name}{{{labels}}} {number(value)}\n")


# ---- the format -------------------------------------------------------------------------


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def header(name: str, kind: str, text: str) -> str:
    return f"# HELP {name} {escape_help(text)}\n# TYPE {name} {kind}\n"


def gauge(suffix: str, text: str, value: float) -> str:
    name = f"{PREFIX}_{suffix}"
    return f"{header(name, 'gauge', text)}{name} {number(value)}\n"


def counter(suffix: str, text: str, values: Sequence[tuple[str, float]],
            label: str = "") -> str:
    """A counter family ``<prefix>_<suffix>_total``; ``values`` as (label value, count), a
    single unlabelled sample when ``label`` is empty."""
    name = f"{PREFIX}_{suffix}_total"
    body = "".join(
        f'{name}{{{label}="{escape_label(key)}"}} {number(v)}\n' if label
        else f"{name} {number(v)}\n" for key, v in values)
    return header(name, "counter", text) + body


def histogram(suffix: str, text: str, buckets: Sequence[tuple[str, float]], count: float,
              total: float) -> str:
    name = f"{PREFIX}_{suffix}"
    body = "".join(f'{name}_bucket{{le="{le}"}} {number(v)}\n' for le, v in buckets)
    return (f"{header(name, 'histogram', text)}{body}{name}_bucket{{le=\"+Inf\"}} "
            f"{number(count)}\n{name}_count {number(count)}\n{name}_sum {number(total)}\n")
