"""Redis keys the reaction task writes and the metrics exporter reads: one counter per kind
of reaction (``<prefix>:reactions:<kind>``) and the newest record per model of each source
(the hash ``<prefix>:latest:<source>``). docs/fleet.md lists the kinds."""

from __future__ import annotations

from workers.config import RedisConfig

ALERT = "alert"  # a drift alert was sent (or logged, with no webhook configured)
FLAG = "flag"  # a model's flag in model_metadata was asked for (stat_guard.flag_model)
WARNING = "warning"  # a warning was recorded
NONE = "none"  # ok / insufficient data: nothing to do
ERROR = "error"  # the run could not score any feature (engine verdict "error"): logged
DUPLICATE = "duplicate"  # a run id already reacted to: acknowledged only
FAILED = "failed"  # an attempt failed; the entry stays pending and is retried
GIVEN_UP = "given_up"  # failed max_deliveries times: acknowledged without reacting
# A poison entry (not UTF-8, no run id or verdict, an unknown verdict, too large): parked in
# the dead-letter stream and acknowledged.
DEAD_LETTER = "dead_letter"
COUNTER_KINDS = (ALERT, FLAG, WARNING, NONE, ERROR, DUPLICATE, FAILED, GIVEN_UP, DEAD_LETTER)


def counter_key(redis_config: RedisConfig, kind: str) -> str:
    return redis_config.key("reactions", kind)


def latest_key(redis_config: RedisConfig, source: str) -> str:
    return redis_config.key("latest", source)
