"""A realistic DuckDB for scheduled drift: three production models, a staging one, drift.

Everything is generated in DuckDB SQL (``range``, ``random`` after ``setseed``, one
thread so a seed gives the same file). Rows are spread evenly over 90 days; the most
recent 5% carry injected drift of known size in a few features, the rest stay stable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field

import duckdb

from stat_guard.scheduled.connection import Session
from stat_guard.scheduled.schema import apply_schema

DRIFT_START = 0.95  # the injected drift covers the most recent 5% of rows
DAYS = 90


@dataclass(frozen=True)
class DemoModel:
    name: str
    status: str
    table: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction_kind: str
    drifted: dict[str, str]  # feature → what changed in the most recent 5%
    columns_sql: str  # SELECT list over range(n) AS r(i), with "recent" and u1..u3


# Normal draws by Box–Muller (each call draws fresh uniforms); categories from one
# uniform column (u1, u2, u3) each, since a macro argument is substituted, not evaluated.
_MACROS = """
CREATE OR REPLACE TEMP MACRO gauss() AS sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random());
CREATE OR REPLACE TEMP MACRO pick(u, a, pa, b, pb, c, pc, d) AS
    CASE WHEN u < pa THEN a WHEN u < pa + pb THEN b WHEN u < pa + pb + pc THEN c ELSE d END;
