"""The scheduled drift tasks: enumerate the production models and run them on the
low-priority ``drift`` queue, the models of one feature table together in one batch task
(they share its scans), a model alone in its own task; flag and unflag models. The engine
(``stat_guard.scheduled``) does the work.

A run takes the model's Redis lock, lets the engine read DuckDB, compute and write its
scores (idempotent by run id), then publishes the result to the stream once per run id.
A batch does the same for each of its models, over one engine call.
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
    ModelDriftResult,
    ModelNotFoundError,
    ensure_schema,
    flag_model,
    production_model_groups,
    run_model_drift,
    run_models_drift,
    unflag_model,
)
from stat_guard.scheduled.results import unscored_record
from workers.celery_app import app, config
from workers.displays import with_display
from workers.locks import ModelLock
from workers.redis_client import redis_client
from workers.routing import (
    FLAG_MODEL,
    RUN_DRIFT_BATCH,
    RUN_MODEL_DRIFT,
    SCHEDULE_DRIFT_RUNS,
    UNFLAG_MODEL,
)
from workers.stream import Published, already_published, preview, publish_once

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
    """Enqueue the drift runs of every production model for the slot ``now`` falls in;
    returns the run ids. The models of one feature table (same time column and key) go
    in one ``run_drift_batch_task``, at most ``drift.batch_max_models`` a task; a model
    alone on its table in a ``run_model_drift_task``. Reads DuckDB, so it runs where
    DuckDB is opened: in the drift worker."""
    db_path = config.duckdb.path
    slot = schedule_slot(now or datetime.now(UTC), config.schedule.drift_interval_s)
    try:
        _schema_ready(db_path)
    except DuckDBFileMissingError as exc:
        logger.error("slot %s: no drift runs enqueued: %s", slot.isoformat(), exc)
        raise
    run_ids = []
    batches = 0
    groups = production_model_groups(db_path, config.drift_run_config(),
                                     max_models=config.drift.batch_max_models)
    for group in groups:
        runs = [[model, drift_run_id(model, slot)] for model in group]
        # Not started within one interval: the next slot's runs supersede them.
        if len(runs) == 1:
            run_model_drift_task.apply_async(args=tuple(runs[0]),
                                              expires=config.schedule.drift_interval_s)
        else:
            run_drift_batch_task.apply_async(args=(runs,),
                                              expires=config.schedule.drift_interval_s)
            batches += 1
        run_ids += [run_id for _, run_id in runs]
    if run_ids:
        logger.info("slot %s: enqueued %d drift runs in %d tasks (%d batches)",
                    slot.isoformat(), len(run_ids), len(groups), batches)
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


def _publish_failure(model: str, run_id: str, exc: BaseException) -> None:
    """The error record of a run whose task failed for good, unless its run id was
    published already."""
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
        _publish_failure(model, run_id, exc)


class DriftBatchTask(Task):
    """A batch that fails for good publishes the error record of each of its runs that
    has none, except the runs it sent on to tasks of their own (their model was locked):
    those publish their own records."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        runs = kwargs.get("runs") or (args[0] if len(args) > 0 else [])
        sent_on = getattr(self.request, "drift_sent_on", None) or set()
        for model, run_id in runs:
            if model and run_id and run_id not in sent_on:
                _publish_failure(model, run_id, exc)


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
    _log_takeover(lock)

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
        outcome: ModelDriftResult | Exception
        try:
            outcome = run_model_drift(config.duckdb.path, model, run_id,
                                      config=config.drift_run_config())
        except DuckDBBusyError as exc:
            if busy_retries < config.drift.busy_max_retries:
                raise retry_later(exc, "DuckDB busy") from exc
            outcome = exc
        except Exception as exc:  # anything else: the model is reported, never silent
            outcome = exc
        record = _run_record(client, model, run_id, started_at, outcome, busy_retries)
        if record is None:  # removed since it was enqueued: nothing to do
            return {"status": "skipped_unknown_model", "run_id": run_id}
        # DuckDB holds the scores now (or the run failed); the stream entry follows, once
        # per run id.
        try:
            published = publish_once(client, config.redis, config.stream, record)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise retry_later(exc, "Redis unreachable for the publish") from exc
    finally:
        _release(lock)
    return _published(model, run_id, record, published)


