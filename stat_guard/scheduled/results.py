"""What a scheduled drift run found, and its flat record for the Redis Stream."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from stat_guard.scheduled.windows import WindowBounds

RECORD_LIMIT_BYTES = 60_000  # Redis Stream entries stay small; see ModelDriftResult.to_record


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
    unseen_categories: tuple[str, ...] = ()

    def compact(self) -> dict[str, Any]:
        return {"psi": _number(self.psi), "ks_statistic": _number(self.ks_statistic),
                "ks_pvalue": _number(self.ks_pvalue), "kl": _number(self.kl),
                "js": _number(self.js), "wasserstein": _number(self.wasserstein_normalized),
                "verdict": self.verdict, "error": self.error}


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

    def to_record(self) -> dict[str, str]:
        """Flat str → str fields for a Redis Stream XADD, under about 60 kB.

        When the per-feature JSON would not fit, features judged ``ok`` keep only their
        verdict and ``features_truncated`` is "1".
        """
        features = {name: f.compact() for name, f in self.features.items()}
        encoded = _json(features)
        truncated = len(encoded) > RECORD_LIMIT_BYTES
        if truncated:
            features = {name: (value if value["verdict"] != "ok" else {"verdict": "ok"})
                        for name, value in features.items()}
            encoded = _json(features)[:RECORD_LIMIT_BYTES]
        prediction = self.model_drift.prediction
        performance = self.model_drift.performance
        model_drift = {
            "prediction": prediction.compact() if prediction else None,
            "performance": None if performance is None else {
                "metric": performance.metric, "historical": _number(performance.historical),
                "current": _number(performance.current)},
            "error": self.model_drift.error,
        }
        return {
            "run_id": self.run_id,
            "model": self.model,
            "source": "scheduled",
            "verdict": self.verdict,
            "drift_score": _text(self.drift_score),
            "features": encoded,
            "features_truncated": "1" if truncated else "0",
            "model_drift": _json(model_drift),
            "error_count": str(len(self.errors)),
            "historical_rows": str(self.historical_window.sampled_rows),
            "current_rows": str(self.current_window.sampled_rows),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_s": f"{self.duration_s:.3f}",
            "read_lock_s": f"{self.read_lock_s:.3f}",
            "write_lock_s": f"{self.write_lock_s:.3f}",
        }


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _text(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.6g}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
