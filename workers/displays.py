"""Where a result's display summaries live: one Redis key per run id, gzip-compressed
JSON (``stat_guard.display.encode_run``), expiring after ``display.ttl_s``. The Stream
record names the key (``display_key``); the pages and ``stat-guard report`` read it back
with :func:`load_display`, never the DuckDB file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import redis
from redis.client import NEVER_DECODE

from stat_guard.display import DisplayError, RunDisplay, decode_run, encode_run
from stat_guard.result_record import ResultRecord
from workers.config import RedisConfig

logger = logging.getLogger(__name__)


def display_key(redis_config: RedisConfig, run_id: str) -> str:
    return redis_config.key("display", run_id)


def store_display(client: redis.Redis, redis_config: RedisConfig, run: RunDisplay,
                  ttl_s: int) -> str:
    """Store a run's summaries (replacing an earlier copy of the same run id); its key."""
    key = display_key(redis_config, run.run_id)
    client.set(key, encode_run(run), ex=max(1, int(ttl_s)))
    return key


def with_display(client: redis.Redis, redis_config: RedisConfig, record: ResultRecord,
                 build: Callable[[], RunDisplay | None], ttl_s: int) -> ResultRecord:
    """``record`` naming its stored display summaries (``display_key``).

    ``build`` makes the summaries; whatever goes wrong building or storing them (Redis
    unreachable, a summary out of bounds, a bug) is logged as a warning and the record is
    returned without ``display_key``: a display never costs a result record.
    """
    try:
        run = build()
        if run is None:
            return record
        key = store_display(client, redis_config, run, ttl_s)
    except Exception as exc:  # the record is published whatever happens
        logger.warning("result %s of %s: display summaries not stored (%s: %s); the record "
                       "is published without them", record.run_id, record.model,
                       type(exc).__name__, str(exc)[:300])
        return record
    return dataclasses.replace(record, display_key=key)


def load_display(client: redis.Redis, key: str) -> RunDisplay | None:
    """The summaries under ``key``; None when expired or missing. DisplayError when the
    value is not a valid summary."""
    if not key:
        return None
    # The fleet's clients decode replies as text; the summary is gzip bytes.
    data = client.execute_command("GET", key, **{NEVER_DECODE: True})
    return None if data is None else decode_run(data)


__all__ = ["DisplayError", "display_key", "load_display", "store_display",
           "with_display"]
