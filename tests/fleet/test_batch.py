"""The models of one feature table run as one batch task: beat's enqueue sends one task
for them, each model's result reaches the stream with its display summaries, every lock
is released; a model locked by another run is sent on alone and runs once the lock is
free; a batch that fails for good publishes an error record for each of its runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import redis

from stat_guard.result_record import ResultRecord
from stat_guard.scheduled.engine import ensure_schema
from stat_guard.scheduled.models import ModelRegistration, add_model
from tests.fleet.conftest import CONFIG, Fleet
from tests.fleet.support import records_by_run
from tests.local import wait_for
from workers.celery_app import app
from workers.displays import display_key, load_display
from workers.routing import RUN_DRIFT_BATCH, SCHEDULE_DRIFT_RUNS

MODELS = ("alpha", "beta", "gamma")


def _shared_table(path: Path) -> None:
    """One table of 2,000 rows a minute apart; three production models on it."""
    ensure_schema(str(path))
    connection = duckdb.connect(str(path))
    try:
        connection.execute("SELECT setseed(0.5)")
        connection.execute("""
            CREATE TABLE shared AS SELECT TIMESTAMP '2026-01-01' + to_minutes(i) AS ts,
                i AS entity_id, random() AS x, random() AS y FROM range(2000) AS t(i)""")
    finally:
        connection.close()
    for name, features in zip(MODELS, (("x",), ("x", "y"), ("y",)), strict=True):
        add_model(str(path), ModelRegistration(
            name=name, feature_table="shared", timestamp_column="ts", features=features,
            key_columns=("entity_id",)), CONFIG.drift_run_config())


def _locks(client: redis.Redis) -> list[str]:
    return list(client.scan_iter(CONFIG.redis.key("lock", "*")))


def test_models_of_one_table_run_as_one_batch(fleet: Fleet, redis_db: redis.Redis,
                                             tmp_path: Path) -> None:
    _shared_table(tmp_path / "fleet.duckdb")
    worker = fleet.worker("drift")
    run_ids = app.send_task(SCHEDULE_DRIFT_RUNS).get(timeout=30)["run_ids"]
    assert sorted(r.partition("@")[0] for r in run_ids) == list(MODELS)
    wait_for(lambda: set(run_ids) <= set(records_by_run(redis_db)), timeout=30,
             what="the batch's three records")
    log = worker.log()
    received = [line for line in log.splitlines() if "received" in line]
    assert sum(RUN_DRIFT_BATCH in line for line in received) == 1, received
    assert not any("stat_guard.run_model_drift[" in line for line in received), received
    for run_id in run_ids:
        (fields,) = records_by_run(redis_db)[run_id]
        record = ResultRecord.from_fields(fields)
        assert record.verdict != "error" and record.features, record
        assert record.display_key == display_key(CONFIG.redis, run_id)
        shown = load_display(redis_db, record.display_key)
        assert shown.run_id == run_id and {f.name for f in shown.features} >= set(
            record.features)
    wait_for(lambda: not _locks(redis_db), timeout=10, what="the locks released")

    # A model locked by another run is sent on alone; the batch runs the others.
    runs = [[model, f"{model}@second"] for model in MODELS]
    lock = CONFIG.redis.key("lock", "model", "beta")
    redis_db.set(lock, "beta@other|elsewhere:1:0|token", px=60_000)
    answer = app.send_task(RUN_DRIFT_BATCH, args=(runs,)).get(timeout=30)
    statuses = {a["run_id"]: a["status"] for a in answer["runs"]}
    assert statuses == {"alpha@second": "published", "beta@second": "sent_alone",
                        "gamma@second": "published"}
    assert "beta@second" not in records_by_run(redis_db)
    assert _locks(redis_db) == [lock]  # the batch released its own
    freed_at = datetime.now(UTC)
    redis_db.delete(lock)
    wait_for(lambda: "beta@second" in records_by_run(redis_db), timeout=30,
             what="the locked model's run after the lock is free")
    (fields,) = records_by_run(redis_db)["beta@second"]
    record = ResultRecord.from_fields(fields)
    assert record.started_at >= freed_at and record.verdict != "error"
    assert record.display_key == display_key(CONFIG.redis, "beta@second")
    wait_for(lambda: not _locks(redis_db), timeout=10, what="the locks released")
    # The same batch again: every run id answers already_published.
    again = app.send_task(RUN_DRIFT_BATCH, args=(runs,)).get(timeout=30)
    assert {a["status"] for a in again["runs"]} == {"already_published"}
    assert all(len(copies) == 1 for copies in records_by_run(redis_db).values())


def test_a_failed_batch_publishes_an_error_record_per_run(redis_db: redis.Redis) -> None:
    from tasks.scheduled import run_drift_batch_task

    runs = [["alpha", "alpha@stuck"], ["beta", "beta@stuck"]]
    run_drift_batch_task.on_failure(RuntimeError("time is up"), "task-id", (runs,), {}, None)
    records = records_by_run(redis_db)
    assert sorted(records) == ["alpha@stuck", "beta@stuck"]
    for run_id, (fields,) in records.items():
        record = ResultRecord.from_fields(fields)
        assert record.run_id == run_id
        assert (record.verdict, record.features) == ("error", {})
        assert record.error == "the drift task failed: RuntimeError: time is up"
    # Again: the records stay the only ones.
    run_drift_batch_task.on_failure(RuntimeError("again"), "task-id", (runs,), {}, None)
    assert all(len(copies) == 1 for copies in records_by_run(redis_db).values())
