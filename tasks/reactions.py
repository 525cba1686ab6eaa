"""Reactions to results on the stream: drift → the model flagged in DuckDB; warning →
recorded in a capped list; drift and error results → the alert cycle (workers/alert_state.py):
one alert when a model enters drift or starts failing, a reminder while it stays so, one
resolved when it is back. Every reaction is logged and counted in Redis
(``stat_guard:reactions:<kind>``, workers/reaction_keys.py), once per run id.

Delivery is at least once, so each run id is claimed with a short lease before acting and
marked done afterwards; a second delivery of a done run id is only acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from stat_guard.result_record import (
    ONDEMAND,
    RECORD_VERDICTS,
    SCHEDULED,
    ResultRecord,
    number_text,
    run_trigger,
)
from stat_guard.verdict import ERROR as UNSCORED
from stat_guard.verdict import Verdict
from workers import alert_state, reaction_keys
from workers.celery_app import app, config
from workers.pages.urls import model_path, run_path
from workers.reaction_keys import (
    ALERT,
    DEAD_LETTER,
    DUPLICATE,
    ERROR,
    FAILED,
    FLAG,
    GIVEN_UP,
    NONE,
    OUT_OF_ORDER,
    REMINDER,
    RESOLVED,
    SUPPRESSED,
    WARNING,
)
from workers.redis_client import redis_client
from workers.routing import CONSUME_REACTIONS, FLAG_MODEL
from workers.stream import MAX_ENTRY_BYTES, MAX_NAME_CHARS, StreamConsumer, StreamEntry, preview

logger = logging.getLogger(__name__)

# Mark a run id done and count what was done, atomically: the counters never count a run
# twice, even when two consumers race on a redelivered entry.
_FINISH = """
local previous = redis.call('GET', KEYS[1])
if previous == 'done' then return 0 end
redis.call('SET', KEYS[1], 'done', 'EX', ARGV[1])
for i = 2, #KEYS do redis.call('INCR', KEYS[i]) end
return 1
"""


def counter_key(kind: str) -> str:
    return reaction_keys.counter_key(config.redis, kind)


def marker_key(run_id: str) -> str:
    return config.redis.key("reacted", run_id)


def warnings_key() -> str:
    return config.redis.key("warnings")


def latest_key(source: str) -> str:
    return reaction_keys.latest_key(config.redis, source)


@dataclass
class DrainSummary:
    """What one reaction task did."""

    consumer: str
    reclaimed: int = 0
    read: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@app.task(name=CONSUME_REACTIONS, soft_time_limit=config.limits.reactions_soft_time_limit_s,
          time_limit=config.limits.reactions_time_limit_s)
def consume_reactions() -> dict[str, Any]:
    """Beat's frequent entry: reclaim stale entries, then drain new ones, within a budget."""
    summary = drain(redis_client(), consumer_name())
    if summary.reclaimed or summary.read:
        logger.info("reactions: reclaimed %d, read %d: %s", summary.reclaimed, summary.read,
                    summary.counts)
    return {"consumer": summary.consumer, "reclaimed": summary.reclaimed,
            "read": summary.read, "counts": summary.counts}


def drain(client: redis.Redis, name: str, time_budget_s: float | None = None) -> DrainSummary:
    """Act on every entry this consumer can get now: first those other consumers left
    pending past ``stream.claim_idle_s`` (XAUTOCLAIM), then new ones (XREADGROUP)."""
    stream = config.stream
    consumer = StreamConsumer(client, stream, name)
    summary = DrainSummary(consumer=name)
    consumer.ensure_group()
    deadline = time.monotonic() + (time_budget_s or stream.drain_time_budget_s)
    stale = consumer.claim_stale(limit=stream.batch_size * 10)
    summary.reclaimed = len(stale)
    for entry in stale:
        _handle(client, consumer, entry, summary)
    while time.monotonic() < deadline:
        entries = consumer.read_new(stream.batch_size)
        if not entries:
            break
        summary.read += len(entries)
        for entry in entries:
            _handle(client, consumer, entry, summary)
    consumer.prune_idle_consumers(idle_s=max(3600.0, stream.claim_idle_s * 4))
    return summary


