"""Prometheus exporter of the fleet's results: ``python -m workers.exporter --port 9808``.

Every scrape reads Redis: the newest stream record per (model, source), the reaction
counters and the Celery queue lengths. It opens no DuckDB file and keeps no multiprocess
files; the only state it holds is the count of on-demand analyses it has seen go by.
Metric names and meanings: docs/observability.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from redis.backoff import NoBackoff
from redis.client import NEVER_DECODE
from redis.retry import Retry

from stat_guard.result_record import ONDEMAND, SOURCES, ResultRecord, parse_number
from stat_guard.verdict import ERROR as ERROR_VERDICT
from stat_guard.verdict import Verdict
from workers.config import FleetConfig
from workers.reaction_keys import COUNTER_KINDS, counter_key, latest_key

logger = logging.getLogger(__name__)

PREFIX = "stat_guard"
DEFAULT_PORT = 9808
DEFAULT_SCAN_LIMIT = 2000  # newest stream entries read per scrape for the latest results
VERDICTS = tuple(str(v) for v in Verdict)
# Upper bounds of the on-demand latency histogram: the analysis answers in ~200 ms.
ONDEMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Per-feature figures: (attribute of the record's FeatureFigures, metric suffix, help).
FEATURE_STATISTICS = (
    ("psi", "feature_psi", "Population stability index of the feature's latest run."),
    ("ks_statistic", "feature_ks_statistic", "Kolmogorov–Smirnov statistic (0..1)."),
    ("ks_pvalue", "feature_ks_pvalue", "Kolmogorov–Smirnov p-value."),
    ("kl", "feature_kl_divergence", "Kullback–Leibler divergence (smoothed bins)."),
    ("js", "feature_js_distance", "Jensen–Shannon distance (0..1)."),
    ("wasserstein", "feature_wasserstein_normalized",
     "Wasserstein distance divided by the baseline's spread (dimensionless)."),
    ("missing_rate_current", "feature_missing_ratio",
     "Share of the current window's values that are NULL, NaN or infinite (0..1)."),
    ("missing_rate_baseline", "feature_baseline_missing_ratio",
     "Share of the baseline's values that are NULL, NaN or infinite (0..1)."),
)
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


class ResultsCollector(Collector):
    """Builds every ``stat_guard_*`` metric from Redis at collection time."""

    def __init__(self, config: FleetConfig, client: redis.Redis | None = None,
                 scan_limit: int = DEFAULT_SCAN_LIMIT,
                 counter_kinds: tuple[str, ...] = COUNTER_KINDS) -> None:
        self._config = config
        self._client = client or scrape_client(config)
        self._scan_limit = scan_limit
        self._counter_kinds = counter_kinds
        self._lock = threading.Lock()
        self._tally = OnDemandTally()
        # Stream ids are "<ms>-<seq>" of Redis' clock: count what was added after we began.
        self._cursor = f"{int(time.time() * 1000)}-0"
        self._success: dict[tuple[str, str], float] = {}  # newest non-error finish, per scrape

    def describe(self) -> Iterable[Metric]:
        return []  # built at scrape time; nothing to register up front

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # the HTTP server may serve two scrapes at once
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        redis_up = 1.0
        families: list[Metric] = []
        try:
            self._advance_tally()
            self._success = {}
            families += self._latest_families(self._latest_results())
            families += self._reaction_families()
            families += self._queue_families()
            families.append(_gauge("results_stream_entries",
                                   "Entries on the result stream (XLEN).",
                                   self._client.xlen(self._config.stream.name)))
            families.append(_gauge(
                "results_dead_letter_entries",
                "Poison entries parked in the dead-letter stream (XLEN <stream>:dead).",
                self._client.xlen(f"{self._config.stream.name}:dead")))
        except (redis.RedisError, OSError) as exc:
            logger.warning("Redis unavailable during scrape: %s", exc)
            redis_up = 0.0
            families = []
        yield _gauge("exporter_redis_up", "1 when the last scrape could read Redis, else 0.",
                     redis_up)
        yield _gauge("drift_schedule_interval_seconds",
                     "How often beat starts the scheduled drift runs (schedule.drift_interval_s).",
                     self._config.schedule.drift_interval_s)
        yield from families
        yield from self._tally_families()
        yield _gauge("exporter_scrape_duration_seconds",
                     "Time this scrape spent reading Redis.", time.perf_counter() - began)

    # ---- reading ------------------------------------------------------------------------

    def _latest_results(self) -> dict[tuple[str, str], ResultRecord]:
        """Newest record per (model, source): the newest ``scan_limit`` stream entries, then
        the reaction task's ``latest:<source>`` hashes for models not among them."""
        latest: dict[tuple[str, str], ResultRecord] = {}
        stream = self._config.stream.name
        upper = "+"
        remaining = self._scan_limit
        while remaining > 0:
            # Undecoded: one entry that is not UTF-8 must not fail the scrape.
            page = self._client.execute_command(
                "XREVRANGE", stream, upper, "-", "COUNT", min(remaining, _FORWARD_PAGE),
                **{NEVER_DECODE: True})
            if not page:
                break
            for _entry_id, fields in page:
                result = parse_record(fields)
                if result is not None:
                    latest.setdefault((result.model, result.source), result)
                    self._note_success(result)
            remaining -= len(page)
            upper = f"({_text(page[-1][0])}"
            if len(page) < _FORWARD_PAGE:
                break
        for source in SOURCES:
            stored = self._client.hgetall(latest_key(self._config.redis, source))
            for model, document in stored.items():
                key = (_text(model), source)
                try:
                    fields = json.loads(document)
                except ValueError:
                    continue
                result = parse_record(fields) if isinstance(fields, dict) else None
                if result is not None:
                    self._note_success(result)
                    latest.setdefault(key, result)
        return latest

    def _note_success(self, result: ResultRecord) -> None:
        """Keep the newest finish of a run that did not fail (verdict other than error)."""
        if result.verdict == ERROR_VERDICT or result.finished_at is None:
            return
        key = (result.model, result.source)
        finished = result.finished_at.timestamp()
        if finished > self._success.get(key, -math.inf):
            self._success[key] = finished

    def _advance_tally(self) -> None:
        """Count the on-demand records added since the last scrape (XRANGE from the cursor)."""
        for _ in range(_FORWARD_MAX_PAGES):
            page = self._client.execute_command(
                "XRANGE", self._config.stream.name, f"({self._cursor}", "+",
                "COUNT", _FORWARD_PAGE, **{NEVER_DECODE: True})
            for entry_id, fields in page:
                self._cursor = _text(entry_id)
                record = parse_record(fields, complete=False)
                if record is not None and record.source == ONDEMAND:
                    self._tally.observe(record.verdict or "unknown", record.duration_s)
            if len(page) < _FORWARD_PAGE:
                return

    # ---- metric families ----------------------------------------------------------------

    def _latest_families(self, latest: Mapping[tuple[str, str], ResultRecord]
                         ) -> list[Metric]:
        model_labels = ["model", "source"]
        feature_labels = ["model", "source", "feature"]
        statistics = {name: GaugeMetricFamily(f"{PREFIX}_{suffix}", text, labels=feature_labels)
                      for name, suffix, text in FEATURE_STATISTICS}
        feature_verdict = GaugeMetricFamily(
            f"{PREFIX}_feature_verdict",
            "1 for the verdict of the feature's latest run, 0 for the others.",
            labels=[*feature_labels, "verdict"])
        feature_error = GaugeMetricFamily(
            f"{PREFIX}_feature_error", "1 when the feature's latest run reported an error.",
            labels=feature_labels)
        score = GaugeMetricFamily(f"{PREFIX}_model_drift_score",
                                  "The model's drift score (largest feature PSI), latest run.",
                                  labels=model_labels)
        model_verdict = GaugeMetricFamily(
            f"{PREFIX}_model_verdict",
            "1 for the verdict of the model's latest run, 0 for the others.",
            labels=[*model_labels, "verdict"])
        last_success = GaugeMetricFamily(
            f"{PREFIX}_model_last_success_timestamp_seconds",
            "When the model's latest successful run finished (Unix time): runs with "
            "verdict error (failed) do not count.", labels=model_labels)
        duration = GaugeMetricFamily(f"{PREFIX}_model_run_duration_seconds",
                                     "How long the model's latest run took.",
                                     labels=model_labels)
        for (model, source), result in sorted(latest.items()):
            for verdict in _verdict_states(result.verdict):
                model_verdict.add_metric([model, source, verdict],
                                         1.0 if verdict == result.verdict else 0.0)
            _add_finite(score, [model, source], result.drift_score)
            _add_finite(last_success, [model, source], self._success.get((model, source)))
            _add_finite(duration, [model, source], result.duration_s)
            for feature, figures in sorted(result.features.items()):
                labels = [model, source, feature]
                for name, family in statistics.items():
                    _add_finite(family, labels, getattr(figures, name))
                if figures.verdict:
                    for verdict in _verdict_states(figures.verdict):
                        feature_verdict.add_metric([*labels, verdict],
                                                   1.0 if verdict == figures.verdict else 0.0)
                feature_error.add_metric(labels, 1.0 if figures.error else 0.0)
        return [*statistics.values(), feature_verdict, feature_error, score, model_verdict,
                last_success, duration]

    def _reaction_families(self) -> list[Metric]:
        keys = [counter_key(self._config.redis, kind) for kind in self._counter_kinds]
        values = self._client.mget(keys) if keys else []
        families: list[Metric] = []
        for kind, key, value in zip(self._counter_kinds, keys, values, strict=True):
            families.append(CounterMetricFamily(
                f"{PREFIX}_reactions_{kind}", f"Reactions of kind '{kind}' (Redis counter {key}).",
                value=parse_number(value) or 0.0))
        return families

    def _queue_families(self) -> list[Metric]:
        queues = self._config.queues
        roles = (("drift", queues.drift), ("ondemand", queues.ondemand),
                 ("reactions", queues.reactions))
        with self._client.pipeline(transaction=False) as pipe:
            for _role, name in roles:
                pipe.llen(name)
                for priority in _PRIORITY_STEPS:
                    pipe.llen(f"{name}{_PRIORITY_SEPARATOR}{priority}")
            lengths = pipe.execute()
        per_queue = 1 + len(_PRIORITY_STEPS)
        families: list[Metric] = []
        for i, (role, name) in enumerate(roles):
            total = sum(int(n) for n in lengths[i * per_queue:(i + 1) * per_queue])
            families.append(_gauge(f"queue_{role}_messages",
                                   f"Messages waiting in the Celery queue '{name}' "
                                   f"(queues.{role}; not yet taken by a worker).", total))
        return families

    def _tally_families(self) -> list[Metric]:
        tally = self._tally
        analyses = CounterMetricFamily(
            f"{PREFIX}_ondemand_analyses",
            "On-demand analyses published to the stream since the exporter started.",
            labels=["verdict"])
        for verdict in sorted(set(VERDICTS) | set(tally.by_verdict)):
            analyses.add_metric([verdict], float(tally.by_verdict.get(verdict, 0)))
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(ONDEMAND_BUCKETS, tally.bucket_counts, strict=True):
            buckets.append((_bucket_label(bound), float(count)))
        buckets.append(("+Inf", float(tally.count)))
        latency = HistogramMetricFamily(
            f"{PREFIX}_ondemand_duration_seconds",
            "Duration of on-demand analyses (the record's duration_s) since the exporter "
            "started.", buckets=buckets, sum_value=tally.total_s)
        return [analyses, latency]


