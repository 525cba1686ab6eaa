"""What a scheduled drift run found, and its record for the Redis Stream."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from stat_guard.display import (
    CATEGORICAL,
    NUMERIC,
    PREDICTION_NAME,
    VERDICTS,
    FeatureDisplay,
    RunDisplay,
    missing_share,
)
from stat_guard.result_record import (
    ERROR_LIMIT_CHARS,
    SCHEDULED,
    FeatureFigures,
    ResultRecord,
    ScheduledDetails,
    figure,
    run_trigger,
)
from stat_guard.scheduled.windows import WindowBounds
from stat_guard.verdict import ERROR as ERROR_VERDICT


@dataclass(frozen=True)
class FeatureDrift:
    """Every statistic of one feature (or of the predictions) between the two windows.

    ``error`` is set when the feature could not be scored (verdict ``error``) or had too
    little usable data (verdict ``insufficient_data``); ``notes`` record values left out.
    """

    name: str
    kind: str  # numeric, categorical
    verdict: str  # ok, warning, drift, insufficient_data, error
    reasons: tuple[str, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()
    n_historical: int = 0  # finite numbers (non-NULL categories) compared
    n_current: int = 0
    missing_historical: int = 0  # NULL, NaN and ±Inf values left out
    missing_current: int = 0
    psi: float = math.nan
    psi_critical: float = math.nan
    psi_pvalue: float = math.nan  # chi-square test of the PSI bins (or categories)
    psi_bin_edges: tuple[float, ...] = ()
    kl: float = math.nan
    js: float = math.nan
    wasserstein: float = math.nan
    wasserstein_normalized: float = math.nan
    wasserstein_scale: str = "none"
    ks_statistic: float = math.nan
    ks_pvalue: float = math.nan
    ks_error_bound: float = math.nan  # exact KS lies in [ks_statistic, + ks_error_bound]
    pvalue_adjusted: float = math.nan  # BH across the model's features (KS or chi-square)
    chi2: float = math.nan
    chi2_pvalue: float = math.nan
    unseen_categories: tuple[str, ...] = ()  # the most frequent of them, at most 20
    unseen_share: float = math.nan  # current share in categories the historical lacks
    distinct_categories: int = 0  # both windows together; above max_categories, pooled
    # The display summary's bins or categories, from the aggregates (scoring.display_shape);
    # display_summary() adds the verdict and figures.
    display_shape: FeatureDisplay | None = field(default=None, compare=False, repr=False)

    def display_summary(self, name: str | None = None) -> FeatureDisplay:
        """The feature's display summary (stat_guard.display): its bins or categories, the
        verdict, reasons, statistics, counts and missing shares."""
        kind = CATEGORICAL if self.kind == CATEGORICAL else NUMERIC
        shape = self.display_shape or FeatureDisplay(name=self.name, kind=kind, verdict="ok")
        return dataclasses.replace(
            shape, name=name or self.name,
            verdict=self.verdict if self.verdict in VERDICTS else "error",
            reasons=tuple(self.reasons), error=self.error,
            statistics={"psi": self.psi, "ks_statistic": self.ks_statistic,
                        "ks_pvalue": self.ks_pvalue, "kl": self.kl, "js": self.js,
                        "wasserstein": self.wasserstein_normalized, "chi2": self.chi2,
                        "chi2_pvalue": self.chi2_pvalue},
            n_baseline=self.n_historical, n_current=self.n_current,
            missing_baseline=missing_share(self.missing_historical, self.n_historical),
            missing_current=missing_share(self.missing_current, self.n_current))

    def figures(self) -> FeatureFigures:
        """The figures the stream record carries."""
        return FeatureFigures(verdict=self.verdict, psi=self.psi,
                              ks_statistic=self.ks_statistic, ks_pvalue=self.ks_pvalue,
                              kl=self.kl, js=self.js, wasserstein=self.wasserstein_normalized,
                              missing_rate_baseline=_share(self.missing_historical,
                                                           self.n_historical),
                              missing_rate_current=_share(self.missing_current,
                                                          self.n_current),
                              error=self.error)


@dataclass(frozen=True)
class Performance:
    """Model quality per window where labels exist: accuracy (class predictions) or MAE."""

    metric: str
    historical: float
    current: float
    labeled_historical: int
    labeled_current: int


@dataclass(frozen=True)
class ModelDrift:
    """Drift of the model's outputs, from ``model_events``."""

    prediction: FeatureDrift | None
    performance: Performance | None
    historical_window: WindowBounds | None
    current_window: WindowBounds | None
    error: str | None = None