def poison_reason(entry: StreamEntry) -> tuple[ResultRecord | None, str | None]:
    """The entry's record, or why it is a poison entry that no reaction can use."""
    if entry.problem:
        return None, entry.problem
    if entry.size > MAX_ENTRY_BYTES:
        return None, f"entry of {entry.size} bytes exceeds the bound of {MAX_ENTRY_BYTES}"
    kept = len(kept_document(entry.fields))
    if kept > MAX_ENTRY_BYTES:  # escaping can make the kept JSON larger than the entry
        return None, (f"entry of {kept} characters as JSON exceeds the bound of "
                      f"{MAX_ENTRY_BYTES}")
    try:
        record = ResultRecord.from_fields(entry.fields)
    except Exception as exc:  # from_fields is lenient; anything else is still poison
        return None, f"unreadable record: {type(exc).__name__}: {exc}"
    if not record.run_id:
        return None, "no run id"
    if len(record.run_id) > MAX_NAME_CHARS or len(record.model) > MAX_NAME_CHARS:
        return None, f"run id or model longer than {MAX_NAME_CHARS} characters"
    if not record.verdict:
        return None, "no verdict"
    if record.verdict not in RECORD_VERDICTS:
        return None, f"unknown verdict {record.verdict[:100]!r}"
    return record, None


def _handle(client: redis.Redis, consumer: StreamConsumer, entry: StreamEntry,
            summary: DrainSummary) -> None:
    record, reason = poison_reason(entry)
    if record is None:
        consumer.park(entry, reason or "unreadable", counter_key(DEAD_LETTER))
        summary.add(DEAD_LETTER)
        return
    run_id, verdict = record.run_id, record.verdict
    marker = marker_key(run_id)
    state = client.get(marker)
    if state == "done":
        _count(client, DUPLICATE, summary)
        consumer.ack(entry.entry_id)
        return
    if config.testing.reaction_delay_s:
        time.sleep(config.testing.reaction_delay_s)
    # The lease keeps a second consumer off this run id while we act; if we die, it expires
    # about when the entry becomes reclaimable.
    lease = f"acting:{consumer.name}"
    if not client.set(marker, lease, nx=True, ex=max(1, int(config.stream.claim_idle_s))):
        state = client.get(marker)
        if state == "done":
            _count(client, DUPLICATE, summary)
            consumer.ack(entry.entry_id)
            return
        if state != lease:
            logger.info("run %s is being handled by %s; left pending", run_id, state)
            return
    try:
        kinds = react(client, record, entry.fields)
    except Exception as exc:  # any failure: keep the entry pending, try again later
        client.delete(marker)
        deliveries = consumer.deliveries(entry.entry_id)
        if deliveries >= config.stream.max_deliveries:
            logger.error("reaction to run %s failed %d times; giving up: %s", run_id,
                         deliveries, exc)
            _count(client, GIVEN_UP, summary)
            consumer.ack(entry.entry_id)
        else:
            logger.warning("reaction to run %s failed (delivery %d): %s", run_id,
                           deliveries, exc)
            _count(client, FAILED, summary)
        return
    finished = client.eval(_FINISH, 1 + len(kinds), marker,
                           *(counter_key(kind) for kind in kinds),
                           int(config.reactions.marker_ttl_s))
    for kind in kinds:
        summary.add(kind if finished else DUPLICATE)
    consumer.ack(entry.entry_id)
    logger.info("reacted to run %s (%s %s, %s): %s", run_id, record.source, record.model,
                verdict, ", ".join(kinds))


