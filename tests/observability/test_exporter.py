"""The metrics exporter, scraped over HTTP while it reads a real Redis (database 11)."""

from __future__ import annotations

import math
import re
import threading
import time

import pytest
import redis

from stat_guard.result_record import FeatureFigures
from tests.local import free_port
from tests.observability.conftest import CONFIG, Processes, http_get
from tests.observability.fleet_fill import fill_fleet
from tests.observability.records import (
    FINISHED,
    feature,
    parse,
    publish,
    record,
    sample_names,
    scrape,
    series,
    value,
)

ALLOWED_LABELS = {"model", "feature", "source", "verdict", "le"}


def _publish_fixture_results(client: redis.Redis) -> None:
    """churn: an old and a new scheduled run plus an on-demand one; fraud: one run."""
    publish(client, record("churn@old", "churn", "scheduled", "drift", "0.9",
                           {"age": feature(0.9, 0.5, 1e-9, 1.1, 0.6, 2.0, "drift")},
                           finished_at=FINISHED.replace(hour=10), duration_s=40.0))
    publish(client, record("churn@new", "churn", "scheduled", "drift", "0.31",
                           {"age": feature(0.31, 0.12, 0.001, 0.2, 0.15, 0.4, "drift"),
                            "income": feature(0.02, 0.03, 0.6, 0.01, 0.02, 0.05, "ok"),
                            "region": {"verdict": "insufficient_data", "error": "no rows"}},
                           duration_s=12.5))
    publish(client, record("req-1", "churn", "ondemand", "warning", "0.12",
                           {"age": feature(0.12, 0.2, 0.01, 0.08, 0.1, 0.3, "warning")},
                           duration_s=0.084))
    publish(client, record("fraud@new", "fraud", "scheduled", "ok", "0.04",
                           {"amount": feature(0.04, 0.05, 0.3, 0.02, 0.03, 0.1, "ok")},
                           duration_s=7.25))


def test_scrape_serves_the_newest_result_per_model_and_source(
        processes: Processes, redis_db: redis.Redis) -> None:
    url = processes.exporter(feature_series="all")
    _publish_fixture_results(redis_db)
    redis_db.set(CONFIG.redis.key("reactions", "alert"), 3)
    redis_db.set(CONFIG.redis.key("reactions", "given_up"), 1)
    redis_db.rpush(CONFIG.queues.drift, "m1", "m2")
    redis_db.rpush(CONFIG.queues.ondemand, "m3")
    redis_db.rpush(f"{CONFIG.queues.ondemand}\x06\x169", "m4")  # a priority-9 message

    samples = scrape(url)

    assert value(samples, "stat_guard_exporter_redis_up") == 1
    churn = {"model": "churn", "source": "scheduled"}
    age = {**churn, "feature": "age"}
    # the newer scheduled run wins over the older one
    assert value(samples, "stat_guard_feature_psi", **age) == 0.31
    assert value(samples, "stat_guard_feature_ks_statistic", **age) == 0.12
    assert value(samples, "stat_guard_feature_ks_pvalue", **age) == 0.001
    assert value(samples, "stat_guard_feature_kl_divergence", **age) == 0.2
    assert value(samples, "stat_guard_feature_js_distance", **age) == 0.15
    assert value(samples, "stat_guard_feature_wasserstein_normalized", **age) == 0.4
    assert value(samples, "stat_guard_feature_verdict", **age, verdict="drift") == 1
    assert value(samples, "stat_guard_feature_verdict", **age, verdict="ok") == 0
    assert value(samples, "stat_guard_feature_error", **age) == 0
    region = {**churn, "feature": "region"}
    assert value(samples, "stat_guard_feature_error", **region) == 1
    assert value(samples, "stat_guard_feature_verdict", **region,
                 verdict="insufficient_data") == 1
    assert {"feature": "region"} not in [
        {"feature": s["feature"]} for s in series(samples, "stat_guard_feature_psi")]
    assert value(samples, "stat_guard_model_drift_score", **churn) == 0.31
    assert value(samples, "stat_guard_model_verdict", **churn, verdict="drift") == 1
    assert value(samples, "stat_guard_model_verdict", **churn, verdict="warning") == 0
    assert value(samples, "stat_guard_model_last_success_timestamp_seconds",
                 **churn) == FINISHED.timestamp()
    assert value(samples, "stat_guard_model_run_duration_seconds", **churn) == 12.5
    # the on-demand result of the same model is its own series
    ondemand = {"model": "churn", "source": "ondemand"}
    assert value(samples, "stat_guard_feature_psi", **ondemand, feature="age") == 0.12
    assert value(samples, "stat_guard_model_verdict", **ondemand, verdict="warning") == 1
    assert value(samples, "stat_guard_model_run_duration_seconds", **ondemand) == 0.084
    fraud = {"model": "fraud", "source": "scheduled"}
    assert value(samples, "stat_guard_model_drift_score", **fraud) == 0.04
    assert value(samples, "stat_guard_model_run_duration_seconds", **fraud) == 7.25
    assert len(series(samples, "stat_guard_model_drift_score")) == 3
    # reaction counters, queue lengths, the stream, the schedule
    assert value(samples, "stat_guard_reactions_alert_total") == 3
    assert value(samples, "stat_guard_reactions_given_up_total") == 1
    assert value(samples, "stat_guard_reactions_warning_total") == 0
    assert value(samples, "stat_guard_queue_drift_messages") == 2
    assert value(samples, "stat_guard_queue_ondemand_messages") == 2
    assert value(samples, "stat_guard_queue_reactions_messages") == 0
    assert value(samples, "stat_guard_results_stream_entries") == 4
    assert value(samples, "stat_guard_drift_schedule_interval_seconds") == 3600


