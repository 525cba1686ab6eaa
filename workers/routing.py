"""Task names, queues and routes: the one place that says which task runs where.

Queues are split by run time, not by Redis priority: heavy DuckDB drift runs have their own
low-priority worker, so on-demand analyses and reactions never wait behind them.
"""

from __future__ import annotations

from kombu import Exchange, Queue

from workers.config import QueuesConfig

# Task names (stable: they are what sits in the broker, so renaming a function is safe).
SCHEDULE_DRIFT_RUNS = "stat_guard.schedule_drift_runs"
RUN_MODEL_DRIFT = "stat_guard.run_model_drift"
RUN_DRIFT_BATCH = "stat_guard.run_drift_batch"
FLAG_MODEL = "stat_guard.flag_model"
UNFLAG_MODEL = "stat_guard.unflag_model"
RUN_ONDEMAND_ANALYSIS = "stat_guard.run_ondemand_analysis"
REFRESH_BASELINES = "stat_guard.refresh_baselines"
CONSUME_REACTIONS = "stat_guard.consume_reactions"


def task_queues(queues: QueuesConfig) -> tuple[Queue, ...]:
    """Each queue on its own direct exchange of the same name (a queue declared without
    one would take Celery's default exchange, named after the default queue)."""
    return tuple(Queue(name, Exchange(name, type="direct"), routing_key=name)
                 for name in (queues.drift, queues.ondemand, queues.reactions))


def task_routes(queues: QueuesConfig) -> dict[str, dict[str, str]]:
    """Which queue each task goes to: long tasks (DuckDB drift runs, baseline captures)
    on ``drift``, short PostgreSQL analyses on ``ondemand``, stream draining on
    ``reactions``. Every task that opens the DuckDB file (including the flag a reaction
    asks for) is on ``drift``: its one worker per file never conflicts with itself."""
    return {
        SCHEDULE_DRIFT_RUNS: {"queue": queues.drift},
        RUN_MODEL_DRIFT: {"queue": queues.drift},
        RUN_DRIFT_BATCH: {"queue": queues.drift},
        FLAG_MODEL: {"queue": queues.drift},
        UNFLAG_MODEL: {"queue": queues.drift},
        RUN_ONDEMAND_ANALYSIS: {"queue": queues.ondemand},
        REFRESH_BASELINES: {"queue": queues.drift},
        CONSUME_REACTIONS: {"queue": queues.reactions},
    }