def react(client: redis.Redis, record: ResultRecord, fields: Mapping[str, str]) -> list[str]:
    """Apply the reaction policy to one record (``fields``: as it came off the stream, kept
    as it is for the exporter and the warning list); the kinds of reaction done.

    The alert cycle (workers/alert_state.py) decides first, once per run id, so a retried
    entry sends what the first attempt meant to send."""
    verdict = record.verdict
    source = record.source
    settings = config.reactions
    decision = alert_state.decide(
        client, config.redis, model=record.model, source=source or "unknown",
        run_id=record.run_id, verdict=verdict, run_at=run_time(record), now=time.time(),
        remind_after_s=settings.remind_after_s, state_ttl_s=settings.state_ttl_s,
        decision_ttl_s=settings.marker_ttl_s)
    if alert_state.OUT_OF_ORDER in decision.actions:
        logger.warning("run %s of %s %s (%s) is older than the newest run seen; the alert "
                       "state is left as it is", record.run_id, source, record.model, verdict)
        return [OUT_OF_ORDER]
    document = kept_document(fields)
    client.hset(latest_key(source or "unknown"), record.model, document)
    kinds = []
    if verdict == Verdict.DRIFT and (source == SCHEDULED or settings.flag_ondemand):
        # Flag first: it is idempotent per run id, an alert is not. The flag itself is
        # written by the drift worker (DuckDB's one writer), never here.
        app.send_task(FLAG_MODEL, args=(record.model, record.run_id, verdict))
        kinds.append(FLAG)
    if verdict == Verdict.WARNING:
        with client.pipeline(transaction=True) as pipe:
            pipe.lpush(warnings_key(), document)
            pipe.ltrim(warnings_key(), 0, settings.warnings_maxlen - 1)
            pipe.execute()
        logger.warning("drift warning for %s %s (run %s, score %s)", source, record.model,
                       record.run_id, number_text(record.drift_score))
        kinds.append(WARNING)
    if verdict == UNSCORED:
        logger.error("run %s of %s %s scored nothing: %s %s", record.run_id, source,
                     record.model, preview(fields.get("error", ""), 1000),
                     preview(fields.get("features", ""), 1000))
        kinds.append(ERROR)
    for action in decision.actions:
        notify(record, action, decision)
        kinds.append(_ACTION_KINDS[action])
    return kinds or [NONE]


# What each decision of the alert cycle counts as.
_ACTION_KINDS = {
    alert_state.FIRE: ALERT, alert_state.FAIL: ALERT,
    alert_state.REMIND: REMINDER, alert_state.FAIL_REMIND: REMINDER,
    alert_state.SUPPRESS: SUPPRESSED, alert_state.FAIL_SUPPRESS: SUPPRESSED,
    alert_state.RESOLVE: RESOLVED, alert_state.FAIL_RESOLVE: RESOLVED,
    alert_state.OUT_OF_ORDER: OUT_OF_ORDER,
}
_DRIFT_ACTIONS = (alert_state.FIRE, alert_state.REMIND, alert_state.RESOLVE)
_FAILURE_ACTIONS = (alert_state.FAIL, alert_state.FAIL_REMIND, alert_state.FAIL_RESOLVE)


def run_time(record: ResultRecord) -> float | None:
    """When the run happened, for ordering runs of one model: its finish, else its start."""
    moment = record.finished_at or record.started_at
    return None if moment is None else moment.timestamp()


def run_kind(record: ResultRecord) -> str:
    """How a result names its run: scheduled run, manual run or on-demand analysis."""
    if record.source == ONDEMAND:
        return "on-demand analysis"
    return f"{run_trigger(record.run_id)} run"


def kept_document(fields: Mapping[str, str]) -> str:
    """The JSON copy of an entry kept in the latest-record hash and the warnings list."""
    return json.dumps(dict(fields), sort_keys=True)


def notify(record: ResultRecord, action: str, decision: alert_state.AlertDecision) -> None:
    """Log one notification of the alert cycle and POST it to the configured webhook;
    a quiet decision (suppressed) is only logged at INFO."""
    settings = config.reactions
    if action not in _DRIFT_ACTIONS and action not in _FAILURE_ACTIONS:
        logger.info("%s %s: %s (run %s); nothing sent", record.source, record.model,
                    action, record.run_id)
        return
    payload = alert_payload(record, settings.webhook_format, action, decision)
    logger.warning("%s", notification_summary(record, action, decision))
    if not settings.webhook_url:
        return
    body = json.dumps(payload).encode()
    request = urllib.request.Request(settings.webhook_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.webhook_timeout_s) as response:
            response.read()
    except urllib.error.URLError as exc:
        raise RuntimeError(f"webhook {settings.webhook_url} failed: {exc}") from exc


def features_with(record: ResultRecord, verdict: str) -> list[str]:
    return sorted(name for name, figures in record.features.items()
                  if figures.verdict == verdict)