def test_default_series_are_the_verdict_label_and_the_missing_share_rise(
        processes: Processes, redis_db: redis.Redis) -> None:
    url = processes.exporter()
    _publish_fixture_results(redis_db)
    publish(redis_db, record("fraud@2", "fraud", "scheduled", "warning", "0.15", {
        "amount": FeatureFigures(verdict="warning", psi=0.15, missing_rate_baseline=0.01,
                                 missing_rate_current=0.41),
        "country": FeatureFigures(verdict="ok", psi=0.01, missing_rate_baseline=0.1,
                                  missing_rate_current=0.05)}))

    samples = scrape(url)

    age = {"model": "churn", "source": "scheduled", "feature": "age"}
    # one series per feature: its verdict as the label, value 1
    assert [s["verdict"] for s in series(samples, "stat_guard_feature_verdict")
            if s["feature"] == "age" and s["source"] == "scheduled"] == ["drift"]
    assert value(samples, "stat_guard_feature_verdict", **age, verdict="drift") == 1
    fraud = {"model": "fraud", "source": "scheduled"}
    assert value(samples, "stat_guard_feature_verdict", **fraud, feature="country",
                 verdict="ok") == 1
    assert value(samples, "stat_guard_feature_missing_ratio_increase", **fraud,
                 feature="amount") == 0.4
    assert [s["feature"] for s in series(samples, "stat_guard_feature_missing_ratio_increase")
            ] == ["amount"]  # the share of country fell: no series
    feature_metrics = {n for n in sample_names(samples) if n.startswith("stat_guard_feature_")}
    assert feature_metrics == {"stat_guard_feature_verdict",
                               "stat_guard_feature_missing_ratio_increase"}
    assert value(samples, "stat_guard_model_verdict", **fraud, verdict="warning") == 1
    assert value(samples, "stat_guard_model_drift_score", **fraud) == 0.15
    redis_s = value(samples, "stat_guard_exporter_scrape_duration_seconds")
    build_s = value(samples, "stat_guard_exporter_build_duration_seconds")
    assert 0 < redis_s <= build_s

    # a newer run of the model replaces its kept, formatted record
    publish(redis_db, record("fraud@3", "fraud", "scheduled", "ok", "0.02", {
        "amount": FeatureFigures(verdict="ok", psi=0.02)}))
    time.sleep(CONFIG.exporter.max_age_s + 0.2)
    again = scrape(url)
    assert value(again, "stat_guard_model_drift_score", **fraud) == 0.02
    assert value(again, "stat_guard_feature_verdict", **fraud, feature="amount",
                 verdict="ok") == 1
    assert not series(again, "stat_guard_feature_missing_ratio_increase")
    assert value(again, "stat_guard_exporter_builds_total") > value(
        samples, "stat_guard_exporter_builds_total")


