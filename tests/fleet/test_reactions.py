"""The reaction policy in-process against the real Redis: failures stay pending and are
retried, then given up; payload shapes; malformed entries; run ids and slots."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

import tasks.reactions as reactions
from stat_guard.result_record import FeatureFigures, ResultRecord
from tasks.scheduled import drift_run_id, schedule_slot
from tests.fleet.conftest import CONFIG
from tests.fleet.support import WebhookReceiver, pending_count
from workers.stream import publish_once


def _record(run_id: str, verdict: str, source: str = "ondemand") -> ResultRecord:
    started = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    return ResultRecord(run_id=run_id, model="events", source=source, verdict=verdict,
                        drift_score=0.41, features={"amount": FeatureFigures(verdict="drift"),
                                                    "latency": FeatureFigures(verdict="ok")},
                        started_at=started, finished_at=started + timedelta(seconds=0.2),
                        duration_s=0.2)


@pytest.fixture
def quick_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reclaim after 0.2 s and give up after three deliveries."""
    fast = dataclasses.replace(CONFIG, stream=dataclasses.replace(
        CONFIG.stream, claim_idle_s=0.2, max_deliveries=3))
    monkeypatch.setattr(reactions, "config", fast)


def _set_webhook(monkeypatch: pytest.MonkeyPatch, url: str, webhook_format: str) -> None:
    settings = dataclasses.replace(reactions.config.reactions, webhook_url=url,
                                   webhook_format=webhook_format, webhook_timeout_s=1)
    monkeypatch.setattr(reactions, "config",
                        dataclasses.replace(reactions.config, reactions=settings))


def test_failed_alert_stays_pending_is_retried_then_given_up(
        redis_db: redis.Redis, quick_config: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_webhook(monkeypatch, "http://127.0.0.1:9/unreachable", "alertmanager")
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("dead-hook", "drift"))
    first = reactions.drain(redis_db, "consumer-a")
    assert first.counts == {"failed": 1}
    assert pending_count(redis_db) == 1
    assert redis_db.get(reactions.marker_key("dead-hook")) is None  # lease released
    for _ in range(2):
        time.sleep(0.3)
        reactions.drain(redis_db, "consumer-b")
    assert pending_count(redis_db) == 0
    assert int(redis_db.get(reactions.counter_key("failed"))) == 2
    assert int(redis_db.get(reactions.counter_key("given_up"))) == 1
    assert redis_db.get(reactions.counter_key("alert")) is None


def test_slack_payload_names_the_drifted_features(
        redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as webhook:
        _set_webhook(monkeypatch, webhook.url, "slack")
        publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("slack-1", "drift"))
        summary = reactions.drain(redis_db, "consumer-a")
    assert summary.counts == {"alert": 1}  # on-demand drift: alert, no flag by default
    (body,) = webhook.bodies
    assert set(body) == {"text"}
    assert "events" in body["text"] and "slack-1" in body["text"]
    assert "features amount" in body["text"] and "latency" not in body["text"]


def test_malformed_and_quiet_entries(redis_db: redis.Redis) -> None:
    redis_db.xadd(CONFIG.stream.name, {"model": "no run id"})
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("fine", "ok"))
    publish_once(redis_db, CONFIG.redis, CONFIG.stream,
                 _record("few", "insufficient_data"))
    summary = reactions.drain(redis_db, "consumer-a")
    assert summary.counts == {"dead_letter": 1, "none": 2}
    assert pending_count(redis_db) == 0
    latest = json.loads(redis_db.hget("stat_guard:latest:ondemand", "events"))
    assert latest["run_id"] == "few"


def test_run_ids_are_deterministic_per_model_and_slot() -> None:
    early = datetime(2026, 11, 22, 10, 0, 3, tzinfo=UTC)
    late = datetime(2026, 11, 22, 10, 59, 59, tzinfo=UTC)
    assert schedule_slot(early, 3600) == schedule_slot(late, 3600)
    assert drift_run_id("churn", schedule_slot(late, 3600)) == "churn@20261122T100000Z"
    assert schedule_slot(datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC), 3600) != \
        schedule_slot(late, 3600)
