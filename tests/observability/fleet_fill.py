"""A fleet's worth of results in Redis, written as the fleet writes them: each model's
scheduled run published to the stream (``workers.stream.publish_once``) and its fields
stored by the reaction task in ``stat_guard:latest:scheduled`` (``tasks.reactions.react``).
Used by the exporter's scale test and bench/bench_exporter.py; imports no test fixture."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import redis

from stat_guard.result_record import SCHEDULED, FeatureFigures, ResultRecord
from workers.config import FleetConfig
from workers.reaction_keys import latest_key
from workers.stream import publish_once

FINISHED = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def fleet_record(model: int, features: int, run: int = 0, seed: int = 0) -> ResultRecord:
    """One scheduled run of ``model_<model>`` over ``features`` numeric features with every
    figure set; about 1 feature in 10 warning and 1 in 20 drift."""
    rng = random.Random(f"{seed}:{model}:{run}")
    figures: dict[str, FeatureFigures] = {}
    for index in range(features):
        draw = rng.random()
        verdict = "drift" if draw < 0.05 else "warning" if draw < 0.15 else "ok"
        psi = rng.uniform(0.3, 1.5) if verdict == "drift" else rng.uniform(0.0, 0.2)
        baseline_missing = rng.choice((0.0, 0.0, rng.uniform(0, 0.05)))
        figures[f"feature_{index:02d}"] = FeatureFigures(
            verdict=verdict, psi=psi, ks_statistic=rng.uniform(0, 0.5),
            ks_pvalue=rng.uniform(0, 1), kl=rng.uniform(0, 1), js=rng.uniform(0, 0.6),
            wasserstein=rng.uniform(0, 2), missing_rate_baseline=baseline_missing,
            missing_rate_current=baseline_missing + rng.choice((0.0, rng.uniform(0, 0.3))))
    verdicts = [f.verdict for f in figures.values()]
    verdict = "drift" if "drift" in verdicts else "warning" if "warning" in verdicts else "ok"
    finished = FINISHED + timedelta(hours=run, seconds=model)
    return ResultRecord(run_id=f"model_{model:04d}@{run}", model=f"model_{model:04d}",
                        source=SCHEDULED, verdict=verdict,
                        drift_score=max((f.psi or 0.0) for f in figures.values()),
                        features=figures, started_at=finished - timedelta(seconds=42.5),
                        finished_at=finished, duration_s=42.5)


def fill_fleet(client: redis.Redis, config: FleetConfig, models: int, features: int,
               run: int = 0, seed: int = 0) -> None:
    """Publish one scheduled run per model, and store it as the reaction task does."""
    for model in range(models):
        record = fleet_record(model, features, run, seed)
        entry_id = publish_once(client, config.redis, config.stream, record).entry_id
        fields = client.xrange(config.stream.name, min=entry_id, max=entry_id)[0][1]
        client.hset(latest_key(config.redis, SCHEDULED), record.model,
                    json.dumps(dict(fields), sort_keys=True))
