"""The model lock and the stream helpers against the real Redis."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import redis

from stat_guard.result_record import ResultRecord
from tests.fleet.conftest import CONFIG
from workers.locks import ModelLock
from workers.stream import (
    StreamConsumer,
    already_published,
    publish_once,
)


def _record(run_id: str, verdict: str = "ok") -> ResultRecord:
    finished = datetime(2026, 11, 22, 10, 0, 1, tzinfo=UTC)
    return ResultRecord(run_id=run_id, model="m", source="scheduled", verdict=verdict,
                        drift_score=0.01, started_at=finished - timedelta(seconds=1),
                        finished_at=finished, duration_s=1.0)


def test_model_lock_excludes_a_second_run_and_releases_only_its_own(
        redis_db: redis.Redis) -> None:
    first = ModelLock(redis_db, "stat_guard:lock:model:m", "run-1", ttl_s=0.5)
    second = ModelLock(redis_db, "stat_guard:lock:model:m", "run-2", ttl_s=10)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder().run_id == "run-1"
    assert 0 < redis_db.pttl(first.key) <= 500
    time.sleep(0.6)  # the first run's lock expires; the second takes it over
    assert second.acquire()
    assert first.release() is False  # compare-and-delete: not ours any more
    assert redis_db.get(second.key) == second.value
    assert second.release() is True
    assert redis_db.exists(second.key) == 0


def test_publish_once_adds_one_entry_per_run_id(redis_db: redis.Redis) -> None:
    first = publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("r1"))
    again = publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("r1", "drift"))
    assert first.added and not again.added
    assert again.entry_id == first.entry_id
    assert redis_db.xlen(CONFIG.stream.name) == 1
    assert already_published(redis_db, CONFIG.redis, "r1") == first.entry_id
    assert already_published(redis_db, CONFIG.redis, "r2") is None


def test_stream_is_capped_near_maxlen(redis_db: redis.Redis) -> None:
    stream = dataclasses.replace(CONFIG.stream, maxlen=100)
    for i in range(1000):
        publish_once(redis_db, CONFIG.redis, stream, _record(f"cap-{i}"))
    # MAXLEN ~ trims whole macro nodes (100 entries each by default): close to, not at, 100
    assert 100 <= redis_db.xlen(stream.name) < 300


def test_entries_of_a_dead_consumer_are_reclaimed_after_idle(redis_db: redis.Redis) -> None:
    stream = dataclasses.replace(CONFIG.stream, claim_idle_s=0.3)
    for i in range(3):
        publish_once(redis_db, CONFIG.redis, stream, _record(f"c-{i}"))
    dead = StreamConsumer(redis_db, stream, "dead")
    alive = StreamConsumer(redis_db, stream, "alive")
    dead.ensure_group()
    assert len(dead.read_new(10)) == 3  # read, never acknowledged
    assert alive.read_new(10) == []
    assert alive.claim_stale(10) == []  # not idle long enough yet
    time.sleep(0.4)
    claimed = alive.claim_stale(10)
    assert [e.fields["run_id"] for e in claimed] == ["c-0", "c-1", "c-2"]
    assert all(e.reclaimed for e in claimed)
    assert alive.deliveries(claimed[0].entry_id) == 2
    for entry in claimed:
        alive.ack(entry.entry_id)
    assert alive.pending_count() == 0


def test_consumer_recreates_a_group_lost_with_a_redis_restart(redis_db: redis.Redis) -> None:
    consumer = StreamConsumer(redis_db, CONFIG.stream, "c")
    consumer.ensure_group()
    redis_db.delete(CONFIG.stream.name)  # what a restart without persistence leaves
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record("after-restart"))
    entries = consumer.read_new(10)
    assert [e.fields["run_id"] for e in entries] == ["after-restart"]
