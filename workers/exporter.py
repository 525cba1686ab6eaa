"""Prometheus exporter of the fleet's results: ``python -m workers.exporter --port 9808``.

Each build of /metrics reads Redis: the newest stream record per (model, source), the
reaction counters and the Celery queue lengths. It opens no DuckDB file and keeps no
multiprocess files; it holds the count of on-demand analyses it has seen go by, each
(model, source)'s newest record formatted (until a newer one replaces it) and the last
response, which simultaneous scrapes share. The text: workers/exporter_text.py. Metric
names and meanings: docs/observability.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.client import NEVER_DECODE
from redis.retry import Retry

from stat_guard.result_record import ONDEMAND, SOURCES, ResultRecord, parse_number
from stat_guard.verdict import ERROR as ERROR_VERDICT
from workers.config import FleetConfig
from workers.exporter_text import (
    VERDICTS,
    Layout,
    RecordBlock,
    counter,
    gauge,
    histogram,
    resolve_feature_series,
)
from workers.reaction_keys import COUNTER_KINDS, counter_key, latest_documents

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9808
DEFAULT_SCAN_LIMIT = 2000  # newest stream entries read per scrape for the latest results
# Upper bounds of the on-demand latency histogram: the analysis answers in ~200 ms.
ONDEMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Celery's Redis transport keeps a message with priority p > 0 in "<queue>\x06\x16<p>".
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_FORWARD_PAGE = 500
_FORWARD_MAX_PAGES = 20


@dataclass
class OnDemandTally:
    """On-demand analyses seen on the stream since this process started (a true counter:
    a restart starts again at zero, which Prometheus' rate() understands)."""

    by_verdict: dict[str, int] = field(default_factory=dict)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(ONDEMAND_BUCKETS))
    count: int = 0
    total_s: float = 0.0

    def observe(self, verdict: str, duration_s: float | None) -> None:
        self.by_verdict[verdict] = self.by_verdict.get(verdict, 0) + 1
        if duration_s is None:
            return
        self.count += 1
        self.total_s += duration_s
        for i, bound in enumerate(ONDEMAND_BUCKETS):
            if duration_s <= bound:
                self.bucket_counts[i] += 1


@dataclass
class Response:
    """One build of /metrics, shared by every scrape it serves."""

    body: bytes
    started: float  # time.monotonic() when the build began
    _gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=1)
        return self._gzipped


