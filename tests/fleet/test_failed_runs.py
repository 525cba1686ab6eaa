"""Failed runs through real worker processes: a model whose feature table is missing gets
an ``error`` record with its reason, a ``StatGuardRunFailed`` alert naming it, and its
last-success time on /metrics stays where the last good run left it; a drift task that
fails for good (its soft time limit, outside the engine) still publishes one ``error``
record for its run id (``DriftRunTask.on_failure``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import redis

from stat_guard.result_record import ResultRecord
from stat_guard.scheduled.engine import ensure_schema
from stat_guard.scheduled.models import ModelRegistration, add_model
from tests.fleet.conftest import CONFIG, Fleet, FleetProcess
from tests.fleet.support import WebhookReceiver, records_by_run
from tests.local import wait_for
from workers.celery_app import app
from workers.exporter import ResultsCollector, scrape_client
from workers.routing import CONSUME_REACTIONS, RUN_MODEL_DRIFT

LAST_SUCCESS = "stat_guard_model_last_success_timestamp_seconds"


def _feature_tables(path: Path, *tables: str) -> None:
    """The schema and, per name, a table of 2000 rows a minute apart with one feature ``x``
    drawn alike throughout (its runs are ``ok``)."""
    ensure_schema(str(path))
    connection = duckdb.connect(str(path))
    try:
        connection.execute("SELECT setseed(0.5)")
        for table in tables:
            connection.execute(f"""
                CREATE TABLE {table} AS SELECT TIMESTAMP '2026-01-01' + to_minutes(i) AS ts,
                    i AS entity_id, random() AS x FROM range(2000) AS t(i)""")
    finally:
        connection.close()
    for table in tables:
        add_model(str(path), ModelRegistration(
            name=table, feature_table=table, timestamp_column="ts", features=("x",),
            key_columns=("entity_id",)), CONFIG.drift_run_config())


def _drop(path: Path, table: str) -> None:
    connection = duckdb.connect(str(path))
    try:
        connection.execute(f"DROP TABLE {table}")
    finally:
        connection.close()


def _ready(fleet: Fleet, *queues: str) -> list[FleetProcess]:
    """Workers for ``queues``, started side by side, once every one is ready."""
    workers = [fleet.worker(queue, wait=False) for queue in queues]
    for worker in workers:
        wait_for(lambda w=worker: " ready." in w.log() or w.process.poll() is not None,
                 timeout=60, what=f"{worker.name} ready")
        assert worker.process.poll() is None, worker.log()[-3000:]
    return workers


def _run(model: str, run_id: str) -> dict:
    return app.send_task(RUN_MODEL_DRIFT, args=(model, run_id)).get(timeout=30)


def _last_success(collector: ResultsCollector) -> dict[str, float]:
    """model -> stat_guard_model_last_success_timestamp_seconds, from one scrape."""
    found = {}
    for line in collector.response().body.decode().splitlines():
        if line.startswith(LAST_SUCCESS + "{"):
            labels, value = line.rsplit(" ", 1)
            model = labels.split('model="', 1)[1].split('"', 1)[0]
            found[model] = float(value)
    return found


def _record(client: redis.Redis, run_id: str) -> ResultRecord:
    (fields,) = records_by_run(client)[run_id]
    return ResultRecord.from_fields(fields)


def test_missing_feature_table_errors_alerts_and_keeps_the_last_success(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    _feature_tables(db_path, "churn", "ghost")
    _drop(db_path, "ghost")  # never had a good run
    scrapes = scrape_client(CONFIG)
    running = ResultsCollector(CONFIG, client=scrapes)  # an exporter up all along
    with WebhookReceiver() as webhook:
        fleet.env["STAT_GUARD_REACTIONS_WEBHOOK_URL"] = webhook.url
        _ready(fleet, "drift", "reactions")

        good = _run("churn", "churn@good")
        assert (good["status"], good["verdict"]) == ("published", "ok"), good
        succeeded_at = _record(redis_db, "churn@good").finished_at.timestamp()
        assert _last_success(running) == {"churn": succeeded_at}

        _drop(db_path, "churn")
        for model in ("churn", "ghost"):
            failed = _run(model, f"{model}@missing")
            assert (failed["status"], failed["verdict"]) == ("published", "error"), failed
        reasons = {}
        for model in ("churn", "ghost"):
            record = _record(redis_db, f"{model}@missing")
            assert record.verdict == "error" and record.features["x"].verdict == "error"
            assert record.error == f"feature table {model!r} not found"
            reasons[model] = record.error

        app.send_task(CONSUME_REACTIONS).get(timeout=30)
    alerts = {alert["labels"]["model"]: alert for body in webhook.bodies for alert in body}
    assert set(alerts) == {"churn", "ghost"} and len(webhook.bodies) == 2
    for model, alert in alerts.items():
        assert alert["labels"]["alertname"] == "StatGuardRunFailed"
        assert alert["annotations"]["notification"] == "firing"
        assert alert["annotations"]["run_id"] == f"{model}@missing"
        assert alert["annotations"]["reason"] == reasons[model]
        assert reasons[model] in alert["annotations"]["summary"]

    # The exporter that scraped the good run, and one started after the failure, agree:
    # the error runs set no last-success time, churn keeps its good run's.
    fresh = ResultsCollector(CONFIG, client=scrapes)
    try:
        assert _last_success(running) == {"churn": succeeded_at}
        assert _last_success(fresh) == {"churn": succeeded_at}
        text = fresh.response().body.decode()
    finally:
        scrapes.close()
    for model in ("churn", "ghost"):
        assert (f'stat_guard_model_verdict{{model="{model}",source="scheduled",'
                f'verdict="error"}} 1.0') in text


def test_a_drift_task_that_fails_for_good_publishes_one_error_record(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    _feature_tables(db_path, "churn")
    # The run sleeps 3 s after taking its lock, outside the engine's own error handling:
    # a 1 s soft time limit ends the task with SoftTimeLimitExceeded. The limits travel
    # with the message (send_task fills in this process's task defaults otherwise).
    fleet.env["STAT_GUARD_TESTING_DRIFT_DELAY_S"] = "3"
    (worker,) = _ready(fleet, "drift")
    result = app.send_task(RUN_MODEL_DRIFT, args=("churn", "churn@stuck"),
                           soft_time_limit=1, time_limit=5)
    result.get(timeout=30, propagate=False)
    assert result.failed() and type(result.result).__name__ == "SoftTimeLimitExceeded"
    # Celery stores the failure first, then calls on_failure: the record follows shortly.
    wait_for(lambda: "churn@stuck" in records_by_run(redis_db), timeout=10,
             what="the error record")
    record = _record(redis_db, "churn@stuck")
    assert (record.model, record.verdict, record.features) == ("churn", "error", {})
    assert record.error.startswith("the drift task failed: SoftTimeLimitExceeded")
    wait_for(lambda: "error record published" in worker.log(), timeout=10,
             what="the failure logged")
    assert not list(redis_db.scan_iter(CONFIG.redis.key("lock", "*")))

    # The same run id again (a redelivery, a duplicate beat) and the failure handler again:
    # the one record stays the only one.
    assert _run("churn", "churn@stuck")["status"] == "already_published"
    from tasks.scheduled import run_model_drift_task

    run_model_drift_task.on_failure(RuntimeError("again"), "task-id", ("churn", "churn@stuck"),
                                    {}, None)
    assert len(records_by_run(redis_db)["churn@stuck"]) == 1
