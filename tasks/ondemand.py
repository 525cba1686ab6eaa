"""On-demand analysis: run ``perform_drift_analysis`` in PostgreSQL and publish its verdict
to the result stream (source ``ondemand``), on the ``ondemand`` queue.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from celery import Task

from stat_guard.display import MAX_FEATURES, VERDICTS, DisplayError, FeatureDisplay, RunDisplay
from stat_guard.result_record import (
    ONDEMAND,
    FeatureFigures,
    OnDemandDetails,
    ResultRecord,
)
from stat_guard.verdict import model_verdict
from workers.celery_app import app, config
from workers.displays import with_display
from workers.postgres import discard_connection, pg_connection
from workers.redis_client import redis_client
from workers.routing import RUN_ONDEMAND_ANALYSIS
from workers.stream import already_published, publish_once

logger = logging.getLogger(__name__)

# Worth another try a little later: the extension is busy, the call timed out or the
# function could not be reached. Anything else (permissions, bad columns) will not heal.
_RETRYABLE_SQLSTATES = {"53400", "57014"}


class AnalysisUnavailable(RuntimeError):
    """The function answered without a verdict (``on_unavailable = json``)."""


def analyse(window: str, source: str | None = None, time_column: str | None = None,
            value_columns: Sequence[str] | None = None,
            statement_timeout_ms: int | None = None,
            category_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """``SELECT perform_drift_analysis(...)`` on this process's connection; the verdict.

    Without ``source`` the short form uses the extension's configured source.
    ``category_columns`` names the integer value columns to analyse as categories (the
    five-argument form); text, boolean and enum columns are categorical anyway.
    """
    timeout = statement_timeout_ms or config.ondemand.statement_timeout_ms
    conn = pg_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, false)", (str(timeout),))
            if source:
                if not time_column or not value_columns:
                    raise ValueError("a source needs time_column and value_columns")
                if category_columns:
                    cur.execute("SELECT perform_drift_analysis(%s::interval, %s::regclass, "
                                "%s::name, %s::name[], %s::name[])",
                                (window, source, time_column, list(value_columns),
                                 list(category_columns)))
                else:
                    cur.execute("SELECT perform_drift_analysis(%s::interval, %s::regclass, "
                                "%s::name, %s::name[])",
                                (window, source, time_column, list(value_columns)))
            else:
                if category_columns:
                    raise ValueError("category_columns needs a source (or set "
                                     "pg_stat_guard.category_columns)")
                cur.execute("SELECT perform_drift_analysis(%s::interval)", (window,))
            row = cur.fetchone()
    except psycopg.OperationalError:
        discard_connection()
        raise
    verdict = row[0] if row else None
    if isinstance(verdict, str):
        verdict = json.loads(verdict)
    if not isinstance(verdict, dict) or verdict.get("status") != "ok":
        raise AnalysisUnavailable(f"no verdict: {str(verdict)[:300]}")
    return verdict


def ondemand_record(verdict: dict[str, Any], model: str, started_at: datetime,
                    finished_at: datetime) -> ResultRecord:
    """The stream record of an analysis; the drift score by the model-level rule."""
    columns = verdict.get("columns") or {}
    features = {name: FeatureFigures.from_verdict_column(column)
                for name, column in columns.items() if isinstance(column, dict)}
    overall = model_verdict((f.verdict, f.psi) for f in features.values())
    analysis = verdict.get("analysis") or {}
    rows = analysis.get("rows")
    return ResultRecord(
        run_id=str(verdict["request_id"]), model=model, source=ONDEMAND,
        verdict=str(verdict.get("verdict", "insufficient_data")),
        drift_score=overall.drift_score, features=features, started_at=started_at,
        finished_at=finished_at, duration_s=(finished_at - started_at).total_seconds(),
        details=OnDemandDetails(table=str(analysis.get("source", "")),
                                window_start=str(analysis.get("window_start", "")),
                                window_end=str(analysis.get("window_end", "")),
                                rows=int(rows) if isinstance(rows, int | float) else None))


def ondemand_display(verdict: dict[str, Any], record: ResultRecord) -> RunDisplay | None:
    """The analysis's display summaries, from the columns' ``display`` objects (the verdict
    service's, docs/wire-format.md §4). Each is validated (``FeatureDisplay.from_json``)
    and named after its column; a malformed one is left out with a warning, as are the
    columns the service left without one (``display_omitted``). None when no column has
    one (an older verdict service)."""
    columns = verdict.get("columns") or {}
    features = []
    for name, column in columns.items() if isinstance(columns, dict) else ():
        if not isinstance(column, dict) or "display" not in column:
            continue
        try:
            document = column["display"]
            if isinstance(document, dict):
                document = {**document, "name": str(name)[:100]}
            features.append(FeatureDisplay.from_json(document))
        except DisplayError as exc:
            logger.warning("on-demand analysis %s: display of column %r left out: %s",
                           record.run_id, str(name)[:100], exc)
        if len(features) >= MAX_FEATURES:
            break
    if verdict.get("display_omitted"):
        logger.info("on-demand analysis %s: the verdict service left %d of %d columns "
                    "without a display (its byte budget)", record.run_id,
                    len(columns) - len(features), len(columns))
    if not features:  # a verdict service without displays: no key in the record
        return None
    return RunDisplay(
        run_id=record.run_id, model=record.model, source=ONDEMAND, trigger=ONDEMAND,
        verdict=record.verdict if record.verdict in VERDICTS else "error",
        drift_score=record.drift_score,
        finished_at=record.finished_at.isoformat() if record.finished_at else "",
        features=tuple(features))


@app.task(bind=True, name=RUN_ONDEMAND_ANALYSIS, max_retries=None,
          soft_time_limit=config.limits.ondemand_soft_time_limit_s,
          time_limit=config.limits.ondemand_time_limit_s)
def run_ondemand_analysis(self: Task, window: str | None = None, source: str | None = None,
                          time_column: str | None = None,
                          value_columns: list[str] | None = None,
                          model: str | None = None,
                          category_columns: list[str] | None = None) -> dict[str, Any]:
    """Analyse the window in PostgreSQL and publish the verdict to the stream once."""
    settings = config.ondemand
    client = redis_client()
    # A redelivered task whose verdict is already on the stream does not ask again.
    dedupe_key = f"ondemand-task:{self.request.id}"
    previous = already_published(client, config.redis, dedupe_key)
    if previous:
        return {"status": "already_published", "entry_id": previous}
    window = window or settings.window
    source = source or settings.source or None
    time_column = time_column or settings.time_column or None
    value_columns = list(value_columns or settings.value_columns) or None
    category_columns = list(category_columns or settings.category_columns) or None
    started_at = datetime.now(UTC)
    began = time.perf_counter()
    try:
        verdict = analyse(window, source, time_column, value_columns,
                          category_columns=category_columns)
    except (psycopg.Error, AnalysisUnavailable) as exc:
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if (isinstance(exc, AnalysisUnavailable | psycopg.OperationalError)
                or sqlstate in _RETRYABLE_SQLSTATES or sqlstate.startswith("08")):
            logger.warning("on-demand analysis of %s not done (%s): retrying",
                           source or "the configured source", exc)
            raise self.retry(exc=exc, countdown=settings.busy_retry_s,
                             max_retries=settings.busy_max_retries) from exc
        raise
    finished_at = datetime.now(UTC)
    analysis_ms = (time.perf_counter() - began) * 1e3
    table = (verdict.get("analysis") or {}).get("source") or source or ""
    record = ondemand_record(verdict, model or settings.model or table, started_at,
                             finished_at)
    record = with_display(client, config.redis, record,
                          lambda: ondemand_display(verdict, record), config.display.ttl_s)
    published = publish_once(client, config.redis, config.stream, record,
                             dedupe_key=dedupe_key)
    logger.info("on-demand analysis %s of %s: %s in %.1f ms (entry %s)", record.run_id,
                record.model, record.verdict, analysis_ms, published.entry_id)
    return {"status": "published", "run_id": record.run_id, "model": record.model,
            "verdict": record.verdict, "entry_id": published.entry_id,
            "analysis_ms": round(analysis_ms, 3)}
