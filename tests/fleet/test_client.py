"""The local-system client: the 3σ signal enqueues analyses, a cool-down bounds them."""

from __future__ import annotations

import random
import time
from typing import Any

import redis

from tests.fleet.conftest import CONFIG
from workers.client import DriftSignalClient, cooldown_key
from workers.redis_client import redis_client


def _client(enqueued: list[dict[str, Any]], **kwargs: Any) -> DriftSignalClient:
    return DriftSignalClient(source="public.events", time_column="created_at",
                             value_columns=["amount"], cooldown_s=1.5,
                             client=redis_client(CONFIG.redis), enqueue=enqueued.append,
                             **kwargs)


def test_burst_of_outliers_enqueues_once_per_cooldown(redis_db: redis.Redis) -> None:
    rng = random.Random(3)
    enqueued: list[dict[str, Any]] = []
    client = _client(enqueued)
    assert client.observe_many(rng.gauss(100, 5) for _ in range(500)) <= 1
    enqueued.clear()
    redis_db.delete(cooldown_key(CONFIG, "public.events"))
    client._quiet_until = 0.0
    started = time.monotonic()
    fired_before = client.signal.fired
    burst = client.observe_many([400.0] * 200)
    fired = client.signal.fired - fired_before
    assert burst == 1
    assert fired > 20  # the signal fired many times (until the burst became the normal) ...
    assert client.suppressed == fired - 1  # ... and only the first firing was sent
    assert enqueued == [{"window": "15 minutes", "model": None, "source": "public.events",
                         "time_column": "created_at", "value_columns": ["amount"]}]
    assert 0 < redis_db.pttl(cooldown_key(CONFIG, "public.events")) <= 1500
    # a second process watching the same source shares the cool-down
    other: list[dict[str, Any]] = []
    second = _client(other)
    second.signal.warmup = 2
    for value in (100.0, 101.0, 99.0):
        second.signal.update(value)
    assert second.observe(900.0) is False
    assert (second.signal.fired, second.suppressed, other) == (1, 1, [])
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    assert client.observe(2000.0) is True
    assert len(enqueued) == 2


def test_values_inside_three_sigma_never_enqueue(redis_db: redis.Redis) -> None:
    enqueued: list[dict[str, Any]] = []
    client = _client(enqueued)
    values = [100.0 + (i % 7) for i in range(1000)] + [None, float("nan")]
    assert client.observe_many(values) == 0
    assert enqueued == []
    assert client.signal.ignored == 2