def test_a_scrape_of_1000_models_by_50_features_is_fast_and_small(
        processes: Processes, redis_db: redis.Redis) -> None:
    url = processes.exporter()
    fill_fleet(redis_db, CONFIG, models=1000, features=50)
    time.sleep(CONFIG.exporter.max_age_s + 0.2)  # past any max_age_s of the start-up build

    began = time.monotonic()
    status, body = http_get(url, timeout=30)
    elapsed = time.monotonic() - began

    assert status == 200
    assert elapsed < 6, f"scrape took {elapsed:.1f} s"
    assert len(body) < 10_000_000, f"scrape returned {len(body):,} bytes"
    samples = parse(body.decode())
    assert len(series(samples, "stat_guard_model_drift_score")) == 1000
    assert len(series(samples, "stat_guard_feature_verdict")) == 50_000
    assert value(samples, "stat_guard_feature_verdict", model="model_0999",
                 source="scheduled", feature="feature_49",
                 verdict=_verdict_of(999, 49)) == 1
    # what Prometheus receives (it asks for gzip)
    status, zipped = http_get(url, timeout=30, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and len(zipped) < len(body) / 5


def _verdict_of(model: int, feature_index: int) -> str:
    from tests.observability.fleet_fill import fleet_record

    return fleet_record(model, 50).features[f"feature_{feature_index:02d}"].verdict


def test_simultaneous_scrapes_share_one_build(
        processes: Processes, redis_db: redis.Redis) -> None:
    url = processes.exporter()
    fill_fleet(redis_db, CONFIG, models=1000, features=50)
    time.sleep(CONFIG.exporter.max_age_s + 0.2)
    bodies: list[bytes] = [b""] * 3

    def get(i: int) -> None:
        status, bodies[i] = http_get(url, timeout=30)
        assert status == 200

    threads = [threading.Thread(target=get, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert bodies[0] and bodies[0] == bodies[1] == bodies[2]  # the same response
    builds = {value(parse(body.decode()), "stat_guard_exporter_builds_total")
              for body in bodies}
    assert len(builds) == 1
    # a scrape after exporter.max_age_s builds again, reusing the formatted records
    time.sleep(CONFIG.exporter.max_age_s + 0.2)
    later = scrape(url)
    assert value(later, "stat_guard_exporter_builds_total") == builds.pop() + 1


def test_an_unknown_feature_series_is_refused() -> None:
    from workers.exporter_text import resolve_feature_series

    assert "psi" in resolve_feature_series(["all"])
    assert resolve_feature_series(["psi", " error"]) == {"psi", "error"}
    with pytest.raises(ValueError, match="verdict_states"):
        resolve_feature_series(["psi", "pis"])


def test_ondemand_analyses_are_counted_with_their_latency(
        processes: Processes, redis_db: redis.Redis) -> None:
    # published before the exporter started: not counted (a restart never counts twice)
    publish(redis_db, record("before", "events", "ondemand", "ok", "0.01", {},
                             duration_s=0.03))
    time.sleep(0.05)
    url = processes.exporter()
    for run_id, verdict, seconds in (("a", "ok", 0.04), ("b", "drift", 0.15),
                                     ("c", "ok", 0.7)):
        publish(redis_db, record(run_id, "events", "ondemand", verdict, "0.3", {},
                                 duration_s=seconds))
    publish(redis_db, record("s", "events", "scheduled", "ok", "0.01", {}, duration_s=90))

    samples = scrape(url)

    assert value(samples, "stat_guard_ondemand_analyses_total", verdict="ok") == 2
    assert value(samples, "stat_guard_ondemand_analyses_total", verdict="drift") == 1
    assert value(samples, "stat_guard_ondemand_analyses_total", verdict="warning") == 0
    histogram = "stat_guard_ondemand_duration_seconds"
    assert value(samples, f"{histogram}_count") == 3
    assert math.isclose(value(samples, f"{histogram}_sum"), 0.89, rel_tol=1e-9)
    assert value(samples, f"{histogram}_bucket", le="0.025") == 0
    assert value(samples, f"{histogram}_bucket", le="0.05") == 1
    assert value(samples, f"{histogram}_bucket", le="0.2") == 2
    assert value(samples, f"{histogram}_bucket", le="0.5") == 2
    assert value(samples, f"{histogram}_bucket", le="1.0") == 3
    assert value(samples, f"{histogram}_bucket", le="+Inf") == 3
    # a second scrape counts nothing again
    publish(redis_db, record("d", "events", "ondemand", "warning", "0.2", {},
                             duration_s=0.01))
    again = scrape(url)
    assert value(again, f"{histogram}_count") == 4
    assert value(again, "stat_guard_ondemand_analyses_total", verdict="ok") == 2
    assert value(again, "stat_guard_ondemand_analyses_total", verdict="warning") == 1


def test_models_beyond_the_scan_come_from_the_reaction_task_hashes(
        processes: Processes, redis_db: redis.Redis) -> None:
    import json

    old = record("old@1", "old_model", "scheduled", "warning", "0.2",
                 {"x": feature(0.2, 0.1, 0.2, 0.1, 0.1, 0.1, "warning")})
    publish(redis_db, old)
    redis_db.hset(CONFIG.redis.key("latest", "scheduled"), "old_model",
                  json.dumps(old.to_fields()))
    url = processes.exporter(scan_limit=2, feature_series="psi")
    for i in range(3):
        publish(redis_db, record(f"new@{i}", f"model_{i}", "scheduled", "ok", "0.01", {}))

    samples = scrape(url)

    models = {s["model"] for s in series(samples, "stat_guard_model_drift_score")}
    assert models == {"old_model", "model_1", "model_2"}  # model_0 is beyond the scan
    assert value(samples, "stat_guard_feature_psi", model="old_model", source="scheduled",
                 feature="x") == 0.2


def test_scrape_answers_with_redis_up_zero_when_redis_is_down(processes: Processes) -> None:
    url = processes.exporter(redis_port=free_port())  # nothing listens there
    began = time.monotonic()
    samples = scrape(url)
    assert time.monotonic() - began < 5
    assert value(samples, "stat_guard_exporter_redis_up") == 0
    assert not series(samples, "stat_guard_model_drift_score")
    assert value(samples, "stat_guard_ondemand_duration_seconds_count") == 0


def test_metric_names_follow_prometheus_conventions(
        processes: Processes, redis_db: redis.Redis) -> None:
    url = processes.exporter()
    _publish_fixture_results(redis_db)
    status, body = http_get(url)
    assert status == 200
    samples = scrape(url)
    for name in sample_names(samples):
        assert name.startswith("stat_guard_"), name
        assert ":" not in name, name
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        if any(word in name for word in ("duration", "timestamp", "interval")):
            assert re.search(r"_seconds(_bucket|_sum|_count)?$", name), name
    labels = {label for _name, pairs in samples for label, _v in pairs}
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), flags=re.M))
    for name, kind in types.items():
        if kind == "counter":
            assert f"{name}_total" in sample_names(samples) or name.endswith("_total"), name


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"a": 3}'])
def test_malformed_features_json_yields_no_feature_series(text: str) -> None:
    from workers.exporter import parse_record

    result = parse_record({"model": "m", "source": "scheduled", "verdict": "ok",
                           "drift_score": "nan", "features": text})
    assert result is not None
    assert result.features == {}
    assert result.drift_score is None


