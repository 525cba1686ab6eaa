"""Scheduled drift over DuckDB: one model's features and predictions, historical vs current.

A run reads (a read-only connection: window bounds, quantile edges and bin counts in SQL),
closes the file, computes every statistic from those aggregates, then opens the file
again briefly to write the scores in one transaction. No Celery here: the fleet's tasks
call these functions. See docs/scheduled-drift.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import duckdb

from stat_guard.scheduled.aggregates import (
    CATEGORICAL,
    NUMERIC,
    FeatureSpec,
    SourceAggregates,
    aggregate_source,
)
from stat_guard.scheduled.config import DEFAULT_CONFIG, DriftRunConfig, WindowConfig
from stat_guard.scheduled.connection import (
    DuckDBBusyError,
    DuckDBFileMissingError,
    PhaseTimer,
    Session,
    duckdb_error_text,
    open_duckdb,
    quote_ident,
)
from stat_guard.scheduled.export import export_metadata, export_run
from stat_guard.scheduled.results import (
    FeatureDrift,
    ModelDrift,
    ModelDriftResult,
    Performance,
)
from stat_guard.scheduled.schema import RESERVED_FEATURE_NAMES, apply_schema, table_columns
from stat_guard.scheduled.scoring import apply_verdicts, error_feature, score_feature
from stat_guard.scheduled.windows import (
    CURRENT,
    HISTORICAL,
    Source,
    WindowBounds,
    WindowPlan,
    plan_windows,
)
from stat_guard.scheduled.writes import flag, unflag, write_run
from stat_guard.verdict import ERROR as ERROR_VERDICT
from stat_guard.verdict import model_verdict

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONFIG",
    "DriftRunConfig",
    "DuckDBBusyError",
    "DuckDBFileMissingError",
    "FeatureDrift",
    "ModelDrift",
    "ModelDriftResult",
    "ModelNotFoundError",
    "Performance",
    "RunProgress",
    "WindowBounds",
    "WindowConfig",
    "ensure_schema",
    "flag_model",
    "is_numeric_type",
    "production_models",
    "run_model_drift",
    "unflag_model",
]

# A model whose model_metadata row lists no features: its run's error, under this key.
NO_FEATURES = "no features listed in model_metadata"
NO_FEATURES_KEY = "model_metadata"

_NUMERIC_TYPE = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|REAL|DOUBLE|DECIMAL(\(\d+,\s*\d+\))?)$")


class ModelNotFoundError(LookupError):
    """The model has no row in ``model_metadata``."""


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """One step of a run, for a progress line: ``stage`` is ``read`` (the windows and
    aggregates are being read), ``feature`` (``feature`` was scored: ``done`` of ``total``)
    or ``write`` (the scores are being written)."""

    stage: str
    done: int = 0
    total: int = 0
    feature: FeatureDrift | None = None


ProgressCallback = Callable[[RunProgress], None]


def is_numeric_type(column_type: str) -> bool:
    """A DuckDB column type the engine compares as numbers (integers, floats, decimals)."""
    return bool(_NUMERIC_TYPE.match(column_type))


def key_columns(key_column: str | None) -> list[str]:
    """The sampling key's columns: ``model_metadata.key_column`` holds one name or several
    separated by commas (the key is then the hash of all of them)."""
    return [name.strip() for name in (key_column or "entity_id").split(",") if name.strip()]


def ensure_schema(db_path: str, config: DriftRunConfig = DEFAULT_CONFIG,
                  create: bool = True) -> None:
    """Create ``model_metadata``, ``model_events`` and ``drift_runs`` if missing (and the
    file itself when ``create``; otherwise a missing file raises
    :class:`DuckDBFileMissingError`)."""
    with open_duckdb(db_path, config, read_only=False, create=create) as session:
        apply_schema(session)


def production_models(db_path: str, config: DriftRunConfig = DEFAULT_CONFIG) -> list[str]:
    """Names of the models whose status is ``production``, sorted."""
    with open_duckdb(db_path, config, read_only=True) as session:
        if table_columns(session, "model_metadata") is None:
            return []
        rows = session.fetchall("SELECT name FROM model_metadata "
                                "WHERE status = 'production' ORDER BY name")
    return [name for (name,) in rows]


def flag_model(db_path: str, model: str, run_id: str, verdict: str,
               config: DriftRunConfig = DEFAULT_CONFIG, reason: str | None = None) -> None:
    """Mark a model flagged by a run (reactions); idempotent per run id.

    Sets ``flagged``, ``flag_reason`` (``reason`` or the verdict), ``flagged_run_id`` and
    ``flagged_at``; a repeated call with the same run id changes nothing, and an unknown
    model is a no-op.
    """
    with open_duckdb(db_path, config, read_only=False) as session:
        if flag(session, model, run_id, reason or verdict):
            _export(session, config, lambda: export_metadata(session, config.results_dir))


def unflag_model(db_path: str, model: str, config: DriftRunConfig = DEFAULT_CONFIG) -> bool:
    """Clear a model's ``flagged`` state (an operator looked at the drift); the run that
    flagged it (``flagged_run_id``, ``flagged_at``, ``flag_reason``) stays as history.
    Returns whether it was flagged; raises :class:`ModelNotFoundError` for an unknown model.
    """
    with open_duckdb(db_path, config, read_only=False) as session:
        was_flagged = unflag(session, model)
        if was_flagged is None:
            raise ModelNotFoundError(f"model {model!r} is not in model_metadata")
        if was_flagged:
            _export(session, config, lambda: export_metadata(session, config.results_dir))
    return was_flagged


def run_model_drift(db_path: str, model: str, run_id: str,
                    config: DriftRunConfig = DEFAULT_CONFIG,
                    progress: ProgressCallback | None = None) -> ModelDriftResult:
    """Compare the model's current window with its historical one and store the scores.

    Raises :class:`ModelNotFoundError` for an unknown model, :class:`DuckDBBusyError`
    when the file stays locked and :class:`DuckDBFileMissingError` when there is no file;
    bad data in a feature never raises, it is reported, and so is a feature table (or
    ``model_events``) that exists but cannot be read (a view over a dropped table): every
    feature then gets an error entry naming the DuckDB error.

    ``progress`` (optional) is told when the read begins, after each feature is scored
    and before the write (:class:`RunProgress`).
    """
    report = progress or (lambda _step: None)
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    read_timer, write_timer = PhaseTimer(), PhaseTimer()
    with open_duckdb(db_path, config, read_only=True, timer=read_timer) as session:
        metadata = _model_metadata(session, model)
        report(RunProgress("read", 0, len(_declared_kinds(metadata))))
        features, feature_errors, feature_plan = _read_features(session, metadata, config,
                                                                report)
        events = _read_events(session, model, metadata, config)
        bytes_fetched = session.bytes_fetched

    judged = {**{f.name: f for f in features}, **feature_errors}
    judged = apply_verdicts({name: judged[name] for name in _feature_order(metadata, judged)},
                            config.thresholds)
    model_drift = _model_drift(events, config)
    everything = list(judged.values())
    if model_drift.prediction is not None:
        everything.append(model_drift.prediction)
    overall = model_verdict((f.verdict, f.psi) for f in everything)
    errors = {name: f.error for name, f in judged.items() if f.error}
    if not judged:
        # No feature to judge (none listed): the run says so instead of a bare
        # insufficient_data; an error when nothing at all was scored.
        errors[NO_FEATURES_KEY] = NO_FEATURES
        if model_drift.prediction is None:
            overall = dataclasses.replace(overall, verdict=ERROR_VERDICT)
    bounds = [f.ks_error_bound for f in everything if math.isfinite(f.ks_error_bound)]
    result = ModelDriftResult(
        run_id=run_id, model=model, verdict=overall.verdict, drift_score=overall.drift_score,
        features=judged, model_drift=model_drift,
        historical_window=feature_plan.historical, current_window=feature_plan.current,
        errors=errors,
        started_at=started_at, finished_at=dt.datetime.now(dt.UTC), duration_s=0.0,
        read_lock_s=read_timer.held_s, write_lock_s=0.0, bytes_fetched=bytes_fetched,
        ks_error_bound=max(bounds, default=math.nan),
        settings={"psi_bins": config.psi_bins, "ks_bins": config.ks_bins,
                  "windows": dataclasses.asdict(config.windows)})

    report(RunProgress("write", len(judged), len(judged)))
    with open_duckdb(db_path, config, read_only=False, timer=write_timer) as session:
        write_run(session, result)
        _export(session, config, lambda: export_run(session, config.results_dir, model, run_id))
    finished_at = dt.datetime.now(dt.UTC)
    return dataclasses.replace(
        result, finished_at=finished_at, duration_s=time.perf_counter() - clock,
        write_lock_s=write_timer.held_s, lock_wait_s=read_timer.waited_s + write_timer.waited_s)


def _export(session: Session, config: DriftRunConfig, write: Callable[[], None]) -> None:
    """Refresh the Parquet copy readers use; the scores are committed already, so a copy
    that cannot be written (a full disk, a read-only directory) is logged, not raised."""
    if not config.results_dir:
        return
    try:
        write()
    except (OSError, duckdb.Error) as exc:
        logger.warning("results copy in %s not refreshed: %s", config.results_dir, exc)


# ---- read phase -------------------------------------------------------------------


def _model_metadata(session: Session, model: str) -> dict[str, Any]:
    if table_columns(session, "model_metadata") is None:
        raise ModelNotFoundError(f"no model_metadata table in the database (model {model!r})")
    cursor = session.connection.execute("SELECT * FROM model_metadata WHERE name = $name",
                                        {"name": model})
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    if row is None:
        raise ModelNotFoundError(f"model {model!r} is not in model_metadata")
    return dict(zip(names, row, strict=True))


def _name_list(value: Any) -> list[str] | None:
    """Feature names from a list column or JSON text (a list of names, or name → kind)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        return [str(k) for k in value]
    return [str(v) for v in value]