"""

MODELS = (
    DemoModel(
        "fraud_scoring", "production", "features_fraud_scoring",
        ("amount", "account_age_days", "txn_count_24h", "distance_km", "merchant_risk",
         "hour_of_day"),
        ("country", "device"), "numeric",
        {"amount": "log-normal amount, log mean shifted by 0.5σ",
         "country": "new category 'NG' in 20% of recent rows"},
        """
        exp(3.5 + CASE WHEN recent THEN 0.5 ELSE 0 END + gauss()) AS amount,
        CAST(floor(-ln(1 - random()) * 400) AS INTEGER) AS account_age_days,
        CAST(floor(-ln(1 - random()) * 3) AS INTEGER) AS txn_count_24h,
        abs(gauss()) * 25 AS distance_km,
        random() * random() AS merchant_risk,
        CAST(floor(random() * 24) AS INTEGER) AS hour_of_day,
        CASE WHEN recent AND random() < 0.2 THEN 'NG'
             ELSE pick(u1, 'US', 0.45, 'GB', 0.2, 'DE', 0.2, 'FR') END AS country,
        pick(u2, 'ios', 0.4, 'android', 0.45, 'web', 0.15, 'web') AS device
        """),
    DemoModel(
        "churn", "production", "features_churn",
        ("tenure_months", "monthly_charges", "support_calls", "usage_hours",
         "last_login_days", "num_products"),
        ("plan", "region"), "categorical",
        {"monthly_charges": "mean shifted by 0.5σ (70 → 80, σ 20)"},
        """
        CAST(floor(random() * 72) AS INTEGER) AS tenure_months,
        70 + CASE WHEN recent THEN 10 ELSE 0 END + 20 * gauss() AS monthly_charges,
        CAST(floor(-ln(1 - random()) * 1.5) AS INTEGER) AS support_calls,
        greatest(0, 40 + 12 * gauss()) AS usage_hours,
        -ln(1 - random()) * 6 AS last_login_days,
        CAST(1 + floor(random() * 4) AS INTEGER) AS num_products,
        pick(u1, 'basic', 0.5, 'standard', 0.3, 'premium', 0.15, 'family') AS plan,
        pick(u2, 'north', 0.3, 'south', 0.3, 'east', 0.2, 'west') AS region
        """),
    DemoModel(
        "pricing", "production", "features_pricing",
        ("sqft", "bedrooms", "lot_size", "age_years", "distance_to_center", "demand_index"),
        ("property_type", "energy_label"), "numeric",
        {"demand_index": "standard deviation doubled (15 → 30), mean unchanged"},
        """
        exp(7.3 + 0.35 * gauss()) AS sqft,
        CAST(1 + floor(random() * 5) AS INTEGER) AS bedrooms,
        exp(8.5 + 0.6 * gauss()) AS lot_size,
        random() * 80 AS age_years,
        -ln(1 - random()) * 8 AS distance_to_center,
        100 + CASE WHEN recent THEN 30 ELSE 15 END * gauss() AS demand_index,
        pick(u1, 'house', 0.5, 'flat', 0.35, 'townhouse', 0.1, 'bungalow')
            AS property_type,
        pick(u2, 'A', 0.2, 'B', 0.4, 'C', 0.3, 'D') AS energy_label
        """),
    DemoModel(
        "recommender_v2", "staging", "features_recommender_v2",
        ("session_length", "items_viewed"), ("channel",), "numeric",
        {"session_length": "tripled in recent rows (staging: must be ignored)"},
        """
        -ln(1 - random()) * CASE WHEN recent THEN 30 ELSE 10 END AS session_length,
        CAST(floor(-ln(1 - random()) * 5) AS INTEGER) AS items_viewed,
        pick(u1, 'email', 0.3, 'push', 0.3, 'organic', 0.3, 'paid') AS channel
        """),
)

# Predictions from the features; labels for 60% of rows older than the newest 2%.
_EVENTS_SQL = {
    "fraud_scoring": ("1 / (1 + exp(-(-4 + 0.6 * (ln(amount) - 3.5) + 2 * merchant_risk)))",
                      "CASE WHEN random() < 1 / (1 + exp(-(-4 + 0.6 * (ln(amount) - 3.5) "
                      "+ 2 * merchant_risk))) THEN 1.0 ELSE 0.0 END"),
    "churn": ("CASE WHEN tenure_months < 12 AND support_calls > 1 THEN 1.0 ELSE 0.0 END",
              "CASE WHEN random() < CASE WHEN tenure_months < 12 THEN 0.5 ELSE 0.1 END "
              "THEN 1.0 ELSE 0.0 END"),
    "pricing": ("sqft * 180 * (1 + demand_index / 1000)",
                "sqft * 180 * (1 + demand_index / 1000) * exp(0.1 * gauss())"),
    "recommender_v2": ("items_viewed / (1 + session_length)", "NULL"),
}


@dataclass(frozen=True)
class DemoSummary:
    db_path: str
    rows_per_model: int
    seed: int
    production_models: tuple[str, ...]
    staging_models: tuple[str, ...]
    features: dict[str, tuple[str, ...]]
    categorical_features: dict[str, tuple[str, ...]]
    drifted_features: dict[str, dict[str, str]]  # production models only
    drift_start_fraction: float
    seconds: float
    stable_features: dict[str, tuple[str, ...]] = field(default_factory=dict)


def generate_demo_data(db_path: str, rows_per_model: int = 200_000,
                       seed: int = 7) -> DemoSummary:
    """(Re)create the demo models, their feature tables and events in ``db_path``."""
    started = time.perf_counter()
    connection = duckdb.connect(db_path, config={"threads": 1})
    try:
        session = Session(connection)
        apply_schema(session)
        connection.execute(_MACROS)
        connection.execute("SELECT setseed($s)", {"s": (seed % 1000) / 1000})
        for model in MODELS:
            _create_model(connection, model, rows_per_model)
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    production = tuple(m.name for m in MODELS if m.status == "production")
    return DemoSummary(
        db_path=db_path, rows_per_model=rows_per_model, seed=seed,
        production_models=production,
        staging_models=tuple(m.name for m in MODELS if m.status != "production"),
        features={m.name: m.numeric + m.categorical for m in MODELS},
        categorical_features={m.name: m.categorical for m in MODELS},
        drifted_features={m.name: dict(m.drifted) for m in MODELS if m.name in production},
        stable_features={m.name: tuple(f for f in m.numeric + m.categorical
                                       if f not in m.drifted) for m in MODELS},
        drift_start_fraction=DRIFT_START, seconds=time.perf_counter() - started)


def _create_model(connection: duckdb.DuckDBPyConnection, model: DemoModel, rows: int) -> None:
    step_us = DAYS * 86_400_000_000 // max(rows, 1)
    connection.execute(f"DROP TABLE IF EXISTS {model.table}")
    connection.execute(
        f"CREATE TABLE {model.table} AS SELECT i AS entity_id, "
        f"TIMESTAMP '2025-01-01' + to_microseconds(i * {step_us}) AS ts, {model.columns_sql} "
        f"FROM (SELECT i, i >= {int(rows * DRIFT_START)} AS recent, random() AS u1, "
        f"random() AS u2, random() AS u3 FROM range({rows}) r(i)) "
        f"ORDER BY i")
    prediction, label = _EVENTS_SQL[model.name]
    connection.execute("DELETE FROM model_events WHERE model = $m", {"m": model.name})
    connection.execute(
        f"INSERT INTO model_events SELECT ts, $m, {prediction}, "
        f"CASE WHEN entity_id < {int(rows * 0.98)} AND random() < 0.6 THEN {label} END "
        f"FROM {model.table} ORDER BY entity_id", {"m": model.name})
    connection.execute("DELETE FROM model_metadata WHERE name = $m", {"m": model.name})
    connection.execute(
        "INSERT INTO model_metadata (name, version, status, features, categorical_features, "
        "feature_table, timestamp_column, key_column, prediction_kind) VALUES "
        "($name, '1.4.0', $status, $features, $categorical, $table, 'ts', 'entity_id', $kind)",
        {"name": model.name, "status": model.status,
         "features": list(model.numeric + model.categorical),
         "categorical": list(model.categorical), "table": model.table,
         "kind": model.prediction_kind})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="DuckDB file to create or refresh")
    parser.add_argument("--rows", type=int, default=200_000, help="rows per model")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    summary = generate_demo_data(args.db, args.rows, args.seed)
    print(json.dumps(dataclasses.asdict(summary), indent=2))


if __name__ == "__main__":
    main()
