"""On-demand analyses through the fleet against the real PostgreSQL extension (in a
private cluster, since its function URL is a server-wide setting) and the real verdict
service: the baseline refresh, the task publishing to the stream, and the local client
whose cool-down keeps a burst of outliers down to one request."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from tests.fleet.conftest import CONFIG, CONFIG_PATH, Fleet
from tests.fleet.private_postgres import PrivatePostgres, private_postgres
from tests.fleet.support import stream_records
from tests.http_server import verdict_service
from tests.local import wait_for
from workers.celery_app import app
from workers.client import DriftSignalClient, cooldown_key
from workers.displays import display_key, load_display
from workers.redis_client import redis_client
from workers.routing import REFRESH_BASELINES, RUN_ONDEMAND_ANALYSIS


@pytest.fixture
def postgres(fleet: Fleet) -> Iterator[PrivatePostgres]:
    """The real verdict service, and a private PostgreSQL cluster with the extension whose
    function URL points at it; the workers of this test connect to that cluster."""
    with verdict_service() as url, private_postgres(f"{url}/api/drift") as server:
        fleet.env["STAT_GUARD_POSTGRES_PORT"] = str(server.port)
        fleet.env["STAT_GUARD_POSTGRES_DATABASE"] = server.database
        yield server


@pytest.fixture
def events_table(postgres: PrivatePostgres) -> Iterator[str]:
    """``events``: 20 000 rows over the last six days, then 3 000 in the last ten minutes
    where ``amount`` moved up by 1.5 σ and ``latency`` stayed the same."""
    schema = f"psg_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        table = sql.Identifier(schema, "events")
        conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, "
                             "created_at timestamptz NOT NULL, amount float8, "
                             "latency float8, plan int)").format(table))
        conn.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(table))
        normal = "sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"
        conn.execute("SELECT setseed(0.25)")
        conn.execute(sql.SQL(
            "INSERT INTO {} (created_at, amount, latency) SELECT now() - interval '6 days' "
            "+ g * (interval '6 days' - interval '1 hour') / 20000, 100 + 15 * " + normal
            + ", 50 + 5 * " + normal + " FROM generate_series(0, 19999) g").format(table))
        # plan: an integer-coded category, even over 1..4, then mostly 4 in the current window
        conn.execute(sql.SQL("UPDATE {} SET plan = 1 + id % 4").format(table))
        conn.execute(sql.SQL(
            "INSERT INTO {} (created_at, amount, latency) SELECT now() - interval '10 minutes'"
            " + g * interval '590 seconds' / 3000, 122.5 + 15 * " + normal
            + ", 50 + 5 * " + normal + " FROM generate_series(0, 2999) g").format(table))
        conn.execute(sql.SQL("UPDATE {} SET plan = CASE WHEN id % 5 = 0 THEN 1 + id % 3 "
                             "ELSE 4 END WHERE plan IS NULL").format(table))
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        qualified = f"{schema}.events"
        try:
            yield qualified
        finally:
            try:
                conn.execute("SELECT drop_baseline(%s::regclass)", [qualified])
            except psycopg.Error:
                pass
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_ondemand_task_publishes_the_extension_verdict(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path, postgres: PrivatePostgres,
        events_table: str) -> None:
    config_path = tmp_path / "App.yaml"
    config_path.write_text(CONFIG_PATH.read_text() + f"""
baselines:
  sources:
    - source: {events_table}
      time_column: created_at
      value_columns: [amount, latency]
      lookback: 6 days
      end_offset: 1 hour
