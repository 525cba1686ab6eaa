"""A model that cannot be scored never vanishes: a broken feature view, a missing DuckDB
file or an unexpected exception each publish an ``error`` record with the reason; a
missing DuckDB file is an error at scheduling time, never a new empty database.

The tasks run in this process (``Task.apply``) against the real Redis."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import duckdb
import pytest
import redis

import tasks.scheduled as scheduled
from stat_guard.result_record import ResultRecord
from stat_guard.scheduled.engine import DuckDBFileMissingError, ensure_schema
from tests.fleet.conftest import CONFIG


@pytest.fixture
def use_path(monkeypatch: pytest.MonkeyPatch):
    def use(path: Path) -> None:
        monkeypatch.setattr(scheduled, "config", dataclasses.replace(
            CONFIG, duckdb=dataclasses.replace(CONFIG.duckdb, path=str(path))))
        scheduled._schema_ready.cache_clear()

    yield use
    scheduled._schema_ready.cache_clear()


def _records(client: redis.Redis) -> list[ResultRecord]:
    return [ResultRecord.from_fields(fields)
            for _id, fields in client.xrange(CONFIG.stream.name)]


def _broken_view(path: Path) -> None:
    ensure_schema(str(path))
    connection = duckdb.connect(str(path))
    try:
        connection.execute("CREATE TABLE base AS SELECT i AS entity_id, TIMESTAMP '2025-01-01'"
                           " + to_microseconds(i * 1000000) AS ts, i / 7.0 AS x "
                           "FROM range(1000) r(i)")
        connection.execute("CREATE VIEW features_broken AS SELECT * FROM base")
        connection.execute("INSERT INTO model_metadata (name, status, features, feature_table)"
                           " VALUES ('broken', 'production', ['x'], 'features_broken')")
        connection.execute("DROP TABLE base")
    finally:
        connection.close()


def test_broken_feature_view_publishes_an_error_record(
        redis_db: redis.Redis, tmp_path: Path, use_path) -> None:
    path = tmp_path / "broken.duckdb"
    _broken_view(path)
    use_path(path)
    outcome = scheduled.run_model_drift_task.apply(args=("broken", "broken@slot")).get()
    assert outcome["status"] == "published" and outcome["verdict"] == "error"
    (record,) = _records(redis_db)
    assert record.run_id == "broken@slot" and record.verdict == "error"
    assert "could not be read" in record.error and "CatalogException" in record.error


def test_missing_duckdb_file_publishes_an_error_record_and_creates_nothing(
        redis_db: redis.Redis, tmp_path: Path, use_path) -> None:
    path = tmp_path / "mistyped.duckdb"
    use_path(path)
    outcome = scheduled.run_model_drift_task.apply(args=("churn", "churn@slot")).get()
    assert outcome["status"] == "published" and outcome["verdict"] == "error"
    (record,) = _records(redis_db)
    assert record.model == "churn" and "does not exist" in record.error
    assert record.details is not None and record.details.error_count == 1
    assert not path.exists()


def test_unexpected_exception_publishes_an_error_record(
        redis_db: redis.Redis, tmp_path: Path, use_path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    use_path(tmp_path / "any.duckdb")

    def explode(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(scheduled, "run_model_drift", explode)
    outcome = scheduled.run_model_drift_task.apply(args=("churn", "churn@boom")).get()
    assert outcome["verdict"] == "error"
    (record,) = _records(redis_db)
    assert record.error == "RuntimeError: disk on fire"


def test_scheduling_with_a_missing_duckdb_file_is_an_error_not_an_empty_database(
        redis_db: redis.Redis, tmp_path: Path, use_path,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mistyped.duckdb"
    use_path(path)
    with caplog.at_level(logging.INFO, logger="tasks.scheduled"), \
            pytest.raises(DuckDBFileMissingError):
        scheduled.enqueue_drift_runs()
    assert not path.exists()
    assert any(r.levelno == logging.ERROR and "does not exist" in r.getMessage()
               for r in caplog.records)
    assert not any("enqueued 0 drift runs" in r.getMessage() for r in caplog.records)


def test_exporter_last_success_ignores_error_records(redis_db: redis.Redis) -> None:
    import datetime as dt

    from stat_guard.scheduled.results import unscored_record
    from workers.exporter import ResultsCollector, scrape_client
    from workers.stream import publish_once

    ok_at = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    good = ResultRecord(run_id="churn@1", model="churn", source="scheduled", verdict="ok",
                        drift_score=0.01, started_at=ok_at, finished_at=ok_at, duration_s=1.0)
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, good)
    failed = unscored_record("churn@2", "churn", "DuckDB file 'x' does not exist",
                             ok_at + dt.timedelta(hours=1))
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, failed)
    client = scrape_client(CONFIG)
    try:
        text = ResultsCollector(CONFIG, client=client).response().body.decode()
    finally:
        client.close()
    assert 'stat_guard_model_verdict{model="churn",source="scheduled",verdict="error"} 1.0' \
        in text
    line = next(x for x in text.splitlines()
                if x.startswith("stat_guard_model_last_success_timestamp_seconds{"))
    assert float(line.split()[-1]) == ok_at.timestamp()
