"""Stream records as the fleet writes them (the fleet's ResultRecord, published with its own
helper), and a scrape parsed into {(sample name, labels): value}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from stat_guard.result_record import FeatureFigures, ResultRecord
from tests.observability.conftest import CONFIG, http_get
from workers.stream import publish_once

FINISHED = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def feature(psi: float, ks_statistic: float, ks_pvalue: float, kl: float, js: float,
            wasserstein: float, verdict: str, error: str | None = None) -> FeatureFigures:
    return FeatureFigures(verdict=verdict, psi=psi, ks_statistic=ks_statistic,
                          ks_pvalue=ks_pvalue, kl=kl, js=js, wasserstein=wasserstein,
                          error=error)


def record(run_id: str, model: str, source: str, verdict: str, drift_score: str,
           features: dict[str, FeatureFigures | dict[str, Any]],
           finished_at: datetime = FINISHED, duration_s: float = 12.5) -> ResultRecord:
    started_at = finished_at - timedelta(seconds=duration_s)
    figures = {name: value if isinstance(value, FeatureFigures)
               else FeatureFigures.from_json(value) for name, value in features.items()}
    return ResultRecord(run_id=run_id, model=model, source=source, verdict=verdict,
                        drift_score=float(drift_score), features=figures,
                        started_at=started_at, finished_at=finished_at, duration_s=duration_s)


def publish(client: redis.Redis, entry: ResultRecord) -> str:
    return publish_once(client, CONFIG.redis, CONFIG.stream, entry).entry_id


def scrape(url: str) -> Samples:
    status, body = http_get(url, timeout=15)
    assert status == 200, body[:500]
    return parse(body.decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have " + ", ".join(
        sorted(f"{n}{dict(sorted(lbl))}" for n, lbl in samples if n == name))
    return samples[key]


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in samples if n == name]


def sample_names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}
