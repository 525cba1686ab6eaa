"""Faults the fleet must survive: a worker killed mid-run, a reaction consumer killed with
entries pending, a DuckDB file held by another process, a Redis restart mid-run."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery

from stat_guard.result_record import FeatureFigures, ResultRecord
from tasks.reactions import counter_key, marker_key
from tests.fleet.conftest import CONFIG, Fleet, redis_for
from tests.fleet.support import (
    WebhookReceiver,
    demo_database,
    file_held_by_another_process,
    pending_count,
    query,
    records_by_run,
)
from tests.local import free_port, wait_for
from workers.celery_app import app, celery_settings
from workers.routing import CONSUME_REACTIONS, RUN_MODEL_DRIFT
from workers.stream import publish_once


def _drift_rows(db_path: Path, run_id: str) -> list[tuple[str, int]]:
    return query(db_path, "SELECT feature, count(*) FROM drift_runs WHERE run_id = ? "
                          "GROUP BY feature ORDER BY feature", [run_id])


def test_drift_worker_killed_mid_run_is_redelivered_without_duplicates(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    demo = demo_database(db_path)
    model = demo.production_models[0]
    run_id = f"{model}@kill-test"
    # The run pauses 4 s after taking the model's lock: time to kill it mid-run.
    fleet.env["STAT_GUARD_TESTING_DRIFT_DELAY_S"] = "4"
    doomed = fleet.worker("drift")
    result = app.send_task(RUN_MODEL_DRIFT, args=(model, run_id))
    lock_key = f"stat_guard:lock:model:{model}"
    wait_for(lambda: redis_db.exists(lock_key), timeout=20, what="the run to take its lock")
    killed_at = time.monotonic()
    doomed.kill(signal.SIGKILL)  # the worker and its pool process, no goodbye
    doomed.process.wait(timeout=10)
    assert _drift_rows(db_path, run_id) == []
    assert records_by_run(redis_db) == {}
    # The message is still unacknowledged in Redis; a new worker restores it after the
    # visibility timeout (20 s here) and runs it to the end.
    fleet.worker("drift")
    outcome = result.get(timeout=60)
    redelivered_after = time.monotonic() - killed_at
    assert outcome["status"] == "published"
    assert redelivered_after >= CONFIG.limits.visibility_timeout_s - 1
    records = records_by_run(redis_db)
    assert list(records) == [run_id] and len(records[run_id]) == 1
    rows = _drift_rows(db_path, run_id)
    features = json.loads(records[run_id][0]["features"])
    assert {feature for feature, _ in rows} >= set(features)
    assert all(count == 1 for _, count in rows)
    # A second delivery of the same run (a duplicate beat) neither computes nor publishes.
    again = app.send_task(RUN_MODEL_DRIFT, args=(model, run_id)).get(timeout=30)
    assert again["status"] == "already_published"
    assert len(records_by_run(redis_db)[run_id]) == 1


def _record(run_id: str, verdict: str) -> ResultRecord:
    started = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    return ResultRecord(run_id=run_id, model=f"model-{run_id}", source="scheduled",
                        verdict=verdict, drift_score=0.5,
                        features={"x": FeatureFigures(verdict=verdict)}, started_at=started,
                        finished_at=started + timedelta(seconds=1), duration_s=1.0)


def test_killed_reaction_consumer_entries_are_reclaimed_and_acted_on_once(
        fleet: Fleet, redis_db: redis.Redis) -> None:
    verdicts = {f"r{i}": v for i, v in enumerate(["drift", "warning", "ok", "drift",
                                                  "warning", "ok", "drift", "drift"])}
    for run_id, verdict in verdicts.items():
        publish_once(redis_db, CONFIG.redis, CONFIG.stream, _record(run_id, verdict))
    with WebhookReceiver() as webhook:
        fleet.env["STAT_GUARD_REACTIONS_WEBHOOK_URL"] = webhook.url
        # This consumer reads all eight entries, then takes 3 s over each: kill it early.
        slow = fleet.worker("reactions", env={"STAT_GUARD_TESTING_REACTION_DELAY_S": "3"})
        app.send_task(CONSUME_REACTIONS)
        wait_for(lambda: pending_count(redis_db) == len(verdicts), timeout=20,
                 what="the consumer to read")
        time.sleep(0.5)
        slow.kill(signal.SIGKILL)
        slow.process.wait(timeout=10)
        assert pending_count(redis_db) == 8
        assert webhook.bodies == []

        fleet.worker("reactions")
        # A fresh consumer reclaims them once they were idle claim_idle_s (2 s).
        deadline = time.monotonic() + 40
        while pending_count(redis_db):
            assert time.monotonic() < deadline, "pending entries were never reclaimed"
            app.send_task(CONSUME_REACTIONS).get(timeout=20)
            time.sleep(0.5)
        # Duplicate deliveries of the same results change nothing.
        for run_id, verdict in verdicts.items():
            redis_db.xadd(CONFIG.stream.name, _record(run_id, verdict).to_fields())
        app.send_task(CONSUME_REACTIONS).get(timeout=20)

        drift = sorted(r for r, v in verdicts.items() if v == "drift")
        assert sorted(webhook.alerted_run_ids()) == drift
        assert all(redis_db.get(marker_key(r)) == "done" for r in verdicts)
        counts = {kind: int(redis_db.get(counter_key(kind)) or 0)
                  for kind in ("alert", "flag", "warning", "none", "duplicate")}
        assert counts == {"alert": 4, "flag": 4, "warning": 2, "none": 2, "duplicate": 8}
        assert redis_db.llen("stat_guard:warnings") == 2
        assert pending_count(redis_db) == 0


def test_locked_duckdb_file_makes_the_run_wait_and_retry(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    demo = demo_database(db_path)
    model = demo.production_models[1]
    run_id = f"{model}@busy-test"
    worker = fleet.worker("drift")
    with file_held_by_another_process(db_path, seconds=5) as released_at:
        result = app.send_task(RUN_MODEL_DRIFT, args=(model, run_id))
        outcome = result.get(timeout=60)
    finished = time.monotonic()
    assert outcome["status"] == "published"
    assert finished >= released_at
    assert worker.log().count("DuckDB busy, retrying") >= 2
    assert len(records_by_run(redis_db)[run_id]) == 1
    assert all(count == 1 for _, count in _drift_rows(db_path, run_id))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, callable]]:
    """A redis-server of this test's own on a free port; yields (port, restart)."""
    port = free_port()
    argv = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
            "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path)]
    state: dict[str, subprocess.Popen] = {}

    def start() -> None:
        state["server"] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        wait_for(lambda: _pings(port), timeout=10, what="redis-server to start")

    def restart(down_s: float = 2.0) -> None:
        state["server"].kill()
        state["server"].wait(timeout=10)
        time.sleep(down_s)
        start()

    start()
    try:
        yield port, restart
    finally:
        state["server"].kill()
        state["server"].wait(timeout=10)