def test_series_per_model_are_bounded_worst_features_first() -> None:
    """A record of 1,500 features with the cap at 1,000: 1,000 features get series, the
    drift and error ones among them though their names sort last; the rest are counted."""
    import datetime as dt

    from stat_guard.result_record import ResultRecord
    from workers.exporter_text import Layout

    features = {f"f{i:04d}": FeatureFigures("ok", psi=0.01) for i in range(1_495)}
    features |= {f"zz_drift_{i}": FeatureFigures("drift", psi=0.5) for i in range(4)}
    features["zz_broken"] = FeatureFigures("error", error="column missing")
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    wide = ResultRecord(run_id="wide@1", model="wide", source="scheduled", verdict="drift",
                        drift_score=0.5, features=features, started_at=at, finished_at=at,
                        duration_s=1.0)
    text = "".join(Layout(frozenset(), max_features=1_000).render(
        [Layout(frozenset(), max_features=1_000).block(wide, at.timestamp())]))
    samples = parse(text)
    verdicts = series(samples, "stat_guard_feature_verdict")
    assert len(verdicts) == 1_000
    kept = {labels["feature"] for labels in verdicts}
    assert {f"zz_drift_{i}" for i in range(4)} | {"zz_broken"} <= kept
    assert value(samples, "stat_guard_model_features_omitted", model="wide",
                 source="scheduled") == 500
    # under the cap: no omitted series at all
    small = Layout(frozenset(), max_features=2_000).block(wide, at.timestamp())
    assert "stat_guard_model_features_omitted" not in "".join(small.lines.values())
