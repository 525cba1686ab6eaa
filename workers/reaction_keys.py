"""Redis keys the reaction task writes and the metrics exporter reads: one counter per kind
of reaction (``<prefix>:reactions:<kind>``) and the newest record per model of each source
(the hash ``<prefix>:latest:<source>``). docs/fleet.md lists the kinds."""

from __future__ import annotations

from workers.config import RedisConfig

# An alert was sent (or logged, with no webhook configured): a model entered drift
# (StatGuardDrift) or its runs started failing (StatGuardRunFailed).
ALERT = "alert"
REMINDER = "reminder"  # still in drift (or failing) reactions.remind_after_s later: reminded
RESOLVED = "resolved"  # back to ok (or to a run that did not fail): resolved sent
SUPPRESSED = "suppressed"  # another drift (or error) run of an open alert: nothing sent
OUT_OF_ORDER = "out_of_order"  # older than the model's newest run seen: state left alone
FLAG = "flag"  # a model's flag in model_metadata was asked for (stat_guard.flag_model)
WARNING = "warning"  # a warning was recorded
NONE = "none"  # ok / insufficient data: nothing to do
ERROR = "error"  # the run could not score any feature (verdict "error"): alert cycle
DUPLICATE = "duplicate"  # a run id already reacted to: acknowledged only
FAILED = "failed"  # an attempt failed; the entry stays pending and is retried
GIVEN_UP = "given_up"  # failed max_deliveries times: acknowledged without reacting
# A poison entry (not UTF-8, no run id or verdict, an unknown verdict, too large): parked in
# the dead-letter stream and acknowledged.
DEAD_LETTER = "dead_letter"
COUNTER_KINDS = (ALERT, REMINDER, RESOLVED, SUPPRESSED, OUT_OF_ORDER, FLAG, WARNING, NONE,
                 ERROR, DUPLICATE, FAILED, GIVEN_UP, DEAD_LETTER)


def counter_key(redis_config: RedisConfig, kind: str) -> str:
    return redis_config.key("reactions", kind)


def latest_key(redis_config: RedisConfig, source: str) -> str:
    return redis_config.key("latest", source)
