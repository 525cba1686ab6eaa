"""The result stream: producers ``XADD`` (capped, once per run id), the reaction task reads
through a consumer group, acknowledges after acting and reclaims what a dead consumer left.

Each entry is a :class:`stat_guard.result_record.ResultRecord` (docs/fleet.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import NEVER_DECODE

from stat_guard.result_record import ResultRecord
from workers.config import RedisConfig, StreamConfig

logger = logging.getLogger(__name__)

# Bounds (docs/fleet.md, "Poison entries and bounds"). An entry larger than this is not
# acted on (it would be kept whole in the latest-record hash and the warnings list).
MAX_ENTRY_BYTES = 256 * 1024
# A run id or model name longer than this makes an entry poison (they go in keys and logs).
MAX_NAME_CHARS = 512
# A parked entry keeps each original field cut to this many bytes, at most this many fields.
DEAD_FIELD_BYTES = 4096
DEAD_MAX_FIELDS = 64
# The dead-letter stream is capped like the main one (MAXLEN ~).
DEAD_MAXLEN = 10_000
# A stream entry (or a part of it) written to a log line is cut to this many characters.
LOG_PREVIEW_CHARS = 2048

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
    """One delivered entry. ``fields`` is decoded (UTF-8); when that failed, ``problem``
    says why, ``fields`` is empty and only ``raw`` holds what Redis returned."""

    entry_id: str
    fields: dict[str, str]
    reclaimed: bool = False
    raw: Mapping[bytes, bytes] | None = None
    problem: str | None = None
    size: int = 0  # bytes of the field names and values


def decode_entry(entry_id: Any, raw_fields: Mapping[Any, Any] | None,
                 reclaimed: bool = False) -> StreamEntry:
    """An entry read without decoding, decoded field by field: one undecodable value makes
    this entry a poison entry (``problem`` set), never its whole read batch."""
    raw = {_raw(name): _raw(value) for name, value in (raw_fields or {}).items()}
    size = sum(len(name) + len(value) for name, value in raw.items())
    entry_id = _raw(entry_id).decode("ascii", "replace")
    fields: dict[str, str] = {}
    for name, value in raw.items():
        try:
            fields[name.decode()] = value.decode()
        except UnicodeDecodeError as exc:
            field = name.decode("utf-8", "replace")
            return StreamEntry(entry_id, {}, reclaimed, raw,
                               f"field {field[:100]!r} is not UTF-8 ({exc.reason} at byte "
                               f"{exc.start})", size)
    return StreamEntry(entry_id, fields, reclaimed, raw, None, size)


def dead_letter_name(stream: StreamConfig) -> str:
    """The dead-letter stream of ``stream``: ``<stream.name>:dead``."""
    return f"{stream.name}:dead"


def preview(value: Any, limit: int = LOG_PREVIEW_CHARS) -> str:
    """``value`` (a str, bytes or a mapping of them) as log text of at most ``limit``
    characters; undecodable bytes are shown escaped."""
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in value.items()) + "}"
    else:
        text = _show(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "backslashreplace"))
    return repr(value) if isinstance(value, str) else str(value)


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


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
            # Read undecoded: a value that is not UTF-8 must not fail the whole reply.
            reply = self._with_group(
                lambda start=start, count=count: self._client.execute_command(
                    "XAUTOCLAIM", self.stream.name, self.stream.group, self.name, idle_ms,
                    start, "COUNT", count, **{NEVER_DECODE: True}))
            start, claimed = _raw(reply[0]).decode(), reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                self._client.xack(self.stream.name, self.stream.group, *deleted)
            entries += [decode_entry(entry_id, fields, reclaimed=True)
                        for entry_id, fields in claimed if fields is not None]
            if start == "0-0":
                break
        return entries

    def read_new(self, count: int) -> list[StreamEntry]:
        """Entries never delivered to this group before (XREADGROUP ``>``)."""
        reply = self._with_group(lambda: self._client.execute_command(
            "XREADGROUP", "GROUP", self.stream.group, self.name, "COUNT", count,
            "STREAMS", self.stream.name, ">", **{NEVER_DECODE: True}))
        entries: list[StreamEntry] = []
        for _stream, items in _stream_items(reply):
            entries += [decode_entry(entry_id, fields) for entry_id, fields in items]
        return entries

    def park(self, entry: StreamEntry, reason: str, counter_key: str) -> str:
        """Move a poison entry to the dead-letter stream (its reason, original id and
        fields, each cut to ``DEAD_FIELD_BYTES``), acknowledge it here and count it in
        ``counter_key``, in one transaction; returns the dead-letter entry id."""
        dead: dict[bytes | str, bytes | str] = {
            "reason": reason[:DEAD_FIELD_BYTES], "original_id": entry.entry_id,
            "stream": self.stream.name, "consumer": self.name,
            "original_bytes": str(entry.size)}
        raw = entry.raw if entry.raw is not None else {
            name.encode(): value.encode() for name, value in entry.fields.items()}
        for name, value in list(raw.items())[:DEAD_MAX_FIELDS]:
            dead[b"field:" + name[:200]] = value[:DEAD_FIELD_BYTES]
        with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_letter_name(self.stream), dead, maxlen=DEAD_MAXLEN,
                      approximate=True)
            pipe.xack(self.stream.name, self.stream.group, entry.entry_id)
            pipe.incr(counter_key)
            dead_id = pipe.execute()[0]
        logger.error("stream entry %s parked in %s as %s: %s; fields %s", entry.entry_id,
                     dead_letter_name(self.stream), dead_id, reason, preview(raw))
        return str(dead_id)

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


def _stream_items(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREADGROUP's reply (RESP2, parsed by redis-py) as (stream, entries) pairs."""
    return [(name, items) for name, items in reply or []]