""")
    fleet.worker("ondemand,drift", concurrency=2,
                 env={"STAT_GUARD_CONFIG": str(config_path)})
    refreshed = app.send_task(REFRESH_BASELINES).get(timeout=60)
    assert refreshed == {"status": "ok", "captured": {events_table: 2}, "failed": {}}

    result = app.send_task(RUN_ONDEMAND_ANALYSIS, kwargs={
        "window": "15 minutes", "source": events_table, "time_column": "created_at",
        "value_columns": ["amount", "latency"], "model": "events-model"}).get(timeout=30)
    assert result["status"] == "published"
    (record,) = stream_records(redis_db)
    assert record["source"] == "ondemand"
    assert record["run_id"] == result["run_id"] and len(record["run_id"]) >= 16
    assert record["model"] == "events-model"
    assert record["table"] == events_table
    assert record["verdict"] == "drift"
    features = json.loads(record["features"])
    assert features["amount"]["verdict"] == "drift"
    assert features["amount"]["psi"] > CONFIG.thresholds.psi_drift
    assert features["latency"]["verdict"] == "ok"
    assert float(record["drift_score"]) == features["amount"]["psi"]
    assert int(record["rows"]) == 3000
    # The verdict's per-column displays, stored by the task under the record's key.
    assert record["display_key"] == display_key(CONFIG.redis, record["run_id"])
    shown = load_display(redis_db, record["display_key"])
    assert (shown.source, shown.model, shown.verdict) == ("ondemand", "events-model", "drift")
    by_name = {f.name: f for f in shown.features}
    assert set(by_name) == {"amount", "latency"}
    amount = by_name["amount"]
    assert amount.verdict == "drift" and len(amount.edges) == 41
    # amount moved up by 1.5 sigma (15): the current median sits about 22 higher.
    assert 15 < amount.quantiles["current"][3] - amount.quantiles["baseline"][3] < 30
    assert by_name["latency"].verdict == "ok"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM pg_stat_guard_baselines "
                              "WHERE source = %s", [events_table]).fetchone()[0]
    assert stored == 2


def test_ondemand_task_analyses_integer_categories(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path, postgres: PrivatePostgres,
        events_table: str) -> None:
    """``category_columns`` reaches perform_drift_analysis and capture_baseline: the
    integer column is scored as categories (chi-square and PSI over its categories, no KS)."""
    config_path = tmp_path / "App.yaml"
    config_path.write_text(CONFIG_PATH.read_text() + f"""
baselines:
  sources:
    - source: {events_table}
      time_column: created_at
      value_columns: [amount, plan]
      category_columns: [plan]
      lookback: 6 days
      end_offset: 1 hour
""")
    fleet.worker("ondemand,drift", concurrency=2,
                 env={"STAT_GUARD_CONFIG": str(config_path)})
    refreshed = app.send_task(REFRESH_BASELINES).get(timeout=60)
    assert refreshed == {"status": "ok", "captured": {events_table: 2}, "failed": {}}
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        kinds = dict(conn.execute(
            "SELECT column_name, categories IS NOT NULL FROM pg_stat_guard_baselines "
            "WHERE source = %s", [events_table]).fetchall())
    assert kinds == {"amount": False, "plan": True}

    result = app.send_task(RUN_ONDEMAND_ANALYSIS, kwargs={
        "window": "15 minutes", "source": events_table, "time_column": "created_at",
        "value_columns": ["amount", "plan"], "category_columns": ["plan"],
        "model": "events-model"}).get(timeout=30)
    assert result["status"] == "published"
    (record,) = stream_records(redis_db)
    features = json.loads(record["features"])
    assert features["plan"]["verdict"] == "drift"
    assert features["plan"]["ks_statistic"] is None  # categories: no KS
    assert features["plan"]["psi"] > CONFIG.thresholds.psi_drift
    assert features["amount"]["ks_statistic"] is not None


def test_client_burst_enqueues_one_analysis_per_cooldown(
        fleet: Fleet, redis_db: redis.Redis, events_table: str) -> None:
    fleet.worker("ondemand", concurrency=4, pool="threads")  # as make worker-ondemand
    client = DriftSignalClient(source=events_table, time_column="created_at",
                               value_columns=["amount"], cooldown_s=3,
                               client=redis_client(CONFIG.redis))
    assert client.observe_many(100 + (i % 11) for i in range(300)) == 0
    started = time.monotonic()
    enqueued = client.observe_many([500.0 + i for i in range(100)])
    assert enqueued == 1
    assert client.signal.fired > 10 and client.suppressed == client.signal.fired - 1
    wait_for(lambda: len(stream_records(redis_db)) == 1, timeout=30,
             what="the analysis to be published")
    (record,) = stream_records(redis_db)
    assert record["source"] == "ondemand" and record["model"] == events_table
    assert redis_db.pttl(cooldown_key(CONFIG, events_table)) > 0
    # After the cool-down the next outlier asks again.
    time.sleep(max(0.0, 3.1 - (time.monotonic() - started)))
    assert client.observe(10_000.0) is True
    wait_for(lambda: len(stream_records(redis_db)) == 2, timeout=30,
             what="the second analysis")
