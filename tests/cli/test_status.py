"""``stat-guard status`` reads the latest-record hashes the reactions keep in Redis (never
the DuckDB file) and answers with exit code 0 (fine), 1 (drift), 2 (a failed run) or 3
(Redis unreachable)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis

from stat_guard.result_record import ONDEMAND, SCHEDULED, ResultRecord
from tests.cli.conftest import CONFIG, stat_guard
from tests.local import free_port
from workers.reaction_keys import latest_key

FINISHED = datetime(2026, 12, 6, 9, 30, 5, tzinfo=UTC)


def keep_latest(client: redis.Redis, *records: ResultRecord) -> None:
    """As the reactions do: the record's stream fields as JSON, under its model."""
    for record in records:
        client.hset(latest_key(CONFIG.redis, record.source), record.model,
                    json.dumps(record.to_fields(), sort_keys=True))


def record(model: str, verdict: str, score: float | None, run_id: str | None = None,
           source: str = SCHEDULED, error: str = "") -> ResultRecord:
    return ResultRecord(run_id=run_id or f"{model}@20261206T090000Z", model=model,
                        source=source, verdict=verdict, drift_score=score, error=error,
                        started_at=FINISHED, finished_at=FINISHED, duration_s=1.5)


def test_all_fine_is_exit_0_with_one_row_per_model_and_source(redis_db: redis.Redis
                                                               ) -> None:
    keep_latest(redis_db, record("churn", "ok", 0.0123),
                record("fraud", "warning", 0.14, run_id="fraud@manual-20261206T092000000000Z"),
                record("fraud", "insufficient_data", None, run_id="req-1", source=ONDEMAND))
    shown = stat_guard("status")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].split() == ["model", "source", "trigger", "verdict", "score", "finished",
                                "run"]
    assert [line.split() for line in lines[2:]] == [
        ["churn", "scheduled", "scheduled", "ok", "0.0123", "2026-12-06", "09:30:05Z",
         "churn@20261206T090000Z"],
        ["fraud", "ondemand", "ondemand", "insufficient_data", "-", "2026-12-06",
         "09:30:05Z", "req-1"],
        ["fraud", "scheduled", "manual", "warning", "0.14", "2026-12-06", "09:30:05Z",
         "fraud@manual-20261206T092000000000Z"]]


def test_drift_is_exit_1_and_a_failed_run_exit_2(redis_db: redis.Redis) -> None:
    keep_latest(redis_db, record("churn", "ok", 0.01), record("fraud", "drift", 0.41))
    assert stat_guard("status").code == 1
    keep_latest(redis_db, record("credit", "error", None,
                                    error="feature table 'credit' not found"))
    failed = stat_guard("status", "--json")
    assert failed.code == 2, failed.err
    documents = json.loads(failed.out)
    assert [(d["model"], d["verdict"], d["drift_score"]) for d in documents] == [
        ("churn", "ok", 0.01), ("credit", "error", None), ("fraud", "drift", 0.41)]
    assert documents[1] == {"model": "credit", "source": "scheduled", "trigger": "scheduled",
                            "verdict": "error", "drift_score": None,
                            "finished_at": "2026-12-06T09:30:05+00:00",
                            "run_id": "credit@20261206T090000Z",
                            "error": "feature table 'credit' not found"}


def test_nothing_recorded_yet(redis_db: redis.Redis) -> None:
    empty = stat_guard("status")
    assert (empty.code, empty.out.strip()) == (
        0, "no results in Redis yet (the reactions record each model's latest run)")
    assert stat_guard("status", "--json").out.strip() == "[]"


def test_it_never_opens_the_duckdb_file(redis_db: redis.Redis, tmp_path) -> None:
    keep_latest(redis_db, record("churn", "ok", 0.01))
    shown = stat_guard("status", db_path=tmp_path / "absent.duckdb")
    assert shown.code == 0, shown.err
    assert not (tmp_path / "absent.duckdb").exists()


def test_unreachable_redis_is_exit_3_in_one_line() -> None:
    port = free_port()
    down = stat_guard("status", env={"STAT_GUARD_REDIS_PORT": str(port)})
    assert down.code == 3
    assert down.out == ""
    assert len(down.err.splitlines()) == 1
    assert down.err.startswith(f"stat-guard: Redis at 127.0.0.1:{port} (db 13) is "
                               f"unreachable: "), down.err
