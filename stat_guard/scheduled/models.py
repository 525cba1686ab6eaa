"""Registering models in ``model_metadata``: add (checked against its feature table), list,
remove. No Celery here: ``stat-guard models`` calls these, briefly holding the DuckDB file.

A registration is checked before it is written, so a model never waits for its first
scheduled run to tell that its table or a column is missing: the table exists, every named
column exists, the time column is a date or timestamp, a numeric feature has a numeric
type and a categorical one a text, boolean, enum or integer type.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from stat_guard.scheduled.aggregates import CATEGORICAL, NUMERIC
from stat_guard.scheduled.config import DEFAULT_CONFIG, DriftRunConfig
from stat_guard.scheduled.connection import Session, open_duckdb
from stat_guard.scheduled.engine import ModelNotFoundError, is_numeric_type
from stat_guard.scheduled.schema import RESERVED_FEATURE_NAMES, apply_schema, table_columns

PRODUCTION = "production"
PREDICTION_KINDS = (NUMERIC, CATEGORICAL)
_TIME_TYPE = re.compile(r"^(DATE|TIMESTAMP(_S|_MS|_NS)?|TIMESTAMP WITH TIME ZONE)$")
_CATEGORY_TYPE = re.compile(
    r"^(VARCHAR|BOOLEAN|ENUM\(.*\)|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|"
    r"USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$", re.S)


class ModelRegistrationError(ValueError):
    """A registration that does not fit its feature table, or names a model twice."""


@dataclass(frozen=True)
class ModelRegistration:
    """What ``model_metadata`` holds about a model before its first run."""

    name: str
    feature_table: str
    timestamp_column: str
    features: tuple[str, ...]
    categorical_features: tuple[str, ...] = ()
    key_columns: tuple[str, ...] = ()  # the sampling key; empty: the row order (rowid)
    status: str = PRODUCTION  # only production models run on the schedule
    version: str = "1"
    prediction_kind: str = NUMERIC


@dataclass(frozen=True)
class ModelSummary:
    """One registered model and its last run, as ``stat-guard models list`` shows it."""

    name: str
    status: str | None
    version: str | None
    feature_table: str | None
    timestamp_column: str | None
    key_column: str | None
    features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    last_verdict: str | None
    last_model_drift_score: float | None
    last_run_id: str | None
    last_run_at: dt.datetime | None
    flagged: bool
    flagged_run_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "version": self.version,
                "feature_table": self.feature_table,
                "timestamp_column": self.timestamp_column, "key_column": self.key_column,
                "features": list(self.features),
                "categorical_features": list(self.categorical_features),
                "last_verdict": self.last_verdict,
                "last_model_drift_score": self.last_model_drift_score,
                "last_run_id": self.last_run_id,
                "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
                "flagged": self.flagged, "flagged_run_id": self.flagged_run_id}


def check_registration(session: Session, model: ModelRegistration) -> None:
    """Raise :class:`ModelRegistrationError` with one line naming the first problem."""
    if not model.name.strip():
        raise ModelRegistrationError("the model name is empty")
    if not model.features:
        raise ModelRegistrationError("no features given")
    duplicates = sorted({f for f in model.features if model.features.count(f) > 1})
    if duplicates:
        raise ModelRegistrationError(f"features named twice: {', '.join(duplicates)}")
    for name in model.features:
        if name in RESERVED_FEATURE_NAMES:
            raise ModelRegistrationError(f"{name!r} is a reserved name and cannot be a feature")
    stray = [f for f in model.categorical_features if f not in model.features]
    if stray:
        raise ModelRegistrationError(f"categorical features not among the features: "
                                     f"{', '.join(stray)}")
    if model.prediction_kind not in PREDICTION_KINDS:
        raise ModelRegistrationError(f"prediction kind {model.prediction_kind!r} is not one "
                                     f"of {', '.join(PREDICTION_KINDS)}")
    columns = table_columns(session, model.feature_table)
    if columns is None:
        raise ModelRegistrationError(f"feature table {model.feature_table!r} does not exist")
    where = f"feature table {model.feature_table!r}"
    time_type = columns.get(model.timestamp_column)
    if time_type is None:
        raise ModelRegistrationError(f"time column {model.timestamp_column!r} is not in "
                                     f"{where}")
    if not _TIME_TYPE.match(time_type):
        raise ModelRegistrationError(f"time column {model.timestamp_column!r} is {time_type}, "
                                     f"not a timestamp or date")
    for key in model.key_columns:
        if key not in columns:
            raise ModelRegistrationError(f"key column {key!r} is not in {where}")
    for name in model.features:
        column_type = columns.get(name)
        if column_type is None:
            raise ModelRegistrationError(f"feature column {name!r} is not in {where}")
        if name in model.categorical_features:
            if not _CATEGORY_TYPE.match(column_type):
                raise ModelRegistrationError(
                    f"categorical feature {name!r} is {column_type}; categories must be "
                    f"text, boolean, enum or integer")
        elif not is_numeric_type(column_type):
            raise ModelRegistrationError(
                f"numeric feature {name!r} is {column_type}, not a number (list it with "
                f"--categorical to compare it as categories)")


def add_model(db_path: str, model: ModelRegistration,
              config: DriftRunConfig = DEFAULT_CONFIG) -> None:
    """Check ``model`` against its feature table and insert its ``model_metadata`` row.

    Raises :class:`ModelRegistrationError` (nothing written), ``DuckDBFileMissingError``
    and ``DuckDBBusyError`` (the file stayed locked, e.g. by a drift run)."""
    with open_duckdb(db_path, config, read_only=False) as session:
        apply_schema(session)
        check_registration(session, model)
        if session.fetchall("SELECT 1 FROM model_metadata WHERE name = $name",
                            {"name": model.name}):
            raise ModelRegistrationError(f"model {model.name!r} is registered already "
                                         f"(remove it first to change it)")
        session.execute(
            "INSERT INTO model_metadata (name, version, status, features, "
            "categorical_features, feature_table, timestamp_column, key_column, "
            "prediction_kind) VALUES ($name, $version, $status, $features, $categorical, "
            "$table, $ts, $key, $prediction_kind)",
            {"name": model.name, "version": model.version, "status": model.status,
             "features": list(model.features),
             "categorical": list(model.categorical_features),
             "table": model.feature_table, "ts": model.timestamp_column,
             "key": ",".join(model.key_columns) or None,
             "prediction_kind": model.prediction_kind})


def list_models(db_path: str, config: DriftRunConfig = DEFAULT_CONFIG) -> list[ModelSummary]:
    """Every registered model, by name (read-only; an empty list without the table)."""
    with open_duckdb(db_path, config, read_only=True) as session:
        if table_columns(session, "model_metadata") is None:
            return []
        cursor = session.connection.execute("SELECT * FROM model_metadata ORDER BY name")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return [_summary(row) for row in rows]


def remove_model(db_path: str, name: str, config: DriftRunConfig = DEFAULT_CONFIG) -> None:
    """Delete the model's registration; its runs in ``drift_runs`` stay as history.
    Raises :class:`ModelNotFoundError` for a model that is not registered."""
    with open_duckdb(db_path, config, read_only=False) as session:
        apply_schema(session)
        removed = session.fetchall("DELETE FROM model_metadata WHERE name = $name "
                                   "RETURNING name", {"name": name})
    if not removed:
        raise ModelNotFoundError(f"model {name!r} is not registered")


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # an older file may hold JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return (value,)
    return tuple(str(v) for v in value)


def _summary(row: dict[str, Any]) -> ModelSummary:
    return ModelSummary(
        name=row["name"], status=row.get("status"), version=row.get("version"),
        feature_table=row.get("feature_table"), timestamp_column=row.get("timestamp_column"),
        key_column=row.get("key_column"), features=_names(row.get("features")),
        categorical_features=_names(row.get("categorical_features")),
        last_verdict=row.get("last_verdict"),
        last_model_drift_score=row.get("last_model_drift_score"),
        last_run_id=row.get("last_run_id"), last_run_at=row.get("last_run_at"),
        flagged=bool(row.get("flagged")), flagged_run_id=row.get("flagged_run_id"))
