"""The result stream: producers ``XADD`` (capped, once per run id), the reaction task reads
through a consumer group, acknowledges after acting and reclaims what a dead consumer left.

Each entry is a :class:`stat_guard.result_record.ResultRecord` (docs/fleet.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from stat_guard.result_record import ResultRecord
from workers.config import RedisConfig, StreamConfig

logger = logging.getLogger(__name__)

# Publish at most once per key, atomically: the marker and the entry appear together or
# not at all, so a redelivered task can never add a second entry for the same run.
_PUBLISH_ONCE = """
if redis.call('SET', KEYS[2], '-', 'NX', 'EX', ARGV[2]) then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
    redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
    return {1, id}
end
return {0, redis.call('GET', KEYS[2])}
"""


@dataclass(frozen=True)
class Published:
    """Outcome of :func:`publish_once`: the entry id, and whether this call added it."""

    entry_id: str
    added: bool


def published_key(redis_config: RedisConfig, dedupe_key: str) -> str:
    return redis_config.key("published", dedupe_key)


def publish_once(client: redis.Redis, redis_config: RedisConfig, stream: StreamConfig,
                 record: ResultRecord, dedupe_key: str | None = None) -> Published:
    """``XADD`` ``record`` to the stream (``MAXLEN ~ stream.maxlen``) unless ``dedupe_key``
    (default: its run id) was published before; either way return the entry id."""
    if not record.run_id:
        raise ValueError("a stream record needs a run id")
    dedupe_key = dedupe_key or record.run_id
    flat: list[str] = []
    for name, value in record.to_fields().items():
        flat += [name, value]
    added, entry_id = client.eval(
        _PUBLISH_ONCE, 2, stream.name, published_key(redis_config, dedupe_key),
        int(stream.maxlen), int(stream.published_ttl_s), *flat)
    return Published(entry_id=str(entry_id), added=bool(added))


def already_published(client: redis.Redis, redis_config: RedisConfig,
                      dedupe_key: str) -> str | None:
    """The entry id published under ``dedupe_key``, or None."""
    value = client.get(published_key(redis_config, dedupe_key))
    return value if value and value != "-" else None


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    fields: dict[str, str]
    reclaimed: bool = False


class StreamConsumer:
    """One named consumer of the reaction group."""

    def __init__(self, client: redis.Redis, stream: StreamConfig, name: str) -> None:
        self._client = client
        self.stream = stream
        self.name = name

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; it starts at the stream's first
        entry, so nothing published before a Redis restart's recovery is skipped."""
        try:
            self._client.xgroup_create(self.stream.name, self.stream.group, id="0",
                                       mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self, limit: int) -> list[StreamEntry]:
        """Take over entries other consumers have held unacknowledged longer than
        ``claim_idle_s`` (XAUTOCLAIM); ids trimmed away meanwhile are acknowledged."""
        idle_ms = int(self.stream.claim_idle_s * 1000)
        entries: list[StreamEntry] = []
        start = "0-0"
        while len(entries) < limit:
            count = min(self.stream.batch_size, limit - len(entries))
            reply = self._with_group(
                lambda start=start, count=count: self._client.xautoclaim(
                    self.stream.name, self.stream.group, self.name, idle_ms,
                    start_id=start, count=count))
            start, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                self._client.xack(self.stream.name, self.stream.group, *deleted)
            entries += [StreamEntry(entry_id, dict(fields or {}), reclaimed=True)
                        for entry_id, fields in claimed if fields is not None]
            if start in ("0-0", b"0-0"):
                break
        return entries

    def read_new(self, count: int) -> list[StreamEntry]:
        """Entries never delivered to this group before (XREADGROUP ``>``)."""
        reply = self._with_group(lambda: self._client.xreadgroup(
            self.stream.group, self.name, {self.stream.name: ">"}, count=count))
        entries: list[StreamEntry] = []
        for _stream, items in reply or []:
            entries += [StreamEntry(entry_id, dict(fields or {})) for entry_id, fields in items]
        return entries

    def ack(self, entry_id: str) -> None:
        self._client.xack(self.stream.name, self.stream.group, entry_id)

    def deliveries(self, entry_id: str) -> int:
        """How often the group delivered ``entry_id`` (1 on first read)."""
        rows = self._client.xpending_range(self.stream.name, self.stream.group,
                                           min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 0

    def pending_count(self) -> int:
        return int(self._client.xpending(self.stream.name, self.stream.group)["pending"])

    def prune_idle_consumers(self, idle_s: float) -> int:
        """Forget consumers with nothing pending that were idle longer than ``idle_s``
        (pool processes come and go; the group would otherwise collect their names)."""
        removed = 0
        for info in self._client.xinfo_consumers(self.stream.name, self.stream.group):
            if (info["name"] != self.name and int(info["pending"]) == 0
                    and int(info["idle"]) > idle_s * 1000):
                self._client.xgroup_delconsumer(self.stream.name, self.stream.group,
                                                info["name"])
                removed += 1
        return removed

    def _with_group(self, command: Callable[[], Any]) -> Any:
        try:
            return command()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The group is gone (Redis restarted without persistence): recreate, go on.
            logger.warning("consumer group %s missing on %s; recreating",
                           self.stream.group, self.stream.name)
            self.ensure_group()
            return command()