class ResultsCollector:
    """Builds every ``stat_guard_*`` metric from Redis: :meth:`response` per scrape.

    One build at a time (a lock); a scrape that arrives while a build runs is served that
    build, so N simultaneous scrapes cost one (and, with ``exporter.max_age_s`` above 0, a
    scrape arriving within that long after a build began). Each (model, source)'s record
    is parsed and formatted once and kept until a newer record (another stream entry,
    another stored document) replaces it.
    """

    def __init__(self, config: FleetConfig, client: redis.Redis | None = None,
                 scan_limit: int = DEFAULT_SCAN_LIMIT,
                 counter_kinds: tuple[str, ...] = COUNTER_KINDS,
                 feature_series: Iterable[str] | None = None,
                 max_age_s: float | None = None) -> None:
        self._config = config
        self._client = client or scrape_client(config)
        self._scan_limit = scan_limit
        self._counter_kinds = counter_kinds
        names = config.exporter.feature_series if feature_series is None else feature_series
        if config.exporter.max_features_per_model < 1:
            raise ValueError("exporter.max_features_per_model must be at least 1")
        self._layout = Layout(resolve_feature_series(names),
                              config.exporter.max_features_per_model)
        self._max_age_s = config.exporter.max_age_s if max_age_s is None else max_age_s
        self._lock = threading.Lock()
        self._response: Response | None = None
        self._builds = 0  # begun
        self._completed = 0
        # (model, source) -> (what identifies the record: entry id or stored document, block)
        self._blocks: dict[tuple[str, str], tuple[str, RecordBlock]] = {}
        self._parse_s = 0.0
        # (model, source) -> newest finish of a run that did not fail (verdict not error):
        # a broken model keeps its last success time, so its staleness alert can fire.
        self._success: dict[tuple[str, str], float] = {}
        self._failed: dict[tuple[str, str], ResultRecord] = {}  # latest is an error record
        self._tally = OnDemandTally()
        # Stream ids are "<ms>-<seq>" of Redis' clock: count what was added after we began.
        self._cursor = f"{int(time.time() * 1000)}-0"

    def response(self) -> Response:
        arrived = time.monotonic()
        seen = self._completed
        with self._lock:
            cached = self._response
            if cached is not None and (self._completed != seen  # finished while we waited
                                       or arrived - cached.started < self._max_age_s):
                return cached
            began = time.monotonic()
            body = "".join(self._build()).encode()
            self._response = Response(body, began)
            self._completed += 1
            return self._response

    def _build(self) -> list[str]:
        began = time.perf_counter()
        self._builds += 1
        redis_up = 1.0
        redis_s = 0.0
        parts: list[str] = []
        try:
            self._advance_tally()
            latest = self._latest_results()
            counters = self._client.mget(self._counter_keys()) if self._counter_kinds else []
            queues = self._queue_lengths()
            entries = self._client.xlen(self._config.stream.name)
            redis_s = time.perf_counter() - began - self._parse_s
            parts += self._layout.render([block for _key, block in sorted(latest.items())])
            parts += self._reaction_families(counters)
            parts += self._queue_families(queues)
            parts.append(_gauge("results_stream_entries", "Entries on the result stream (XLEN).",
                                entries))
            parts.append(_gauge(
                "results_dead_letter_entries",
                "Poison entries parked in the dead-letter stream (XLEN <stream>:dead).",
                self._client.xlen(f"{self._config.stream.name}:dead")))
        except (redis.RedisError, OSError) as exc:
            logger.warning("Redis unavailable during scrape: %s", exc)
            redis_up = 0.0
            redis_s = time.perf_counter() - began
            parts = []
        head = [
            _gauge("exporter_redis_up",
                   "1 when the build of this response could read Redis, else 0.", redis_up),
            _gauge("drift_schedule_interval_seconds",
                   "How often beat starts the scheduled drift runs (schedule.drift_interval_s).",
                   self._config.schedule.drift_interval_s)]
        tail = [
            *self._tally_families(),
            _gauge("exporter_scrape_duration_seconds",
                   "Time the build that produced this response spent reading Redis (stream, "
                   "latest hashes, counters, queue lengths), without parsing and formatting.",
                   redis_s),
            _gauge("exporter_build_duration_seconds",
                   "Time the build that produced this response took: reading Redis, parsing "
                   "the records that moved and formatting (all but joining the text).",
                   time.perf_counter() - began),
            counter("exporter_builds", "Responses built since the exporter started; "
                    "simultaneous scrapes share one.", [("", float(self._builds))])]
        return [*head, *parts, *tail]

    # ---- reading ------------------------------------------------------------------------

    def _latest_results(self) -> dict[tuple[str, str], RecordBlock]:
        """Newest record per (model, source), formatted: the newest ``scan_limit`` stream
        entries, then the reaction task's ``latest:<source>`` hashes for models not among
        them. A record seen before is neither parsed nor formatted again."""
        self._parse_s = 0.0
        self._failed = {}
        latest: dict[tuple[str, str], RecordBlock] = {}
        for entry_id, fields in newest_entries(self._client, self._config.stream.name,
                                               self._scan_limit):
            key = (text(fields.get(b"model", b"")), text(fields.get(b"source", b"")))
            if key not in latest:
                self._take(latest, key, text(entry_id), fields)
            elif key in self._failed and key not in self._success:
                self._note_success(parse_record(fields))  # an older run of a failing model
        for source in SOURCES:
            for model, document in latest_documents(
                    self._client, self._config.redis, source,
                    skip=lambda m, source=source: (text(m), source) in latest):
                self._take(latest, (text(model), source), text(document), document)
        for key, result in self._failed.items():
            latest[key] = self._layout.block(result, self._success.get(key))
        seen = set(latest)
        for key in [k for k in self._blocks if k not in seen]:
            del self._blocks[key]  # gone from the stream and the hashes
        return latest

    def _note_success(self, result: ResultRecord | None) -> float | None:
        """Keep the newest finish of a run that did not fail; the time for ``result``'s
        model: its own finish, or for a failed run the last success seen."""
        if result is None:
            return None
        key = (result.model, result.source)
        if result.verdict != ERROR_VERDICT and result.finished_at is not None:
            finished = result.finished_at.timestamp()
            if finished > self._success.get(key, float("-inf")):
                self._success[key] = finished
        return self._success.get(key)

    def _take(self, latest: dict[tuple[str, str], RecordBlock], key: tuple[str, str],
              identity: str, source: Mapping[Any, Any] | str) -> None:
        """The block of the record ``identity`` for ``key``: the kept one when it is the
        same record, else parsed (a stored document is JSON) and formatted."""
        kept = self._blocks.get(key)
        if kept is not None and kept[0] == identity:
            latest[key] = kept[1]
            return
        began = time.perf_counter()
        try:
            fields: Any = source
            if isinstance(source, str):
                try:
                    fields = json.loads(source)
                except ValueError:
                    return
            result = parse_record(fields) if isinstance(fields, dict) else None
            if result is None:
                return
            key = (result.model, result.source)
            if key in latest:
                return
            last_success = self._note_success(result)
            block = self._layout.block(result, last_success)
            if result.verdict == ERROR_VERDICT:
                self._failed[key] = result  # rendered again once older runs are seen
                self._blocks.pop(key, None)
            else:
                self._blocks[key] = (identity, block)
            latest[key] = block
        finally:
            self._parse_s += time.perf_counter() - began

    def _advance_tally(self) -> None:
        """Count the on-demand records added since the last scrape (XRANGE from the cursor)."""
        for _ in range(_FORWARD_MAX_PAGES):
            page = self._client.execute_command(
                "XRANGE", self._config.stream.name, f"({self._cursor}", "+",
                "COUNT", _FORWARD_PAGE, **{NEVER_DECODE: True})
            for entry_id, fields in page:
                self._cursor = text(entry_id)
                if fields.get(b"source") != ONDEMAND.encode():
                    continue  # a scheduled record: its features need not be parsed
                record = parse_record(fields, complete=False)
                if record is not None and record.source == ONDEMAND:
                    self._tally.observe(record.verdict or "unknown", record.duration_s)
            if len(page) < _FORWARD_PAGE:
                return

    def _counter_keys(self) -> list[str]:
        return [counter_key(self._config.redis, kind) for kind in self._counter_kinds]

    def _queue_lengths(self) -> list[int]:
        with self._client.pipeline(transaction=False) as pipe:
            for _role, name in self._queue_roles():
                pipe.llen(name)
                for priority in _PRIORITY_STEPS:
                    pipe.llen(f"{name}{_PRIORITY_SEPARATOR}{priority}")
            return [int(n) for n in pipe.execute()]

    def _queue_roles(self) -> tuple[tuple[str, str], ...]:
        queues = self._config.queues
        return (("drift", queues.drift), ("ondemand", queues.ondemand),
                ("reactions", queues.reactions))

    # ---- metric families ----------------------------------------------------------------

    def _reaction_families(self, values: list[Any]) -> list[str]:
        return [counter(f"reactions_{kind}", f"Reactions of kind '{kind}' (Redis counter "
                        f"{key}).", [("", parse_number(value) or 0.0)])
                for kind, key, value in zip(self._counter_kinds, self._counter_keys(), values,
                                            strict=True)]

    def _queue_families(self, lengths: list[int]) -> list[str]:
        per_queue = 1 + len(_PRIORITY_STEPS)
        return [_gauge(f"queue_{role}_messages",
                       f"Messages waiting in the Celery queue '{name}' "
                       f"(queues.{role}; not yet taken by a worker).",
                       sum(lengths[i * per_queue:(i + 1) * per_queue]))
                for i, (role, name) in enumerate(self._queue_roles())]

    def _tally_families(self) -> list[str]:
        tally = self._tally
        analyses = counter(
            "ondemand_analyses",
            "On-demand analyses published to the stream since the exporter started.",
            [(verdict, float(tally.by_verdict.get(verdict, 0)))
             for verdict in sorted(set(VERDICTS) | set(tally.by_verdict))], label="verdict")
        latency = histogram(
            "ondemand_duration_seconds",
            "Duration of on-demand analyses (the record's duration_s) since the exporter "
            "started.",
            [(_bucket_label(bound), float(count))
             for bound, count in zip(ONDEMAND_BUCKETS, tally.bucket_counts, strict=True)],
            float(tally.count), tally.total_s)
        return [analyses, latency]


