"""The scheduled drift tasks: enumerate the production models and run one drift task per
model on the low-priority ``drift`` queue; flag and unflag models. The engine
(``stat_guard.scheduled``) does the work.

A run takes the model's Redis lock, lets the engine read DuckDB, compute and write its
scores (idempotent by run id), then publishes the result to the stream once per run id.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task

from stat_guard.result_record import ResultRecord, number_text
from stat_guard.scheduled.engine import (
    DuckDBBusyError,
    DuckDBFileMissingError,
    ModelNotFoundError,
    ensure_schema,
    flag_model,
    production_models,
    run_model_drift,
    unflag_model,
)
from stat_guard.scheduled.results import unscored_record
from workers.celery_app import app, config
from workers.displays import with_display
from workers.locks import ModelLock
from workers.redis_client import redis_client
from workers.routing import FLAG_MODEL, RUN_MODEL_DRIFT, SCHEDULE_DRIFT_RUNS, UNFLAG_MODEL
from workers.stream import already_published, preview, publish_once

logger = logging.getLogger(__name__)


def schedule_slot(now: datetime, interval_s: float) -> datetime:
    """The start of the schedule slot ``now`` falls in (slots are aligned to the epoch)."""
    seconds = int(interval_s)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def drift_run_id(model: str, slot: datetime) -> str:
    """Deterministic per (model, slot): a duplicate beat or a redelivery reuses it."""
    return f"{model}@{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def model_lock_key(model: str) -> str:
    return config.redis.key("lock", "model", model)


@functools.cache
def _schema_ready(db_path: str) -> bool:
    # create=False: a missing or mistyped duckdb.path is an error, not a new empty database
    ensure_schema(db_path, create=False)
    return True


def enqueue_drift_runs(now: datetime | None = None) -> list[str]:
    """Enqueue one drift run per production model for the slot ``now`` falls in; returns
    the run ids. Reads DuckDB, so it runs where DuckDB is opened: in the drift worker."""
    db_path = config.duckdb.path
    slot = schedule_slot(now or datetime.now(UTC), config.schedule.drift_interval_s)
    try:
        _schema_ready(db_path)
    except DuckDBFileMissingError as exc:
        logger.error("slot %s: no drift runs enqueued: %s", slot.isoformat(), exc)
        raise
    run_ids = []
    for model in production_models(db_path, config.drift_run_config()):
        run_id = drift_run_id(model, slot)
        # Not started within one interval: the next slot's run supersedes it.
        run_model_drift_task.apply_async(args=(model, run_id),
                                          expires=config.schedule.drift_interval_s)
        run_ids.append(run_id)
    if run_ids:
        logger.info("slot %s: enqueued %d drift runs", slot.isoformat(), len(run_ids))
    else:
        logger.warning("slot %s: no production models in %s; enqueued 0 drift runs",
                       slot.isoformat(), db_path)
    return run_ids


@app.task(bind=True, name=SCHEDULE_DRIFT_RUNS, max_retries=config.drift.busy_max_retries,
          soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def schedule_drift_runs(self: Task) -> dict[str, Any]:
    """Beat's hourly entry: enqueue the runs of every production model."""
    try:
        run_ids = enqueue_drift_runs()
    except DuckDBBusyError as exc:
        raise self.retry(exc=exc, countdown=_busy_countdown(self.request.retries)) from exc
    return {"run_ids": run_ids}


