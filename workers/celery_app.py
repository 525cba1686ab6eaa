"""The Celery application: Redis broker and result backend, queues, routes and the
long-task safety settings, all taken from :mod:`workers.config`.

Workers: ``celery -A workers.celery_app worker -Q drift -c 1`` (and ``-Q ondemand``,
``-Q reactions``); beat: ``celery -A beat_schedule beat``. See docs/fleet.md.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from workers import drift_pause
from workers.config import FleetConfig, get_config
from workers.routing import RUN_ONDEMAND_ANALYSIS, task_queues, task_routes

logger = logging.getLogger(__name__)


def celery_settings(config: FleetConfig) -> dict[str, Any]:
    """Celery settings for ``config`` (a plain dict, so tests can read the values)."""
    limits = config.limits
    redis = config.redis
    transport_options = {
        # An unacknowledged task is given to another worker after this; every hard time
        # limit is below it, so a task still running is never delivered twice.
        "visibility_timeout": limits.visibility_timeout_s,
        "unacked_restore_interval": limits.unacked_restore_interval_s,
        "unacked_restore_throttle": limits.unacked_restore_throttle,
        "socket_timeout": redis.socket_timeout_s,
        "socket_connect_timeout": redis.socket_connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "retry_on_timeout": True,
    }
    return {
        "broker_url": redis.url(),
        "result_backend": redis.url(),
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {
            "retry_policy": {"max_retries": 20, "interval_start": 0.2,
                             "interval_step": 0.5, "interval_max": 5},
        },
        "redis_socket_timeout": redis.socket_timeout_s,
        "redis_socket_connect_timeout": redis.socket_connect_timeout_s,
        "redis_socket_keepalive": True,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 25,
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a Redis restart is waited out, not fatal
        "task_queues": task_queues(config.queues),
        "task_routes": task_routes(config.queues),
        "task_default_queue": config.queues.ondemand,
        "task_create_missing_queues": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": limits.result_expires_s,
        "task_track_started": True,
        # Long tasks: acknowledge only when done, requeue when the worker dies, and take
        # one message at a time so a waiting task is never stuck behind a running one.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A Redis restart must not cancel an hour-long drift run: it finishes, and the
        # idempotent write and publish absorb any redelivery.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_soft_time_limit": limits.ondemand_soft_time_limit_s,
        "task_time_limit": limits.ondemand_time_limit_s,
        "worker_max_tasks_per_child": 100,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
        "beat_max_loop_interval": 5,
    }


config = get_config()
app = Celery("stat_guard", include=["tasks.scheduled", "tasks.ondemand", "tasks.baselines",
                                  "tasks.reactions"])
app.conf.update(celery_settings(config))

_consumed_queues: list[str] = []


@celeryd_init.connect
def _remember_queues(sender: Any = None, options: dict[str, Any] | None = None,
                     **_: Any) -> None:
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    _consumed_queues[:] = [q.strip() for q in queues if q and q.strip()]


@worker_process_init.connect
def _lower_drift_priority(**_: Any) -> None:
    """Drift runs are the lowest priority of the whole system: a pool process of a worker
    consuming the drift queue drops to ``drift.nice`` (19 by default) and, with
    ``drift.sched_idle``, to Linux's SCHED_IDLE class, which only gets a CPU nothing else
    wants (nice 19 alone still takes a share of a busy CPU)."""
    if config.queues.drift not in _consumed_queues:
        return
    current = os.nice(0)
    if current < config.drift.nice:
        os.nice(config.drift.nice - current)
    policy = "normal"
    if config.drift.sched_idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            policy = "idle"
        except OSError as exc:
            logger.warning("could not switch to SCHED_IDLE: %s", exc)
    logger.info("drift pool process %d runs at niceness %d, scheduling %s", os.getpid(),
                os.nice(0), policy)
    # A worker that also runs on-demand analyses is not paused by them (it would stop
    # itself or an analysis running beside it).
    if config.ondemand.pause_local_drift and config.queues.ondemand not in _consumed_queues:
        try:
            drift_pause.register_drift_process(_redis(), config, os.getpid())
        except Exception as exc:  # the run goes on unpausable rather than not at all
            logger.warning("drift process %d not registered for pausing: %s", os.getpid(),
                           exc)


@worker_process_shutdown.connect
def _unregister_drift_process(**_: Any) -> None:
    if config.queues.drift in _consumed_queues and config.ondemand.pause_local_drift:
        try:
            drift_pause.unregister_drift_process(_redis(), config, os.getpid())
        except Exception as exc:  # shutting down; a stale entry is checked before use
            logger.debug("drift process %d not unregistered: %s", os.getpid(), exc)


# ---- on-demand analyses pause this host's drift runs (workers/drift_pause.py) ----------

_watchdog_stop = threading.Event()


@worker_ready.connect
def _start_drift_watchdog(**_: Any) -> None:
    """In a drift worker's main process: continue pool processes left stopped."""
    if config.queues.drift not in _consumed_queues or not config.ondemand.pause_local_drift:
        return
    parent = os.getpid()
    thread = threading.Thread(
        target=drift_pause.watch, name="drift-pause-watchdog", daemon=True,
        args=(_redis(), config, lambda: _children_of(parent), _watchdog_stop))
    thread.start()


@worker_shutdown.connect
def _stop_drift_watchdog(**_: Any) -> None:
    _watchdog_stop.set()


@task_prerun.connect
def _pause_for_analysis(task: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == RUN_ONDEMAND_ANALYSIS and config.ondemand.pause_local_drift:
        try:
            drift_pause.pause_drift(_redis(), config)
        except Exception as exc:  # an analysis never fails for want of a pause
            logger.warning("could not pause drift runs: %s", exc)


@task_postrun.connect
def _resume_after_analysis(task: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == RUN_ONDEMAND_ANALYSIS and config.ondemand.pause_local_drift:
        try:
            drift_pause.resume_drift(_redis(), config)
        except Exception as exc:  # the watchdog continues them once the count expires
            logger.warning("could not resume drift runs: %s", exc)


def _redis() -> Any:
    """A fail-fast client: pausing is an optimisation and must never hold a task up."""
    from workers.redis_client import redis_client

    return redis_client(config.redis, fail_fast=True)


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(entry))
    return children