def _declared_kinds(metadata: dict[str, Any]) -> dict[str, str | None]:
    """name → kind as declared; None where the column type decides."""
    raw = metadata.get("features")
    if isinstance(raw, str):
        raw = json.loads(raw)
    if isinstance(raw, dict):
        return {str(k): (CATEGORICAL if str(v).lower() == CATEGORICAL else NUMERIC)
                for k, v in raw.items()}
    names = _name_list(raw) or []
    categorical = _name_list(metadata.get("categorical_features"))
    if categorical is None:
        return dict.fromkeys(names)
    return {n: CATEGORICAL if n in categorical else NUMERIC for n in names}


def _feature_order(metadata: dict[str, Any], judged: dict[str, FeatureDrift]) -> list[str]:
    ordered = [n for n in _declared_kinds(metadata) if n in judged]
    return ordered + [n for n in judged if n not in ordered]


def _read_features(session: Session, metadata: dict[str, Any], config: DriftRunConfig,
                   report: ProgressCallback
                   ) -> tuple[list[FeatureDrift], dict[str, FeatureDrift], WindowPlan]:
    declared = _declared_kinds(metadata)
    errors: dict[str, FeatureDrift] = {}
    table = metadata.get("feature_table")
    columns = table_columns(session, table) if table else None
    ts_name = metadata.get("timestamp_column") or "ts"
    missing_all = None
    if not declared:
        missing_all = NO_FEATURES
    elif columns is None:
        missing_all = f"feature table {table!r} not found"
    elif ts_name not in columns:
        missing_all = f"timestamp column {ts_name!r} not in feature table {table!r}"
    if missing_all:
        for done, (name, kind) in enumerate(declared.items(), start=1):
            errors[name] = error_feature(name, kind or NUMERIC, missing_all)
            report(RunProgress("feature", done, len(declared), errors[name]))
        return [], errors, _empty_plan(config.windows)

    specs = []
    for name, kind in declared.items():
        column_type = columns.get(name)
        kind = kind or (NUMERIC if column_type and is_numeric_type(column_type)
                        else CATEGORICAL)
        problem = _feature_problem(name, kind, column_type)
        if problem:
            errors[name] = error_feature(name, kind, problem)
        else:
            specs.append(FeatureSpec(name, kind, quote_ident(name)))

    keys = key_columns(metadata.get("key_column"))
    key = (", ".join(quote_ident(k) for k in keys)
           if keys and all(k in columns for k in keys) else "rowid")
    source = Source(relation=quote_ident(table), where="TRUE", params={},
                    ts=quote_ident(ts_name), key=key)
    try:
        plan = plan_windows(session, source, config.windows)
        aggregates = aggregate_source(session, source, plan, specs, config.psi_bins,
                                      config.ks_bins, config.duckdb_memory_limit,
                                      memory_limit_max=config.duckdb_memory_limit_max)
    except duckdb.Error as exc:  # e.g. a view over a dropped table: CatalogException
        message = f"feature table {table!r} could not be read: {duckdb_error_text(exc)}"
        for spec in specs:
            errors[spec.name] = error_feature(spec.name, spec.kind, message)
        for done, failed in enumerate(errors.values(), start=1):
            report(RunProgress("feature", done, len(declared), failed))
        return [], errors, _empty_plan(config.windows)
    plan = _with_sampled(plan, aggregates)
    for name, message in aggregates.errors.items():
        kind = next(s.kind for s in specs if s.name == name)
        errors[name] = error_feature(name, kind, message)
    total = len(declared)
    done = 0
    for failed in errors.values():  # not scored (a missing column, a wrong type)
        done += 1
        report(RunProgress("feature", done, total, failed))
    scored = []
    for aggregate in aggregates.features.values():
        scored.append(score_feature(aggregate, config.max_categories))
        done += 1
        report(RunProgress("feature", done, total, scored[-1]))
    return scored, errors, plan