def _pings(port: int) -> bool:
    try:
        return bool(redis_for(port, 0).ping())
    except redis.ConnectionError:
        return False


def test_redis_restart_mid_run_the_fleet_reconnects_and_completes(
        fleet: Fleet, tmp_path: Path, own_redis: tuple[int, callable]) -> None:
    port, restart = own_redis
    client = redis_for(port, 0)
    db_path = tmp_path / "fleet.duckdb"
    demo = demo_database(db_path)
    fleet.env.update({"STAT_GUARD_REDIS_PORT": str(port), "STAT_GUARD_REDIS_DB": "0",
                      "STAT_GUARD_TESTING_DRIFT_DELAY_S": "5"})
    redis_config = dataclasses.replace(CONFIG.redis, port=port, db=0)
    own_app = Celery("stat_guard_restart_test")
    own_app.conf.update(celery_settings(dataclasses.replace(CONFIG, redis=redis_config)))
    drift_worker = fleet.worker("drift")
    reactions_worker = fleet.worker("reactions")
    first, second = demo.production_models[:2]
    own_app.send_task(RUN_MODEL_DRIFT, args=(first, f"{first}@restart-test"))
    wait_for(lambda: client.exists(f"stat_guard:lock:model:{first}"), timeout=20,
             what="the run to start")
    restart(down_s=2.0)  # everything in Redis is gone: queues, lock, stream
    # The running task finishes and publishes to the new, empty Redis.
    wait_for(lambda: client.exists(CONFIG.stream.name), timeout=40,
             what="the interrupted run's record")
    assert [r["run_id"] for r in (f for _, f in client.xrange(CONFIG.stream.name))] == [
        f"{first}@restart-test"]
    # The workers reconnected: a new run and a reaction go through.
    result = own_app.send_task(RUN_MODEL_DRIFT, args=(second, f"{second}@after-restart"))
    assert result.get(timeout=60)["status"] == "published"
    reaction = own_app.send_task(CONSUME_REACTIONS).get(timeout=30)
    assert reaction["read"] == 2
    assert client.get(f"stat_guard:reacted:{first}@restart-test") == "done"
    assert pending_count(client) == 0
    assert drift_worker.process.poll() is None and reactions_worker.process.poll() is None
    own_app.close()