# ---- records ----------------------------------------------------------------------------


def newest_entries(client: redis.Redis, stream: str, limit: int
                   ) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """The newest ``limit`` entries of ``stream``, newest first, undecoded (one entry that
    is not UTF-8 must not fail the reader), read a page at a time: the exporter's scrape
    and the drift pages (workers/pages) read the latest results this way."""
    upper = "+"
    remaining = limit
    while remaining > 0:
        page = client.execute_command(
            "XREVRANGE", stream, upper, "-", "COUNT", min(remaining, _FORWARD_PAGE),
            **{NEVER_DECODE: True})
        if not page:
            return
        yield from page
        remaining -= len(page)
        upper = f"({text(page[-1][0])}"
        if len(page) < _FORWARD_PAGE:
            return


def parse_record(fields: Mapping[Any, Any], complete: bool = True) -> ResultRecord | None:
    """A stream record (or the reaction task's stored copy); None when a field is not UTF-8
    or (``complete``) without a model, source or verdict, which every metric needs."""
    try:
        record = ResultRecord.from_fields(fields)
    except (UnicodeDecodeError, ValueError, TypeError):
        return None
    if complete and (not record.model or not record.source or not record.verdict):
        return None
    return record


def text(value: Any) -> str:
    """``value`` as text: bytes decoded as UTF-8 (bad bytes replaced), anything else by str."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _bucket_label(bound: float) -> str:
    return repr(float(bound))


def _gauge(name: str, help_text: str, value: float) -> str:
    return gauge(name, help_text, float(value))


# ---- process ----------------------------------------------------------------------------


def scrape_client(config: FleetConfig) -> redis.Redis:
    """A Redis client that fails fast: a scrape must answer (with redis_up 0) even when
    Redis is down, unlike the workers' client, which retries for about 40 s."""
    settings = config.redis
    return redis.Redis(host=settings.host, port=settings.port, db=settings.db,
                       username=settings.username or None, password=settings.password or None,
                       socket_timeout=2.0, socket_connect_timeout=1.0, decode_responses=True,
                       retry=Retry(NoBackoff(), 0))


class MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics (or /): the collector's shared response, gzipped when accepted."""

    collector: ResultsCollector  # set on the subclass made by serve()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        response = self.collector.response()
        body = response.body
        compressed = "gzip" in self.headers.get("Accept-Encoding", "")
        if compressed:
            body = response.gzipped()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        if compressed:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape is noise


def serve(collector: ResultsCollector, address: str, port: int
          ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = type("Handler", (MetricsHandler,), {"collector": collector})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> None:
    from workers.config import get_config

    parser = argparse.ArgumentParser(description="Serve the fleet's results as Prometheus "
                                                 "metrics on /metrics.")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--scan-limit", type=int, default=DEFAULT_SCAN_LIMIT,
                        help="newest stream entries read per scrape")
    parser.add_argument("--feature-series", default=None,
                        help="opt-in per-feature series, comma-separated, or 'all' "
                             "(default: exporter.feature_series)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = get_config()
    series = None if args.feature_series is None else args.feature_series.split(",")
    try:
        collector = ResultsCollector(config, scan_limit=args.scan_limit,
                                     feature_series=series)
    except ValueError as exc:
        parser.error(str(exc))
    server, thread = serve(collector, args.address, args.port)
    logger.info("stat_guard exporter on http://%s:%d/metrics (Redis %s:%d/%d, stream %s)",
                args.address, args.port, config.redis.host, config.redis.port,
                config.redis.db, config.stream.name)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
