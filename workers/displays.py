"""Where a result's display summaries live: one Redis key per run id, gzip-compressed
JSON (``stat_guard.display.encode_run``), expiring after ``display.ttl_s``. The Stream
record names the key (``display_key``); the pages and ``stat-guard report`` read it back
with :func:`load_display`, never the DuckDB file.
"""

from __future__ import annotations

import redis
from redis.client import NEVER_DECODE

from stat_guard.display import DisplayError, RunDisplay, decode_run, encode_run
from workers.config import RedisConfig


def display_key(redis_config: RedisConfig, run_id: str) -> str:
    return redis_config.key("display", run_id)


def store_display(client: redis.Redis, redis_config: RedisConfig, run: RunDisplay,
                  ttl_s: int) -> str:
    """Store a run's summaries (replacing an earlier copy of the same run id); its key."""
    key = display_key(redis_config, run.run_id)
    client.set(key, encode_run(run), ex=max(1, int(ttl_s)))
    return key


def load_display(client: redis.Redis, key: str) -> RunDisplay | None:
    """The summaries under ``key``; None when expired or missing. DisplayError when the
    value is not a valid summary."""
    if not key:
        return None
    # The fleet's clients decode replies as text; the summary is gzip bytes.
    data = client.execute_command("GET", key, **{NEVER_DECODE: True})
    return None if data is None else decode_run(data)


__all__ = ["DisplayError", "display_key", "load_display", "store_display"]