def _feature_problem(name: str, kind: str, column_type: str | None) -> str | None:
    if name in RESERVED_FEATURE_NAMES:
        return f"{name!r} is a reserved name in drift_runs"
    if "\x00" in name:
        return "feature name contains a NUL character"
    if column_type is None:
        return "column missing from the feature table"
    if kind == NUMERIC and not is_numeric_type(column_type):
        return f"column type {column_type} is not numeric"
    return None


def _with_sampled(plan: WindowPlan, aggregates: SourceAggregates) -> WindowPlan:
    return dataclasses.replace(
        plan,
        historical=dataclasses.replace(
            plan.historical, sampled_rows=aggregates.sampled_rows.get(HISTORICAL, 0)),
        current=dataclasses.replace(
            plan.current, sampled_rows=aggregates.sampled_rows.get(CURRENT, 0)))


def _empty_plan(windows: WindowConfig) -> WindowPlan:
    def empty(name: str, lo: float, hi: float) -> WindowBounds:
        return WindowBounds(name, lo, hi, None, None, 0, 0, "all rows")

    return WindowPlan(0, empty(HISTORICAL, windows.historical_start, windows.historical_end),
                      empty(CURRENT, 1 - windows.current_fraction, 1.0), "FALSE", "FALSE")


_PERFORMANCE_SQL = {
    NUMERIC: ("mae", "avg(abs(prediction - label)) FILTER (WHERE isfinite(prediction) "
                     "AND isfinite(label))",
              "count(*) FILTER (WHERE isfinite(prediction) AND isfinite(label))"),
    CATEGORICAL: ("accuracy", "avg(CASE WHEN prediction = label THEN 1.0 ELSE 0.0 END) "
                              "FILTER (WHERE prediction IS NOT NULL AND label IS NOT NULL)",
                  "count(*) FILTER (WHERE prediction IS NOT NULL AND label IS NOT NULL)"),
}


