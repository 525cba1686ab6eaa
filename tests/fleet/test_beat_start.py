"""Beat sends the drift runs once when it starts (``schedule.drift_run_at_start``), not
only one ``drift_interval_s`` later (an hour by default)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.fleet.conftest import CONFIG, Fleet
from tests.fleet.support import demo_database, records_by_run
from tests.local import wait_for


def test_first_drift_runs_at_beat_start(fleet: Fleet, redis_db: redis.Redis,
                                        tmp_path: Path) -> None:
    demo = demo_database(tmp_path / "fleet.duckdb", rows_per_model=2_000)
    assert CONFIG.schedule.drift_interval_s == 3600  # the interval alone would wait an hour
    fleet.worker("drift")
    beat = fleet.beat()
    models = set(demo.production_models)
    wait_for(lambda: models <= {r[0]["model"] for r in records_by_run(redis_db).values()},
             timeout=90, what="a result of every production model after beat's start")
    assert "sent at start" in beat.log()
    # The runs are those of the current slot: a restart within the hour reuses their ids.
    for run_id, copies in records_by_run(redis_db).items():
        model, _, slot = run_id.partition("@")
        assert model in models and slot.endswith("Z") and "manual" not in slot
        assert len(copies) == 1


def test_no_run_at_start_when_turned_off(fleet: Fleet, redis_db: redis.Redis) -> None:
    beat = fleet.beat(env={"STAT_GUARD_SCHEDULE_DRIFT_RUN_AT_START": "false"})
    wait_for(lambda: "beat: Starting" in beat.log(), timeout=30, what="beat started")
    time.sleep(3)
    # No worker consumes the drift queue here: a message sent by beat would still be there.
    assert redis_db.llen(CONFIG.queues.drift) == 0, beat.log()
    assert "sent at start" not in beat.log()