@app.task(bind=True, base=DriftBatchTask, name=RUN_DRIFT_BATCH, max_retries=None,
          soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def run_drift_batch_task(self: Task, runs: list[list[str]],
                         busy_retries: int = 0) -> dict[str, Any]:
    """The drift runs of several models of one feature table (``runs``: ``[model, run id]``
    pairs) in one engine call, so they share its scans; the batch has one drift time
    limit (``drift.batch_max_models`` bounds its size).

    Each run keeps the guarantees of ``run_model_drift_task``: a run id already published
    answers ``already_published``; the model's lock is taken before the engine runs, and a
    model locked by another run is sent on to a ``run_model_drift_task`` of its own (which
    waits for the lock) and left out of the batch; every result is published like a
    single run's. DuckDB busy retries the batch (its runs not yet published) as a single
    run retries; every lock taken is released at the end.
    """
    client = redis_client()
    pairs = [(str(model), str(run_id)) for model, run_id in runs]
    answers: dict[str, dict[str, Any]] = {}
    sent_on: set[str] = set()
    self.request.drift_sent_on = sent_on  # for on_failure
    locks: list[ModelLock] = []
    batch: list[tuple[str, str]] = []
    try:
        for model, run_id in pairs:
            previous = already_published(client, config.redis, run_id)
            if previous:
                answers[run_id] = {"status": "already_published", "run_id": run_id,
                                   "entry_id": previous}
                continue
            lock = ModelLock(client, model_lock_key(model), run_id,
                             config.limits.model_lock_ttl_s)
            if not lock.acquire():
                holder = lock.holder()
                logger.info("drift run %s sent on alone: model %s is locked by run %s",
                            run_id, model, holder.run_id if holder else "(just released)")
                sent_on.add(run_id)
                run_model_drift_task.apply_async(args=(model, run_id),
                                                  expires=config.schedule.drift_interval_s)
                answers[run_id] = {"status": "sent_alone", "run_id": run_id, "model": model}
                continue
            locks.append(lock)
            _log_takeover(lock)
            previous = already_published(client, config.redis, run_id)
            if previous:
                answers[run_id] = {"status": "already_published", "run_id": run_id,
                                   "entry_id": previous}
                continue
            batch.append((model, run_id))
        if batch:
            _run_batch(self, client, batch, busy_retries, answers)
    finally:
        for lock in locks:
            _release(lock)
    return {"status": "done", "runs": [answers[run_id] for _, run_id in pairs]}


def _run_batch(task: Task, client: redis.Redis, batch: list[tuple[str, str]],
               busy_retries: int, answers: dict[str, dict[str, Any]]) -> None:
    """The engine over the locked runs, then each run's record published."""

    def retry_later(exc: Exception, what: str, runs: list[tuple[str, str]]) -> Exception:
        if busy_retries >= config.drift.busy_max_retries:
            return exc
        countdown = _busy_countdown(busy_retries)
        logger.warning("drift batch of %d runs (%s, …): %s, retrying in %.1f s", len(runs),
                       runs[0][1], what, countdown)
        return task.retry(exc=exc, countdown=countdown,
                          args=([list(run) for run in runs],),
                          kwargs={"busy_retries": busy_retries + 1})

    started_at = datetime.now(UTC)
    if config.testing.drift_delay_s:
        time.sleep(config.testing.drift_delay_s)
    outcomes: list[ModelDriftResult | Exception]
    try:
        outcomes = run_models_drift(config.duckdb.path, batch,
                                    config=config.drift_run_config())
    except DuckDBBusyError as exc:
        if busy_retries < config.drift.busy_max_retries:
            raise retry_later(exc, "DuckDB busy", batch) from exc
        outcomes = [exc] * len(batch)
    except Exception as exc:  # every run of the batch is reported, never silent
        outcomes = [exc] * len(batch)
    for position, ((model, run_id), outcome) in enumerate(zip(batch, outcomes, strict=True)):
        record = _run_record(client, model, run_id, started_at, outcome, busy_retries)
        if record is None:
            answers[run_id] = {"status": "skipped_unknown_model", "run_id": run_id}
            continue
        try:
            published = publish_once(client, config.redis, config.stream, record)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise retry_later(exc, "Redis unreachable for the publish",
                              batch[position:]) from exc
        answers[run_id] = _published(model, run_id, record, published)


def _log_takeover(lock: ModelLock) -> None:
    if lock.taken_over is not None:
        logger.warning("drift run %s took over its own lock from a dead run (%s)",
                       lock.run_id, lock.taken_over.process or "process unknown")


def _run_record(client: redis.Redis, model: str, run_id: str, started_at: datetime,
                outcome: ModelDriftResult | Exception, busy_retries: int
                ) -> ResultRecord | None:
    """The stream record of what the engine answered for one run: its result (with the
    display summaries stored) or the error record of the exception it raised; None for a
    model removed from ``model_metadata`` since the run was enqueued."""
    if isinstance(outcome, ModelNotFoundError):
        logger.warning("drift run %s skipped: %s", run_id, outcome)
        return None
    if isinstance(outcome, DuckDBBusyError):
        return _failed(run_id, model, started_at, f"DuckDB file stayed locked through "
                       f"{busy_retries} retries: {outcome}")
    if isinstance(outcome, DuckDBFileMissingError):
        return _failed(run_id, model, started_at, str(outcome))
    try:
        if isinstance(outcome, Exception):
            raise outcome
        return with_display(client, config.redis, outcome.stream_record(),
                            outcome.run_display, config.display.ttl_s)
    except Exception as exc:
        logger.exception("drift run %s of %s failed", run_id, model)
        return _failed(run_id, model, started_at, f"{type(exc).__name__}: {exc}")


def _published(model: str, run_id: str, record: ResultRecord,
               published: Published) -> dict[str, Any]:
    """Log a published run and give the task's answer for it."""
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