def _read_events(session: Session, model: str, metadata: dict[str, Any],
                 config: DriftRunConfig) -> dict[str, Any]:
    """Prediction distribution and performance per window, from ``model_events``."""
    kind = CATEGORICAL if (metadata.get("prediction_kind") or "") == CATEGORICAL else NUMERIC
    columns = table_columns(session, "model_events")
    if columns is None or not {"ts", "model", "prediction"} <= set(columns):
        return {"kind": kind, "error": "no model_events table with ts, model, prediction"}
    metric, value_sql, count_sql = _PERFORMANCE_SQL[kind]
    has_label = "label" in columns
    source = Source(relation="model_events", where="model = $model", params={"model": model},
                    ts="ts", key="hash(ts, prediction" + (", label)" if has_label else ")"))
    spec = FeatureSpec("prediction", kind, "prediction")
    extras = {"performance": value_sql, "labeled": count_sql} if has_label else {}
    try:
        plan = plan_windows(session, source, config.windows)
        aggregates = aggregate_source(session, source, plan, [spec], config.psi_bins,
                                      config.ks_bins, config.duckdb_memory_limit, extras,
                                      memory_limit_max=config.duckdb_memory_limit_max)
    except duckdb.Error as exc:
        return {"kind": kind,
                "error": f"model_events could not be read: {duckdb_error_text(exc)}"}
    return {"kind": kind, "metric": metric if has_label else None,
            "plan": _with_sampled(plan, aggregates), "aggregates": aggregates}


def _model_drift(events: dict[str, Any], config: DriftRunConfig) -> ModelDrift:
    if "error" in events:
        return ModelDrift(None, None, None, None, events["error"])
    plan: WindowPlan = events["plan"]
    aggregates: SourceAggregates = events["aggregates"]
    if plan.total_rows == 0:
        return ModelDrift(None, None, plan.historical, plan.current,
                          "no events for this model")
    if "prediction" in aggregates.errors:
        prediction = error_feature("prediction", events["kind"],
                                   aggregates.errors["prediction"])
    else:
        prediction = score_feature(aggregates.features["prediction"], config.max_categories)
    prediction = apply_verdicts({"prediction": prediction}, config.thresholds)["prediction"]
    performance = None
    if events["metric"]:
        cells = aggregates.extras
        performance = Performance(
            events["metric"],
            _float(cells.get(HISTORICAL, {}).get("performance")),
            _float(cells.get(CURRENT, {}).get("performance")),
            int(cells.get(HISTORICAL, {}).get("labeled") or 0),
            int(cells.get(CURRENT, {}).get("labeled") or 0))
    return ModelDrift(prediction, performance, plan.historical, plan.current)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
