"""The whole scheduled chain with real processes: beat fires the drift entry, the drift
worker runs every production model over DuckDB and publishes to the stream, the reaction
worker alerts, flags and counts — once per run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis

from tasks.reactions import counter_key, marker_key
from tests.fleet.conftest import CONFIG, Fleet
from tests.fleet.support import (
    WebhookReceiver,
    demo_database,
    pending_count,
    query,
    records_by_run,
)
from tests.local import wait_for
from workers import drift_pause
from workers.celery_app import app
from workers.displays import display_key, load_display
from workers.routing import CONSUME_REACTIONS


def test_beat_to_drift_to_stream_to_reaction(fleet: Fleet, redis_db: redis.Redis,
                                             tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    demo = demo_database(db_path)
    with WebhookReceiver() as webhook:
        # Beat fires the drift entry every 4 s; the first firing is the one we follow.
        fleet.env.update({"STAT_GUARD_SCHEDULE_DRIFT_INTERVAL_S": "4",
                          "STAT_GUARD_REACTIONS_WEBHOOK_URL": webhook.url})
        drift_worker = fleet.worker("drift")
        fleet.worker("reactions")
        beat = fleet.beat()
        models = set(demo.production_models)
        wait_for(lambda: models <= {r[0]["model"] for r in records_by_run(redis_db).values()},
                 timeout=60, what="one stream record per production model")
        # Beat also drains the stream every second: the first runs get their reactions.
        wait_for(lambda: all(redis_db.get(marker_key(run_id)) == "done"
                             for run_id in records_by_run(redis_db)),
                 timeout=30, what="beat-driven reactions")
        fleet.stop(beat)
        _settle(redis_db)
        records = {}
        for run_id, copies in records_by_run(redis_db).items():
            assert len(copies) == 1, f"run {run_id} published {len(copies)} times"
            records[run_id] = copies[0]
        first = {}
        for run_id, record in sorted(records.items()):
            first.setdefault(record["model"], (run_id, record))
        assert set(first) == models  # the staging model is never run

        for model, (run_id, record) in first.items():
            assert run_id.startswith(f"{model}@")
            assert record["source"] == "scheduled"
            features = json.loads(record["features"])
            drifted = set(demo.drifted_features[model])
            stable = set(demo.stable_features[model])
            found = {name for name, f in features.items() if f["verdict"] in ("warning", "drift")}
            assert found == drifted, (model, found, drifted)
            assert all(features[name]["verdict"] == "ok" for name in stable)
            assert record["verdict"] == "drift"
            assert float(record["drift_score"]) > CONFIG.thresholds.psi_drift
            # DuckDB got the scores, once per feature, before the stream record
            rows = query(db_path, "SELECT feature, count(*) FROM drift_runs WHERE run_id = ? "
                                  "GROUP BY feature", [run_id])
            assert {feature for feature, _ in rows} >= set(features)
            assert all(count == 1 for _, count in rows)
            # The drift task stored the run's display summaries under the record's key.
            assert record["display_key"] == display_key(CONFIG.redis, run_id)
            shown = load_display(redis_db, record["display_key"])
            assert shown.run_id == run_id and shown.source == "scheduled"
            by_name = {f.name: f for f in shown.features}
            assert set(features) <= set(by_name)
            assert {n for n in found if by_name[n].verdict in ("warning", "drift")} == found

        # The reaction worker acted on every drift run once; a model's first drift run
        # alerts, the later ones of its streak are quiet (docs/fleet.md, "The alert cycle").
        drift_runs = {run_id for run_id, r in records.items() if r["verdict"] == "drift"}
        opening = {min(r for r in drift_runs if records[r]["model"] == m) for m in models}
        assert all(redis_db.get(marker_key(r)) == "done" for r in records)
        assert sorted(webhook.alerted_run_ids()) == sorted(opening)
        alert = webhook.bodies[0][0]
        assert alert["labels"]["alertname"] == "StatGuardDrift"
        assert alert["labels"]["source"] == "scheduled"
        assert int(redis_db.get(counter_key("alert"))) == len(opening)
        assert int(redis_db.get(counter_key("suppressed")) or 0) == len(drift_runs) - len(opening)
        assert int(redis_db.get(counter_key("flag"))) == len(drift_runs)
        assert pending_count(redis_db) == 0
        # The drift worker writes the flags the reactions asked for.
        def flags() -> dict[str, str]:
            return dict(query(db_path, "SELECT name, flagged_run_id FROM model_metadata "
                                       "WHERE flagged"))

        wait_for(lambda: set(flags()) == models, timeout=30, what="the models flagged")
        flagged = flags()
        assert all(flagged[m] in drift_runs for m in models)
        latest = redis_db.hgetall("stat_guard:latest:scheduled")
        assert set(latest) == models

    # The drift worker's pool process runs at the lowest OS priority.
    (child,) = drift_worker.child_pids()
    stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
    niceness, policy = int(stat[16]), int(stat[38])
    assert niceness == CONFIG.drift.nice == 19
    assert policy == os.SCHED_IDLE
    # ... and is registered so that on-demand analyses on this host can pause it.
    assert redis_db.hgetall(drift_pause.pool_key(CONFIG)) == {
        str(child): drift_pause.process_start_time(child)}


def _settle(redis_db: redis.Redis) -> None:
    """Wait until the runs beat enqueued before it stopped are done and reacted to: the
    drift queue empty, no model locked, every record reacted to, twice in a row."""
    previous = -1

    def settled() -> bool:
        nonlocal previous
        if redis_db.llen(CONFIG.queues.drift) or list(redis_db.scan_iter("stat_guard:lock:*")):
            return False
        app.send_task(CONSUME_REACTIONS).get(timeout=30)
        runs = records_by_run(redis_db)
        done = all(redis_db.get(marker_key(run_id)) == "done" for run_id in runs)
        stable, previous = len(runs) == previous, len(runs)
        return done and stable

    wait_for(settled, timeout=60, what="the drift queue to drain", interval=1.0)