def notification_summary(record: ResultRecord, action: str,
                         decision: alert_state.AlertDecision) -> str:
    """One line saying what happened, for the log, Slack and the alert's summary."""
    run = f"{run_kind(record)} {record.run_id}"
    if action in _FAILURE_ACTIONS:
        if action == alert_state.FAIL_RESOLVE:
            return (f"Resolved: runs of {record.model} ({record.source}) succeed again "
                    f"({run}: {record.verdict}); failing since "
                    f"{_iso(decision.failing_since)}")
        head = "Run failed" if action == alert_state.FAIL else "Still failing"
        since = "" if action == alert_state.FAIL else f" since {_iso(decision.failing_since)}"
        return (f"{head}: {record.model} ({run}) could not be scored{since}: "
                f"{record.error or 'no reason given'}")
    if action == alert_state.RESOLVE:
        return (f"Resolved: drift in {record.model} ({record.source}) is over: {run} is ok; "
                f"in drift since {_iso(decision.drift_since)}")
    drifted, warned = features_with(record, Verdict.DRIFT), features_with(record, Verdict.WARNING)
    head = "Drift" if action == alert_state.FIRE else "Still drifting"
    since = "" if action == alert_state.FIRE else f" since {_iso(decision.drift_since)}"
    return (f"{head} in {record.model} ({run}){since}: score "
            f"{number_text(record.drift_score)}"
            + (f"; features {', '.join(drifted)}" if drifted else "")
            + (f"; warning features {', '.join(warned)}" if warned else ""))


def alert_payload(record: ResultRecord, webhook_format: str, action: str = alert_state.FIRE,
                  decision: alert_state.AlertDecision | None = None) -> Any:
    """Alertmanager's ``POST /api/v2/alerts`` body (a list of one alert) or Slack's
    ``{"text": ...}``.

    The labels of a streak's firing, reminder and resolved alerts are the same, so
    Alertmanager sees one alert. A firing alert ends ``2 × reactions.remind_after_s``
    ahead (the next reminder moves it on; Alertmanager resolves an alert by itself after
    its resolve timeout when no end is given); a resolved one ends at the run that ended
    it."""
    decision = decision or alert_state.AlertDecision(actions=(action,))
    summary = notification_summary(record, action, decision)
    links = pages_links(record)
    if webhook_format == "slack":
        if not links:
            return {"text": summary}
        return {"text": f"{summary}\n<{links['model']}|See the drift of {record.model}> · "
                        f"<{links['run']}|this result>"}
    failure = action in _FAILURE_ACTIONS
    resolved = action in (alert_state.RESOLVE, alert_state.FAIL_RESOLVE)
    since = decision.failing_since if failure else decision.drift_since
    run_at = run_time(record) or time.time()
    annotations = {"summary": summary, "run_id": record.run_id, "trigger": run_kind(record),
                   "notification": ("resolved" if resolved else "reminder"
                                    if action in (alert_state.REMIND, alert_state.FAIL_REMIND)
                                    else "firing")}
    if failure:
        annotations["reason"] = record.error
        annotations["opened_by"] = decision.failing_run_id
    else:
        annotations.update({"drift_score": number_text(record.drift_score),
                            "features": ",".join(features_with(record, Verdict.DRIFT)),
                            "warning_features": ",".join(features_with(record,
                                                                       Verdict.WARNING)),
                            "opened_by": decision.drift_run_id})
    ends = run_at if resolved else time.time() + 2 * config.reactions.remind_after_s
    alert = {
        "labels": {"alertname": "StatGuardRunFailed" if failure else "StatGuardDrift",
                   "severity": "critical", "model": record.model, "source": record.source},
        "annotations": annotations,
        "startsAt": _iso(since if since is not None else run_at),
        "endsAt": _iso(ends),
    }
    if links:
        annotations["pages_url"] = links["model"]
        annotations["run_url"] = links["run"]
        alert["generatorURL"] = links["model"]
    return [alert]


def pages_links(record: ResultRecord) -> dict[str, str]:
    """The drift pages' URLs of the record's model and of the record itself
    (``pages.public_url``; none when it is unset)."""
    base = config.pages.public_url.rstrip("/")
    if not base:
        return {}
    return {"model": base + model_path(record.model), "run": base + run_path(record.run_id)}


def _iso(moment: float | None) -> str:
    return "" if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


def _count(client: redis.Redis, kind: str, summary: DrainSummary) -> None:
    client.incr(counter_key(kind))
    summary.add(kind)

