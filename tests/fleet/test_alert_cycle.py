"""The alert cycle against the real Redis and a real webhook receiver: one alert when a
model enters drift, quiet repeats, a reminder after reactions.remind_after_s, one resolved
when it is ok again; failures alert the same way; older results and redeliveries change
nothing. The reactions run in this process (``drain``); docs/fleet.md, "The alert cycle"."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

import tasks.reactions as reactions
from stat_guard.result_record import FeatureFigures, ResultRecord, manual_run_id
from stat_guard.scheduled.results import unscored_record
from tests.fleet.conftest import CONFIG
from tests.fleet.support import WebhookReceiver
from workers import alert_state
from workers.stream import publish_once

REMIND_AFTER_S = 1.0
MODEL = "churn_v3"
BEGIN = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _record(hour: int, verdict: str, run_id: str | None = None,
            source: str = "scheduled") -> ResultRecord:
    """A result of MODEL finishing ``hour`` hours after BEGIN: ``amount`` has the run's
    verdict, ``tenure`` a warning, ``region`` is ok."""
    finished = BEGIN + timedelta(hours=hour)
    features = {"amount": FeatureFigures(verdict=verdict),
                "tenure": FeatureFigures(verdict="warning"),
                "region": FeatureFigures(verdict="ok")}
    return ResultRecord(run_id=run_id or f"{MODEL}@{finished:%Y%m%dT%H%M%SZ}", model=MODEL,
                        source=source, verdict=verdict, drift_score=0.4 if verdict == "drift"
                        else 0.02, features=features, started_at=finished - timedelta(
                            seconds=30), finished_at=finished, duration_s=30.0)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        _configure(monkeypatch, receiver.url, "alertmanager")
        yield receiver


def _configure(monkeypatch: pytest.MonkeyPatch, url: str, webhook_format: str,
               public_url: str = "") -> None:
    settings = dataclasses.replace(CONFIG.reactions, webhook_url=url,
                                   webhook_format=webhook_format, webhook_timeout_s=2,
                                   remind_after_s=REMIND_AFTER_S)
    monkeypatch.setattr(reactions, "config", dataclasses.replace(
        CONFIG, reactions=settings, stream=dataclasses.replace(CONFIG.stream,
                                                               claim_idle_s=0.2),
        pages=dataclasses.replace(CONFIG.pages, public_url=public_url)))


def _react(client: redis.Redis, *records: ResultRecord) -> dict[str, int]:
    for record in records:
        publish_once(client, CONFIG.redis, CONFIG.stream, record)
    return reactions.drain(client, "consumer-a").counts


def _alerts(webhook: WebhookReceiver) -> list[dict]:
    return [alert for body in webhook.bodies for alert in body]


def _moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_drift_alerts_once_stays_quiet_reminds_then_resolves(
        redis_db: redis.Redis, webhook: WebhookReceiver) -> None:
    assert _react(redis_db, _record(0, "drift")) == {"flag": 1, "alert": 1}
    (firing,) = _alerts(webhook)
    labels = {"alertname": "StatGuardDrift", "severity": "critical", "model": MODEL,
              "source": "scheduled"}
    assert firing["labels"] == labels
    assert firing["annotations"]["notification"] == "firing"
    assert firing["annotations"]["features"] == "amount"
    assert firing["annotations"]["warning_features"] == "tenure"
    assert firing["annotations"]["trigger"] == "scheduled run"
    assert firing["annotations"]["summary"].startswith(
        f"Drift in {MODEL} (scheduled run {MODEL}@20261206T080000Z): score 0.4")
    assert _moment(firing["startsAt"]) == BEGIN.timestamp()
    assert _moment(firing["endsAt"]) > time.time() + REMIND_AFTER_S  # still firing
    assert "generatorURL" not in firing and "pages_url" not in firing["annotations"]

    # Three more drift runs within remind_after_s: flagged, nothing sent.
    assert _react(redis_db, *(_record(h, "drift") for h in (1, 2, 3))) == {
        "flag": 3, "suppressed": 3}
    assert len(webhook.bodies) == 1

    time.sleep(REMIND_AFTER_S)
    assert _react(redis_db, _record(4, "drift")) == {"flag": 1, "reminder": 1}
    reminder = _alerts(webhook)[-1]
    assert reminder["labels"] == labels
    assert reminder["annotations"]["notification"] == "reminder"
    assert reminder["annotations"]["opened_by"] == f"{MODEL}@20261206T080000Z"
    assert reminder["startsAt"] == firing["startsAt"]
    assert reminder["annotations"]["summary"].startswith(f"Still drifting in {MODEL}")

    # A warning run keeps the drift alert open; only ok resolves it.
    assert _react(redis_db, _record(5, "warning")) == {"warning": 1}
    assert _react(redis_db, _record(6, "ok")) == {"resolved": 1}
    resolved = _alerts(webhook)[-1]
    assert len(webhook.bodies) == 3
    assert resolved["labels"] == labels
    assert resolved["annotations"]["notification"] == "resolved"
    assert _moment(resolved["endsAt"]) == (BEGIN + timedelta(hours=6)).timestamp()
    assert resolved["startsAt"] == firing["startsAt"]

    assert _react(redis_db, _record(7, "ok")) == {"none": 1}
    assert _react(redis_db, _record(8, "drift")) == {"flag": 1, "alert": 1}  # a new streak
    assert len(webhook.bodies) == 4
    counts = {kind: int(redis_db.get(reactions.counter_key(kind)) or 0)
              for kind in ("alert", "suppressed", "reminder", "resolved", "flag")}
    assert counts == {"alert": 2, "suppressed": 3, "reminder": 1, "resolved": 1, "flag": 6}
    ttl = redis_db.ttl(alert_state.state_key(CONFIG.redis, MODEL, "scheduled"))
    assert CONFIG.reactions.state_ttl_s - 10 < ttl <= CONFIG.reactions.state_ttl_s


def test_alerts_link_to_the_drift_pages_when_their_address_is_set(
        redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    model_page = "https://drift.example.com/models/churn%20v3%2Feu"
    with WebhookReceiver() as webhook:
        _configure(monkeypatch, webhook.url, "alertmanager",
                   public_url="https://drift.example.com/")
        drifted = dataclasses.replace(_record(0, "drift"), model="churn v3/eu",
                                      run_id="churn v3/eu@20261206T080000Z")
        assert _react(redis_db, drifted) == {"flag": 1, "alert": 1}
        assert _react(redis_db, dataclasses.replace(
            _record(1, "ok"), model="churn v3/eu", run_id="churn v3/eu@1")) == {
            "resolved": 1}
        firing, resolved = _alerts(webhook)
        assert firing["generatorURL"] == model_page
        assert firing["annotations"]["pages_url"] == model_page
        assert firing["annotations"]["run_url"] == (
            "https://drift.example.com/runs/churn%20v3%2Feu%4020261206T080000Z")
        assert resolved["generatorURL"] == model_page
        assert resolved["annotations"]["run_url"].endswith("/runs/churn%20v3%2Feu%401")
    with WebhookReceiver() as slack:
        _configure(monkeypatch, slack.url, "slack", public_url="https://drift.example.com")
        _react(redis_db, _record(5, "drift", run_id="request-9", source="ondemand"))
        (text,) = (body["text"] for body in slack.bodies)
        assert text.endswith(f"\n<https://drift.example.com/models/{MODEL}|See the drift of "
                             f"{MODEL}> · <https://drift.example.com/runs/request-9|this "
                             f"result>")


def test_runs_are_named_manual_scheduled_or_on_demand(
        redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as webhook:
        _configure(monkeypatch, webhook.url, "slack")
        manual = manual_run_id(MODEL, BEGIN + timedelta(minutes=5))
        _react(redis_db, _record(0, "drift", run_id=manual),
               _record(0, "drift", run_id="request-17", source="ondemand"))
    first, second = (body["text"] for body in webhook.bodies)
    assert first.startswith(f"Drift in {MODEL} (manual run {manual}): score 0.4")
    assert "scheduled" not in first
    assert "features amount; warning features tenure" in first
    assert first != second and "(on-demand analysis request-17)" in second


def test_a_failing_model_alerts_once_with_its_reason_then_resolves(
        redis_db: redis.Redis, webhook: WebhookReceiver) -> None:
    reason = "feature table 'features_churn' does not exist"
    failures = [unscored_record(f"{MODEL}@fail{h}", MODEL, reason,
                                BEGIN + timedelta(hours=h)) for h in (1, 2, 3)]
    assert _react(redis_db, *failures) == {"error": 3, "alert": 1, "suppressed": 2}
    (failing,) = _alerts(webhook)
    assert failing["labels"] == {"alertname": "StatGuardRunFailed", "severity": "critical",
                                 "model": MODEL, "source": "scheduled"}
    assert failing["annotations"]["reason"] == reason
    assert reason in failing["annotations"]["summary"]
    assert failing["annotations"]["run_id"] == f"{MODEL}@fail1"

    later = BEGIN + timedelta(days=1)
    assert _react(redis_db, dataclasses.replace(_record(0, "warning"), finished_at=later)) \
        == {"warning": 1, "resolved": 1}
    resolved = _alerts(webhook)[-1]
    assert resolved["labels"]["alertname"] == "StatGuardRunFailed"
    assert resolved["annotations"]["notification"] == "resolved"
    assert _moment(resolved["endsAt"]) == later.timestamp()
    assert len(webhook.bodies) == 2


def test_an_older_result_does_not_flip_the_state(
        redis_db: redis.Redis, webhook: WebhookReceiver) -> None:
    _react(redis_db, _record(2, "drift"))
    # The run of an hour earlier arrives late: neither resolved nor the newest record.
    assert _react(redis_db, _record(1, "ok")) == {"out_of_order": 1}
    assert _react(redis_db, _record(3, "drift")) == {"flag": 1, "suppressed": 1}
    assert len(webhook.bodies) == 1
    assert int(redis_db.get(reactions.counter_key("out_of_order"))) == 1
    latest = ResultRecord.from_fields(
        json.loads(redis_db.hget(reactions.latest_key("scheduled"), MODEL)))
    assert latest.finished_at == BEGIN + timedelta(hours=3)


def test_a_redelivered_result_sends_what_its_first_delivery_decided(
        redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The webhook is down at the first delivery: the decision (firing) is kept, the entry
    # stays pending, and the second delivery sends the firing alert, not a repeat.
    _configure(monkeypatch, "http://127.0.0.1:9/down", "alertmanager")
    assert _react(redis_db, _record(0, "drift")) == {"failed": 1}
    with WebhookReceiver() as webhook:
        _configure(monkeypatch, webhook.url, "alertmanager")
        time.sleep(0.3)  # past claim_idle_s: the entry is reclaimed
        assert reactions.drain(redis_db, "consumer-b").counts == {"flag": 1, "alert": 1}
        # The same result on the stream again: acknowledged only.
        redis_db.xadd(CONFIG.stream.name, _record(0, "drift").to_fields())
        assert reactions.drain(redis_db, "consumer-b").counts == {"duplicate": 1}
    (firing,) = _alerts(webhook)
    assert firing["annotations"]["notification"] == "firing"
    # Deciding again for the same run id returns the stored decision, state untouched.
    again = alert_state.decide(
        redis_db, CONFIG.redis, model=MODEL, source="scheduled", run_id=f"{MODEL}@x",
        verdict="drift", run_at=BEGIN.timestamp() + 7200, now=time.time(),
        remind_after_s=3600, state_ttl_s=60, decision_ttl_s=60)
    assert again.actions == ("suppress",)
    assert alert_state.decide(
        redis_db, CONFIG.redis, model=MODEL, source="scheduled", run_id=f"{MODEL}@x",
        verdict="ok", run_at=None, now=time.time() + 9999, remind_after_s=1,
        state_ttl_s=60, decision_ttl_s=60) == again
