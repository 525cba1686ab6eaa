"""The per-model lock: two runs of one model never overlap; the second waits."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import redis

from tests.fleet.conftest import Fleet
from tests.fleet.support import demo_database, records_by_run
from workers.celery_app import app
from workers.routing import RUN_MODEL_DRIFT


def test_two_runs_of_one_model_never_overlap(fleet: Fleet, redis_db: redis.Redis,
                                             tmp_path: Path) -> None:
    demo = demo_database(tmp_path / "fleet.duckdb")
    model = demo.production_models[0]
    # Three pool processes, so nothing but the lock keeps the runs apart.
    fleet.env["STAT_GUARD_TESTING_DRIFT_DELAY_S"] = "2"
    worker = fleet.worker("drift", concurrency=3)
    first = app.send_task(RUN_MODEL_DRIFT, args=(model, f"{model}@slot-1"))
    duplicate = app.send_task(RUN_MODEL_DRIFT, args=(model, f"{model}@slot-1"))
    second = app.send_task(RUN_MODEL_DRIFT, args=(model, f"{model}@slot-2"))
    outcomes = [r.get(timeout=90) for r in (first, duplicate, second)]

    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["already_published", "published", "published"]
    records = records_by_run(redis_db)
    assert sorted(records) == [f"{model}@slot-1", f"{model}@slot-2"]
    assert all(len(copies) == 1 for copies in records.values())
    spans = sorted((datetime.fromisoformat(r[0]["started_at"]),
                    datetime.fromisoformat(r[0]["finished_at"])) for r in records.values())
    assert spans[0][1] <= spans[1][0], f"runs overlapped: {spans}"
    assert worker.log().count(f"waits: model {model} is locked by run") >= 2
