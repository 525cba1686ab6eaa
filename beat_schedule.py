"""What runs when (the stand-in for the platform's scheduler, "Service D").

Run beat with this module as the app, so the schedule below is loaded:
``stat-guard beat`` (``celery -A beat_schedule beat``). Every entry expires: a run that
could not start before its next occurrence is dropped rather than piling up behind a busy
worker.

Celery's interval entries first fire one interval after beat starts; with
``schedule.drift_run_at_start`` (the default) the drift entry is also sent once at start,
so a new deployment has results within minutes, not after an hour. Its run ids are those of
the current slot: restarting beat within one interval enqueues runs that answer
``already_published``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery.signals import beat_init

from workers.celery_app import app, config
from workers.config import FleetConfig
from workers.routing import CONSUME_REACTIONS, REFRESH_BASELINES, SCHEDULE_DRIFT_RUNS


def build_beat_schedule(fleet: FleetConfig) -> dict[str, dict[str, Any]]:
    schedule = fleet.schedule
    entries: dict[str, dict[str, Any]] = {
        # Every production model, hourly by default, at low priority on the drift queue.
        "drift-runs": {
            "task": SCHEDULE_DRIFT_RUNS,
            "schedule": timedelta(seconds=schedule.drift_interval_s),
            "options": {"expires": schedule.drift_interval_s},
        },
        # Drain the result stream and reclaim what a dead consumer left pending.
        "reactions": {
            "task": CONSUME_REACTIONS,
            "schedule": timedelta(seconds=schedule.reactions_interval_s),
            "options": {"expires": schedule.reactions_interval_s},
        },
    }
    if fleet.baselines.sources:
        entries["baseline-refresh"] = {
            "task": REFRESH_BASELINES,
            "schedule": timedelta(seconds=schedule.baseline_refresh_interval_s),
            "options": {"expires": schedule.baseline_refresh_interval_s},
        }
    return entries


def send_drift_runs_at_start(fleet: FleetConfig) -> bool:
    """Send the drift entry now if the configuration asks for a run at start."""
    if not fleet.schedule.drift_run_at_start:
        return False
    app.send_task(SCHEDULE_DRIFT_RUNS, expires=fleet.schedule.drift_interval_s)
    logging.getLogger(__name__).info("drift runs of every production model sent at start; "
                                     "next in %g s", fleet.schedule.drift_interval_s)
    return True


@beat_init.connect
def _on_beat_init(**_: Any) -> None:
    send_drift_runs_at_start(config)


BEAT_SCHEDULE = build_beat_schedule(config)
app.conf.beat_schedule = BEAT_SCHEDULE

__all__ = ["BEAT_SCHEDULE", "app", "build_beat_schedule", "send_drift_runs_at_start"]
