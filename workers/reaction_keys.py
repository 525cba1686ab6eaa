"""Redis keys the reaction task writes and the metrics exporter reads: one counter per kind
of reaction (``<prefix>:reactions:<kind>``) and the newest record per model of each source
(the hash ``<prefix>:latest:<source>``, read by the exporter and ``stat-guard status``).
docs/fleet.md lists the kinds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from stat_guard.result_record import SOURCES, ResultRecord
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


def latest_documents(client: redis.Redis, redis_config: RedisConfig, source: str,
                     skip: Callable[[Any], bool] = lambda _model: False
                     ) -> list[tuple[Any, Any]]:
    """(model, JSON document) of each model in the ``latest:<source>`` hash, as the client
    returns them (bytes or str), without the models ``skip`` says are known already."""
    hash_key = latest_key(redis_config, source)
    models = [model for model in client.hkeys(hash_key) if not skip(model)]
    if not models:
        return []
    return [(model, document) for model, document
            in zip(models, client.hmget(hash_key, models), strict=True)
            if document is not None]


def latest_records(client: redis.Redis, redis_config: RedisConfig,
                   skip: Callable[[Any, str], bool] = lambda _model, _source: False,
                   parse: Callable[[dict[str, Any]], ResultRecord | None]
                   = ResultRecord.from_fields) -> list[ResultRecord]:
    """The newest record of every (model, source) the reactions kept, by model and source,
    without the (model as the client returns it, source) pairs ``skip`` says are known
    already; a document that is not a JSON object, or that ``parse`` turns into None, is
    left out."""
    records = []
    for source in SOURCES:
        for _model, document in latest_documents(
                client, redis_config, source,
                skip=lambda model, source=source: skip(model, source)):
            try:
                fields = json.loads(document)
            except ValueError:
                continue
            record = parse(fields) if isinstance(fields, dict) else None
            if record is not None:
                records.append(record)
    return sorted(records, key=lambda record: (record.model, record.source))