# ---- records ----------------------------------------------------------------------------


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


def _verdict_states(actual: str) -> tuple[str, ...]:
    return VERDICTS if actual in VERDICTS else (*VERDICTS, actual)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bucket_label(bound: float) -> str:
    return repr(float(bound))


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=float(value))


def _add_finite(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None and math.isfinite(value):
        family.add_metric(labels, value)


# ---- process ----------------------------------------------------------------------------


def scrape_client(config: FleetConfig) -> redis.Redis:
    """A Redis client that fails fast: a scrape must answer (with redis_up 0) even when
    Redis is down, unlike the workers' client, which retries for about 40 s."""
    settings = config.redis
    return redis.Redis(host=settings.host, port=settings.port, db=settings.db,
                       username=settings.username or None, password=settings.password or None,
                       socket_timeout=2.0, socket_connect_timeout=1.0, decode_responses=True,
                       retry=Retry(NoBackoff(), 0))


def build_registry(config: FleetConfig, scan_limit: int = DEFAULT_SCAN_LIMIT
                   ) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultsCollector(config, scan_limit=scan_limit))
    return registry


def main(argv: list[str] | None = None) -> None:
    from prometheus_client import start_http_server

    from workers.config import get_config

    parser = argparse.ArgumentParser(description="Serve the fleet's results as Prometheus "
                                                 "metrics on /metrics.")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--scan-limit", type=int, default=DEFAULT_SCAN_LIMIT,
                        help="newest stream entries read per scrape")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = get_config()
    server, thread = start_http_server(args.port, addr=args.address,
                                       registry=build_registry(config, args.scan_limit))
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
