"""Poison entries on the result stream: an entry that is not UTF-8, has no run id or
verdict, or an unknown verdict is parked in the dead-letter stream, acknowledged and
counted; it never blocks its neighbours, a reclaim or a scrape."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

import tasks.reactions as reactions
from stat_guard.result_record import FeatureFigures, ResultRecord
from tests.fleet.conftest import CONFIG
from tests.fleet.support import pending_count
from tests.servers import private_redis_port
from workers.exporter import ResultsCollector, scrape_client
from workers.stream import (
    DEAD_FIELD_BYTES,
    LOG_PREVIEW_CHARS,
    StreamConsumer,
    dead_letter_name,
    preview,
    publish_once,
)

POISON = {b"run_id": b"x", b"verdict": b"ok", b"features": b"\xff"}


def _record(run_id: str, verdict: str) -> ResultRecord:
    started = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    return ResultRecord(run_id=run_id, model="events", source="scheduled", verdict=verdict,
                        drift_score=0.41, features={"amount": FeatureFigures(verdict=verdict)},
                        started_at=started, finished_at=started + timedelta(seconds=1),
                        duration_s=1.0)


def _raw() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=private_redis_port(), db=CONFIG.redis.db)


def _dead(client: redis.Redis) -> list[dict[str, str]]:
    raw = _raw()
    try:
        entries = raw.xrange(dead_letter_name(CONFIG.stream))
    finally:
        raw.close()
    return [{k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            for _id, fields in entries]


def test_undecodable_entry_is_parked_and_its_neighbours_react(redis_db: redis.Redis) -> None:
    raw = _raw()
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("before", "warning"))
    poison_id = raw.xadd(CONFIG.stream.name, POISON).decode()
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("after", "ok"))
    raw.close()

    summary = reactions.drain(redis_db, "consumer-a")

    assert summary.counts == {"warning": 1, "dead_letter": 1, "none": 1}
    assert pending_count(redis_db) == 0
    assert int(redis_db.get(reactions.counter_key("dead_letter"))) == 1
    (dead,) = _dead(redis_db)
    assert dead["original_id"] == poison_id
    assert "not UTF-8" in dead["reason"] and "features" in dead["reason"]
    assert dead["field:run_id"] == "x"


def test_poison_left_pending_by_a_dead_consumer_is_reclaimed_and_parked(
        redis_db: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reactions, "config", dataclasses.replace(
        CONFIG, stream=dataclasses.replace(CONFIG.stream, claim_idle_s=0.2)))
    raw = _raw()
    StreamConsumer(redis_db, CONFIG.stream, "dead-one").ensure_group()
    raw.xadd(CONFIG.stream.name, POISON)
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("drifted", "warning"))
    # A consumer read both and died before acknowledging.
    raw.xreadgroup(CONFIG.stream.group, "dead-one", {CONFIG.stream.name: ">"}, count=10)
    raw.close()
    assert pending_count(redis_db) == 2
    time.sleep(0.3)

    summary = reactions.drain(redis_db, "consumer-b")

    assert summary.reclaimed == 2
    assert summary.counts == {"dead_letter": 1, "warning": 1}
    assert pending_count(redis_db) == 0


@pytest.mark.parametrize(("fields", "reason"), [
    ({"model": "m", "verdict": "ok"}, "no run id"),
    ({"run_id": "r1", "model": "m"}, "no verdict"),
    ({"run_id": "r2", "model": "m", "source": "scheduled", "verdict": "DRIFT"},
     "unknown verdict 'DRIFT'"),
])
def test_missing_fields_and_unknown_verdicts_are_parked(
        redis_db: redis.Redis, fields: dict[str, str], reason: str) -> None:
    redis_db.xadd(CONFIG.stream.name, fields)
    summary = reactions.drain(redis_db, "consumer-a")
    assert summary.counts == {"dead_letter": 1}
    assert pending_count(redis_db) == 0
    (dead,) = _dead(redis_db)
    assert dead["reason"] == reason
    assert redis_db.get(reactions.counter_key("alert")) is None


def test_oversized_entry_is_parked_with_its_fields_cut(redis_db: redis.Redis) -> None:
    redis_db.xadd(CONFIG.stream.name, {"run_id": "big", "model": "m", "source": "scheduled",
                                       "verdict": "ok", "features": "x" * 300_000})
    summary = reactions.drain(redis_db, "consumer-a")
    assert summary.counts == {"dead_letter": 1}
    (dead,) = _dead(redis_db)
    assert "exceeds the bound" in dead["reason"]
    assert len(dead["field:features"]) == DEAD_FIELD_BYTES
    assert redis_db.hlen("stat_guard:latest:scheduled") == 0


def test_producer_refuses_an_unknown_verdict(redis_db: redis.Redis) -> None:
    with pytest.raises(ValueError, match="unknown verdict 'DRIFT'"):
        publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("upper", "DRIFT"))
    assert redis_db.xlen(CONFIG.stream.name) == 0


def test_scrape_answers_with_a_poison_entry_on_the_stream(redis_db: redis.Redis) -> None:
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("fine", "warning"))
    raw = _raw()
    raw.xadd(CONFIG.stream.name, POISON)
    raw.xadd(CONFIG.stream.name, {b"run_id": b"y", b"model": b"\xfe", b"verdict": b"ok",
                                  b"source": b"ondemand"})
    raw.close()
    reactions.drain(redis_db, "consumer-a")
    client = scrape_client(CONFIG)
    try:
        text = ResultsCollector(CONFIG, client=client).response().body.decode()
    finally:
        client.close()
    assert "stat_guard_exporter_redis_up 1.0" in text
    assert 'stat_guard_model_verdict{model="events",source="scheduled",verdict="warning"} 1.0' \
        in text
    assert "stat_guard_reactions_dead_letter_total 2.0" in text
    assert "stat_guard_results_dead_letter_entries 2.0" in text


def test_log_preview_is_bounded() -> None:
    text = preview({b"features": b"\xff" * 100_000, "run_id": "r"})
    assert len(text) < LOG_PREVIEW_CHARS + 100
    assert "more characters" in text


def test_entry_whose_kept_json_would_exceed_the_bound_is_parked(redis_db: redis.Redis) -> None:
    # 60 kB of control characters: small on the stream, six times that as JSON.
    redis_db.xadd(CONFIG.stream.name, {"run_id": "escaped", "model": "m",
                                       "source": "scheduled", "verdict": "warning",
                                       "features": "\x01" * 60_000})
    summary = reactions.drain(redis_db, "consumer-a")
    assert summary.counts == {"dead_letter": 1}
    (dead,) = _dead(redis_db)
    assert "as JSON exceeds the bound" in dead["reason"]
    assert redis_db.llen("stat_guard:warnings") == 0


def test_long_run_id_is_parked(redis_db: redis.Redis) -> None:
    redis_db.xadd(CONFIG.stream.name, {"run_id": "r" * 600, "model": "m",
                                       "source": "scheduled", "verdict": "ok"})
    assert reactions.drain(redis_db, "consumer-a").counts == {"dead_letter": 1}
    (dead,) = _dead(redis_db)
    assert "longer than 512" in dead["reason"]
