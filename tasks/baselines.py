"""Baseline refresh for the PostgreSQL extension: ``capture_baseline(...)`` for each source
configured under ``baselines.sources``, so on-demand analyses compare with a fresh window.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from workers.celery_app import app, config
from workers.config import BaselineSource
from workers.postgres import discard_connection, pg_connection
from workers.routing import REFRESH_BASELINES

logger = logging.getLogger(__name__)


def capture(source: BaselineSource, statement_timeout_ms: int) -> int:
    """Store the digests of ``[now() - lookback, now() - end_offset)`` for one source;
    returns the number of columns stored."""
    conn = pg_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', %s, false)",
                        (str(statement_timeout_ms),))
            cur.execute(
                "SELECT capture_baseline(%s::regclass, %s::name, %s::name[], "
                "now() - %s::interval, now() - %s::interval, %s::integer, %s::name[])",
                (source.source, source.time_column, list(source.value_columns),
                 source.lookback, source.end_offset, source.compression,
                 list(source.category_columns)))
            return int(cur.fetchone()[0])
    except psycopg.OperationalError:
        discard_connection()
        raise


# A long task (a capture scans a whole window): it runs on the drift queue, never in the
# way of on-demand analyses.
@app.task(name=REFRESH_BASELINES, soft_time_limit=config.limits.drift_soft_time_limit_s,
          time_limit=config.limits.drift_time_limit_s)
def refresh_baselines() -> dict[str, Any]:
    """Capture every configured baseline; a failing source is reported, the rest go on."""
    sources = config.baselines.sources
    if not sources:
        logger.info("no baseline sources configured: nothing to refresh")
        return {"status": "skipped", "captured": {}, "failed": {}}
    captured: dict[str, int] = {}
    failed: dict[str, str] = {}
    for source in sources:
        try:
            captured[source.source] = capture(source, config.baselines.statement_timeout_ms)
        except psycopg.Error as exc:
            failed[source.source] = f"{getattr(exc, 'sqlstate', '') or ''} {exc}".strip()
            logger.error("baseline of %s not refreshed: %s", source.source, exc)
    logger.info("baselines refreshed: %s", captured)
    return {"status": "failed" if failed else "ok", "captured": captured, "failed": failed}