@dataclass(frozen=True)
class ModelDriftResult:
    """Everything one run found for one model.

    ``drift_score`` is the largest PSI among the model's features and its predictions;
    ``verdict`` the worst of their verdicts (``error`` when nothing could be scored).
    """

    run_id: str
    model: str
    verdict: str
    drift_score: float
    features: dict[str, FeatureDrift]
    model_drift: ModelDrift
    historical_window: WindowBounds
    current_window: WindowBounds
    errors: dict[str, str]
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_s: float
    read_lock_s: float  # the read phase held the DuckDB file this long
    write_lock_s: float  # the write phase held it this long
    lock_wait_s: float = 0.0  # time spent waiting for the file, both phases
    bytes_fetched: int = 0  # size of every result set DuckDB returned
    ks_error_bound: float = math.nan  # largest binned-KS error bound of the run
    settings: dict[str, Any] = field(default_factory=dict)

    def run_display(self) -> RunDisplay:
        """The run's display summaries (stat_guard.display): one per feature, and the
        predictions' under ``PREDICTION_NAME`` (like their drift_runs row,
        schema.PREDICTION_ROW: a name no feature can take) when the run scored them. The
        publisher stores them in Redis (workers.displays) and names the key in the record."""
        features = [f.display_summary() for f in self.features.values()]
        if self.model_drift.prediction is not None:
            features.append(self.model_drift.prediction.display_summary(PREDICTION_NAME))
        return RunDisplay(run_id=self.run_id, model=self.model, source=SCHEDULED,
                          trigger=run_trigger(self.run_id),
                          verdict=self.verdict if self.verdict in VERDICTS else "error",
                          drift_score=self.drift_score,
                          finished_at=self.finished_at.astimezone(dt.UTC).isoformat(),
                          features=tuple(features))

    def stream_record(self) -> ResultRecord:
        """The run's record for the Redis Stream."""
        prediction = self.model_drift.prediction
        performance = self.model_drift.performance
        model_drift = {
            "prediction": prediction.figures().to_json() if prediction else None,
            "performance": None if performance is None else {
                "metric": performance.metric, "historical": figure(performance.historical),
                "current": figure(performance.current)},
            "error": self.model_drift.error,
        }
        error = ""
        if self.verdict == ERROR_VERDICT:  # nothing scored: say why, once per distinct reason
            error = "; ".join(dict.fromkeys(self.errors.values()))[:ERROR_LIMIT_CHARS]
        return ResultRecord(
            run_id=self.run_id, model=self.model, source=SCHEDULED, verdict=self.verdict,
            drift_score=self.drift_score, error=error,
            features={name: f.figures() for name, f in self.features.items()},
            started_at=self.started_at, finished_at=self.finished_at,
            duration_s=self.duration_s,
            details=ScheduledDetails(
                model_drift=model_drift, error_count=len(self.errors),
                historical_rows=self.historical_window.sampled_rows,
                current_rows=self.current_window.sampled_rows,
                read_lock_s=self.read_lock_s, write_lock_s=self.write_lock_s))


def unscored_record(run_id: str, model: str, reason: str, started_at: dt.datetime,
                    finished_at: dt.datetime | None = None) -> ResultRecord:
    """The stream record of a run that failed before the engine could judge anything (no
    DuckDB file, DuckDB busy through every retry, an unexpected exception): verdict
    ``error``, no features, ``error`` the reason (cut to ``ERROR_LIMIT_CHARS``)."""
    finished_at = finished_at or dt.datetime.now(dt.UTC)
    reason = reason[:ERROR_LIMIT_CHARS]
    return ResultRecord(
        run_id=run_id, model=model, source=SCHEDULED, verdict=ERROR_VERDICT,
        drift_score=None, error=reason, started_at=started_at, finished_at=finished_at,
        duration_s=(finished_at - started_at).total_seconds(),
        details=ScheduledDetails(model_drift={"prediction": None, "performance": None,
                                              "error": reason},
                                 error_count=1, historical_rows=0, current_rows=0,
                                 read_lock_s=0.0, write_lock_s=0.0))


def _share(missing: int, present: int) -> float | None:
    """The missing share of a window, None for an empty one."""
    total = missing + present
    return missing / total if total else None