class DriftRunTask(Task):
    """A drift run whose task fails for good (an exception escaping it after its retries:
    Redis unreachable for the publish, the time limit) still reaches the stream: an
    unscored ``error`` record, unless a record of the run id was published."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        model = kwargs.get("model") or (args[0] if len(args) > 0 else "")
        run_id = kwargs.get("run_id") or (args[1] if len(args) > 1 else "")
        if not model or not run_id:
            return
        reason = f"the drift task failed: {type(exc).__name__}: {exc}"
        try:
            client = redis_client()
            if already_published(client, config.redis, run_id):
                return
            record = unscored_record(run_id, model, reason, datetime.now(UTC))
            published = publish_once(client, config.redis, config.stream, record)
        except redis.RedisError as publish_exc:  # nothing more can be done from here
            logger.error("drift run %s of %s failed (%s) and its error record could not be "
                         "published: %s", run_id, model, reason, publish_exc)
            return
        logger.error("drift run %s of %s failed; error record published (entry %s): %s",
                     run_id, model, published.entry_id, preview(reason, 1000))


@app.task(bind=True, base=DriftRunTask, name=RUN_MODEL_DRIFT, max_retries=None,
          soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def run_model_drift_task(self: Task, model: str, run_id: str, busy_retries: int = 0,
                         lock_waits: int = 0) -> dict[str, Any]:
    """One model's drift run: lock, compute and write (DuckDB), then publish (stream).

    Another run of the same model holding the lock: this one waits by retrying every
    ``drift.lock_retry_countdown_s``; once it has the lock, a run id already published
    returns at once, so a duplicate never computes twice. Lock waits and DuckDB-busy
    retries are counted apart (``lock_waits``, ``busy_retries``), each against its bound.
    """
    client = redis_client()
    previous = already_published(client, config.redis, run_id)
    if previous:
        return {"status": "already_published", "run_id": run_id, "entry_id": previous}
    lock = ModelLock(client, model_lock_key(model), run_id, config.limits.model_lock_ttl_s)
    if not lock.acquire():
        holder = lock.holder()
        if lock_waits >= config.drift.lock_max_retries:
            logger.warning("drift run %s skipped: model %s stayed locked", run_id, model)
            return {"status": "skipped_locked", "run_id": run_id}
        logger.info("drift run %s waits: model %s is locked by run %s", run_id, model,
                    holder.run_id if holder else "(just released)")
        raise self.retry(countdown=config.drift.lock_retry_countdown_s,
                         kwargs={"busy_retries": busy_retries, "lock_waits": lock_waits + 1})
    if lock.taken_over is not None:
        logger.warning("drift run %s took over its own lock from a dead run (%s)", run_id,
                       lock.taken_over.process or "process unknown")

    def retry_later(exc: Exception, what: str) -> Exception:
        if busy_retries >= config.drift.busy_max_retries:
            return exc
        countdown = _busy_countdown(busy_retries)
        logger.warning("drift run %s: %s, retrying in %.1f s", run_id, what, countdown)
        return self.retry(exc=exc, countdown=countdown, kwargs={
            "busy_retries": busy_retries + 1, "lock_waits": lock_waits})

    try:
        previous = already_published(client, config.redis, run_id)
        if previous:
            return {"status": "already_published", "run_id": run_id, "entry_id": previous}
        started_at = datetime.now(UTC)
        if config.testing.drift_delay_s:
            time.sleep(config.testing.drift_delay_s)
        try:
            result = run_model_drift(config.duckdb.path, model, run_id,
                                     config=config.drift_run_config())
            record = with_display(client, config.redis, result.stream_record(),
                                  result.run_display, config.display.ttl_s)
        except ModelNotFoundError as exc:  # removed since it was enqueued: nothing to do
            logger.warning("drift run %s skipped: %s", run_id, exc)
            return {"status": "skipped_unknown_model", "run_id": run_id}
        except DuckDBBusyError as exc:
            if busy_retries < config.drift.busy_max_retries:
                raise retry_later(exc, "DuckDB busy") from exc
            record = _failed(run_id, model, started_at, f"DuckDB file stayed locked through "
                             f"{busy_retries} retries: {exc}")
        except DuckDBFileMissingError as exc:
            record = _failed(run_id, model, started_at, str(exc))
        except Exception as exc:  # anything else: the model is reported, never silent
            logger.exception("drift run %s of %s failed", run_id, model)
            record = _failed(run_id, model, started_at, f"{type(exc).__name__}: {exc}")
        # DuckDB holds the scores now (or the run failed); the stream entry follows, once
        # per run id.
        try:
            published = publish_once(client, config.redis, config.stream, record)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise retry_later(exc, "Redis unreachable for the publish") from exc
    finally:
        _release(lock)
    if record.error and not record.features:
        logger.error("drift run %s of %s: error published (entry %s): %s", run_id, model,
                     published.entry_id, preview(record.error, 1000))
    else:
        logger.info("drift run %s: %s (score %s) in %.1f s, entry %s", run_id,
                    record.verdict, number_text(record.drift_score), record.duration_s or 0.0,
                    published.entry_id)
    return {"status": "published" if published.added else "already_published",
            "run_id": run_id, "model": model, "verdict": record.verdict,
            "drift_score": record.drift_score, "duration_s": record.duration_s,
            "entry_id": published.entry_id, "error": record.error}


def _failed(run_id: str, model: str, started_at: datetime, reason: str) -> ResultRecord:
    logger.error("drift run %s of %s could not score the model: %s", run_id, model,
                 preview(reason, 1000))
    return unscored_record(run_id, model, reason, started_at)


@app.task(bind=True, name=FLAG_MODEL, max_retries=config.drift.busy_max_retries,
          soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def flag_model_task(self: Task, model: str, run_id: str, verdict: str) -> dict[str, Any]:
    """Mark ``model`` flagged by ``run_id`` in ``model_metadata`` (asked for by a reaction;
    idempotent per run id). It runs on the drift worker, the one process that opens the
    DuckDB file, so a reaction never waits for a drift run's lock."""
    try:
        flag_model(config.duckdb.path, model, run_id, verdict, config=config.drift_run_config())
    except DuckDBBusyError as exc:
        raise self.retry(exc=exc, countdown=_busy_countdown(self.request.retries)) from exc
    logger.info("model %s flagged by run %s (%s)", model, run_id, verdict)
    return {"model": model, "run_id": run_id, "verdict": verdict}


@app.task(bind=True, name=UNFLAG_MODEL, max_retries=config.drift.busy_max_retries,
          soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def unflag_model_task(self: Task, model: str) -> dict[str, Any]:
    """Clear ``model``'s flag in ``model_metadata`` (``stat-guard unflag``), on the drift
    worker like every DuckDB write. Status ``unflagged``, ``not_flagged`` or
    ``unknown_model`` (answered, not raised: the caller reports it)."""
    try:
        was_flagged = unflag_model(config.duckdb.path, model, config=config.drift_run_config())
    except ModelNotFoundError:
        return {"model": model, "status": "unknown_model"}
    except DuckDBBusyError as exc:
        raise self.retry(exc=exc, countdown=_busy_countdown(self.request.retries)) from exc
    logger.info("model %s %s", model, "unflagged" if was_flagged else "was not flagged")
    return {"model": model, "status": "unflagged" if was_flagged else "not_flagged"}


def _release(lock: ModelLock) -> None:
    try:
        if not lock.release():
            logger.warning("drift run %s: its lock had expired", lock.run_id)
    except redis.RedisError as exc:  # it expires by itself; the result matters more
        logger.warning("drift run %s: could not release its lock: %s", lock.run_id, exc)


def _busy_countdown(retries: int) -> float:
    """Exponential backoff with jitter: base · 2^retries, at most the configured cap."""
    ceiling = min(config.drift.busy_retry_max_s, config.drift.busy_retry_base_s * 2 ** retries)
    return ceiling * random.uniform(0.75, 1.0)
