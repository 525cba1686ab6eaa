"""Display summaries in Redis (workers/displays.py): a 200-feature result within its
bounds, a store that fails never costing the record, and the on-demand task's reading of
the verdict's ``display`` objects."""

from __future__ import annotations

import gzip
import json
import logging
import socket
from datetime import UTC, datetime

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stat_guard.categories import CategoryCounts
from stat_guard.display import (
    MAX_FEATURE_BYTES,
    RunDisplay,
    categorical_display,
    numeric_display_at,
)
from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.result_record import (
    FEATURES_LIMIT_BYTES,
    SCHEDULED,
    FeatureFigures,
    ResultRecord,
    ScheduledDetails,
)
from stat_guard.tdigest import TDigest
from stat_guard.wire import ColumnCategories, ColumnDigests, Envelope, encode_envelope
from tasks.ondemand import ondemand_display, ondemand_record
from tests.fleet.conftest import CONFIG
from tests.fleet.support import stream_records
from workers.displays import load_display, store_display, with_display
from workers.stream import MAX_ENTRY_BYTES, publish_once

RUN_ID = "wide@20261206T120000Z"


def _record(features: int, display_key: str = "") -> ResultRecord:
    name = "f" * 96
    return ResultRecord(
        run_id=RUN_ID, model="wide", source=SCHEDULED, verdict="drift", drift_score=0.9,
        features={f"{name}{i:04d}": FeatureFigures(
            verdict="drift", psi=0.123456789 + i, ks_statistic=0.5, ks_pvalue=1e-30,
            kl=0.3, js=0.2, wasserstein=0.4, missing_rate_baseline=0.01,
            missing_rate_current=0.02) for i in range(features)},
        started_at=datetime.now(UTC), finished_at=datetime.now(UTC), duration_s=1.0,
        details=ScheduledDetails(model_drift={"prediction": None}, error_count=0,
                                 historical_rows=1, current_rows=1, read_lock_s=0.1,
                                 write_lock_s=0.1),
        display_key=display_key)


def _run(features: int) -> RunDisplay:
    """Every feature near its worst case: long names, long reasons, 30 long categories
    (every other feature) or 40 bins with 7 quantiles a window."""
    reasons = tuple("psi 0.5 > 0.25 (p 1e-30); " * 10 for _ in range(8))
    edges = [i / 40 for i in range(41)]
    shown = []
    for i in range(features):
        common = {"verdict": "drift", "reasons": reasons, "statistics": {"psi": 0.5},
                  "n_baseline": 10**9, "n_current": 10**8, "missing_baseline": 0.123457,
                  "missing_current": 0.234568}
        name = f"{'f' * 96}{i:04d}"
        if i % 2:
            counts = {f"{'c' * 96}{k:04d}": 1000 + k for k in range(30)}
            shown.append(categorical_display(name, counts, {**counts, "z" * 100: 7},
                                             **common))
        else:
            cdf = [0.1234567 * j / 39 for j in range(39)]
            quantiles = [1e300 / 7 * (k + 1) for k in range(7)]
            shown.append(numeric_display_at(name, edges, cdf, cdf, quantiles, quantiles,
                                            **common))
    return RunDisplay(run_id=RUN_ID, model="wide", source=SCHEDULED, verdict="drift",
                      drift_score=0.9, finished_at=datetime.now(UTC).isoformat(),
                      features=tuple(shown))


def test_a_200_feature_result_stays_within_its_bounds(redis_db: redis.Redis) -> None:
    key = store_display(redis_db, CONFIG.redis, _run(200), CONFIG.display.ttl_s)
    stored = redis_db.execute_command("GET", key, NEVER_DECODE=True)
    raw = gzip.decompress(stored)
    assert len(stored) <= len(raw) <= 200 * MAX_FEATURE_BYTES
    document = json.loads(raw)
    assert all(len(json.dumps(f, separators=(",", ":"), ensure_ascii=False).encode())
               <= MAX_FEATURE_BYTES for f in document["features"])
    assert len(load_display(redis_db, key).features) == 200

    record = _record(200, display_key=key)
    fields = record.to_fields()
    assert len(fields["features"].encode()) <= FEATURES_LIMIT_BYTES
    assert sum(len(k.encode()) + len(v.encode()) for k, v in fields.items()) \
        <= MAX_ENTRY_BYTES
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, record)
    [entry] = stream_records(redis_db)
    assert entry["display_key"] == key and "display" not in entry


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_display_that_cannot_be_stored_never_costs_the_record(
        redis_db: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    down = redis.Redis(port=_unused_port(), socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))
    record = _record(3)
    with caplog.at_level(logging.WARNING, logger="workers.displays"):
        unstored = with_display(down, CONFIG.redis, record, lambda: _run(3), 60)

        def broken() -> RunDisplay:
            raise ValueError("a bug")

        unbuilt = with_display(redis_db, CONFIG.redis, record, broken, 60)
    assert unstored == record and unbuilt == record and not record.display_key
    assert len([r for r in caplog.records if "display summaries not stored" in r.message]) == 2
    publish_once(redis_db, CONFIG.redis, CONFIG.stream, unstored)
    [entry] = stream_records(redis_db)
    assert entry["run_id"] == RUN_ID and "display_key" not in entry
    stored = with_display(redis_db, CONFIG.redis, record, lambda: _run(3), 60)
    assert stored.display_key and 0 < redis_db.ttl(stored.display_key) <= 60


def test_ondemand_display_keeps_the_valid_columns(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    envelope = Envelope({"request_id": "req-1"}, {
        "amount": ColumnDigests(current=TDigest.from_values(rng.normal(2, 1, 3000)),
                                baseline=TDigest.from_values(rng.normal(0, 1, 9000))),
        "latency": ColumnDigests(current=TDigest.from_values(rng.normal(0, 1, 3000)),
                                 baseline=TDigest.from_values(rng.normal(0, 1, 9000))),
        "plan": ColumnCategories(current=CategoryCounts.of({"a": 10, "b": 90}),
                                 baseline=CategoryCounts.of({"a": 50, "b": 50}))})
    verdict = analyze_envelope(encode_envelope(envelope))
    verdict["columns"]["latency"]["display"]["baseline"] = [2.0]  # malformed
    now = datetime.now(UTC)
    record = ondemand_record(verdict, "events", now, now)
    with caplog.at_level(logging.WARNING, logger="tasks.ondemand"):
        shown = ondemand_display(verdict, record)
    assert [f.name for f in shown.features] == ["amount", "plan"]
    assert "latency" in caplog.text and "left out" in caplog.text
    assert (shown.run_id, shown.source, shown.trigger) == ("req-1", "ondemand", "ondemand")
    assert shown.verdict == record.verdict == "drift"
