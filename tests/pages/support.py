"""Results for the pages' tests, made the way the producers make them: display summaries
built with stat_guard.display's builders, stored with workers.displays.store_display, and
a ResultRecord naming them published with workers.stream.publish_once (real Redis)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import redis

from stat_guard.display import (
    FeatureDisplay,
    RunDisplay,
    binned_cdf,
    categorical_display,
    numeric_display,
)
from stat_guard.result_record import FeatureFigures, ResultRecord
from workers.config import FleetConfig
from workers.displays import store_display
from workers.stream import publish_once

BEGIN = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _normal_counts(mean: float, sd: float, points: Sequence[float]) -> list[float]:
    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - mean) / (sd * math.sqrt(2))))
    return [max(cdf(b) - cdf(a), 0.0) * 10_000 for a, b in itertools.pairwise(points)]


def numeric(name: str, verdict: str, psi: float | None, shift: float = 0.0, ks: float = 0.05,
            missing: tuple[float, float] = (0.0, 0.0), reasons: tuple[str, ...] = ()
            ) -> FeatureDisplay:
    """A normal(50, 10) baseline against normal(50 + shift, 10) now."""
    points = [float(x) for x in range(0, 121)]
    base_cdf, base_q = binned_cdf(points, _normal_counts(50, 10, points))
    cur_cdf, cur_q = binned_cdf(points, _normal_counts(50 + shift, 10, points))
    return numeric_display(
        name, base_cdf, cur_cdf, base_q, cur_q, verdict=verdict, reasons=reasons,
        statistics={} if psi is None else {
            "psi": psi, "ks_statistic": ks, "ks_pvalue": 1e-6 if verdict == "drift" else 0.4,
            "js": psi / 3, "kl": psi / 2, "wasserstein": abs(shift) / 10},
        n_baseline=10_000, n_current=10_000, missing_baseline=missing[0],
        missing_current=missing[1])


def categorical(name: str, verdict: str, psi: float, baseline: Mapping[str, float],
                current: Mapping[str, float]) -> FeatureDisplay:
    return categorical_display(
        name, baseline, current, verdict=verdict,
        statistics={"psi": psi, "js": psi / 3, "chi2": 120.0 * psi, "chi2_pvalue": 0.001},
        n_baseline=int(sum(baseline.values())), n_current=int(sum(current.values())),
        missing_baseline=0.0, missing_current=0.0)


def figures(feature: FeatureDisplay) -> FeatureFigures:
    s = feature.statistics
    return FeatureFigures(verdict=feature.verdict, psi=s.get("psi"),
                          ks_statistic=s.get("ks_statistic"), ks_pvalue=s.get("ks_pvalue"),
                          kl=s.get("kl"), js=s.get("js"), wasserstein=s.get("wasserstein"),
                          missing_rate_baseline=feature.missing_baseline,
                          missing_rate_current=feature.missing_current)


def publish(client: redis.Redis, config: FleetConfig, model: str,
            features: Sequence[FeatureDisplay], *, hour: float = 0, source: str = "scheduled",
            run_id: str | None = None, store: bool = True, ttl_s: int = 3600) -> ResultRecord:
    """Store the run's summaries (unless ``store`` is False) and publish its record."""
    finished = BEGIN + timedelta(hours=hour)
    run_id = run_id or f"{model}@{finished:%Y%m%dT%H%M%SZ}"
    rank = ("drift", "warning", "error", "insufficient_data", "ok")
    verdict = min((f.verdict for f in features), key=rank.index, default="ok")
    scores = [f.statistics.get("psi") for f in features if f.statistics.get("psi") is not None]
    score = max(scores) if scores else None
    display = RunDisplay(run_id=run_id, model=model, source=source, verdict=verdict,
                         drift_score=score, finished_at=finished.isoformat(),
                         features=tuple(features),
                         trigger="ondemand" if source == "ondemand" else "scheduled")
    key = store_display(client, config.redis, display, ttl_s) if store else \
        config.redis.key("display", run_id)
    record = ResultRecord(run_id=run_id, model=model, source=source, verdict=verdict,
                          drift_score=score, features={f.name: figures(f) for f in features},
                          started_at=finished - timedelta(seconds=20), finished_at=finished,
                          duration_s=20.0, display_key=key)
    publish_once(client, config.redis, config.stream, record)
    return record


PLANS = {"basic": 0.25, "pro": 0.5, "team": 0.25}


def churn_features() -> list[FeatureDisplay]:
    """A model with one drifted numeric feature, one drifted categorical feature with a new
    category (named like an XSS attempt), a warning and two quiet features."""
    return [
        numeric("tenure", "ok", 0.01, shift=0.3),
        numeric("monthly_charges", "drift", 0.61, shift=12,  ks=0.42,
                reasons=("PSI 0.61 >= 0.25", "KS 0.42 >= 0.1 (p 1e-06)")),
        numeric("support_calls", "warning", 0.14, shift=4, missing=(0.01, 0.07),
                reasons=("PSI 0.14 >= 0.1",)),
        categorical("plan", "drift", 0.9, {k: v * 1000 for k, v in PLANS.items()},
                    {"basic": 100, "pro": 300, "team": 200, "<script>alert(1)</script>": 400}),
        numeric("age", "ok", 0.004),
    ]
