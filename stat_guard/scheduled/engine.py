"""Scheduled drift over DuckDB: a model's features and predictions, historical vs current.

A run reads (a read-only connection: window bounds, quantile edges and bin counts in SQL),
closes the file, computes every statistic from those aggregates, then opens the file
again briefly to write the scores in one transaction. A batch of models does the same in
one read and one write session, and the models sharing a feature source share its scans.
No Celery here: the fleet's tasks call these functions. See docs/scheduled-drift.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
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
from stat_guard.scheduled.export import export_latest, export_metadata
from stat_guard.scheduled.results import (
    FeatureDrift,
    ModelDrift,
    ModelDriftResult,
    Performance,
)
from stat_guard.scheduled.schema import (
    RESERVED_FEATURE_NAMES,
    apply_schema,
    is_table,
    table_columns,
)
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
    "production_model_groups",
    "production_models",
    "run_model_drift",
    "run_models_drift",
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
    or ``write`` (the scores are being written); ``model`` names the model (a batch
    reports each model's steps)."""

    stage: str
    done: int = 0
    total: int = 0
    feature: FeatureDrift | None = None
    model: str = ""  # the model the step belongs to


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


def production_model_groups(db_path: str, config: DriftRunConfig = DEFAULT_CONFIG,
                            max_models: int = 0, status: str = "production"
                            ) -> list[list[str]]:
    """The models of ``status`` (``production``) grouped for :func:`run_models_drift`:
    models with the same feature table, time column and key columns (as
    ``model_metadata`` names them) in one group; a model without a feature table alone.
    Names sorted within a group, groups ordered by their first name. With ``max_models``
    above 0, a larger group is split into that many models or fewer, in parts of nearly
    equal size."""
    with open_duckdb(db_path, config, read_only=True) as session:
        if table_columns(session, "model_metadata") is None:
            return []
        cursor = session.connection.execute(
            "SELECT * FROM model_metadata WHERE status = $status ORDER BY name",
            {"status": status})
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    grouped: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        table = row.get("feature_table")
        key = (("", row["name"]) if not table else
               (table, row.get("timestamp_column") or "ts",
                *key_columns(row.get("key_column"))))
        grouped.setdefault(key, []).append(row["name"])
    groups = []
    for members in grouped.values():
        parts = math.ceil(len(members) / max_models) if max_models > 0 else 1
        size, extra = divmod(len(members), parts)
        start = 0
        for part in range(parts):
            end = start + size + (1 if part < extra else 0)
            groups.append(members[start:end])
            start = end
    return sorted(groups, key=lambda group: group[0])


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

    The one-model case of :func:`run_models_drift`.
    """
    [outcome] = run_models_drift(db_path, [(model, run_id)], config, progress)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def run_models_drift(db_path: str, runs: Sequence[tuple[str, str]],
                     config: DriftRunConfig = DEFAULT_CONFIG,
                     progress: ProgressCallback | None = None
                     ) -> list[ModelDriftResult | Exception]:
    """Run several models in one read session and one write session, sharing the scans
    of the models whose feature source is the same.

    ``runs`` holds ``(model, run_id)`` pairs. The answer has, in the same order, each
    run's :class:`ModelDriftResult` or the exception that run raised
    (:class:`ModelNotFoundError` for a model without a metadata row, anything raised while
    its part was read, scored or written): one model's failure never costs the others.
    What concerns every run raises for the whole batch: :class:`DuckDBBusyError` (the file
    stayed locked) and :class:`DuckDBFileMissingError` (no file).

    Models whose feature table, time column and sampling key are the same (the same
    ``Source``; the windows come from ``config``) form a group: its windows are planned
    once and its features aggregated in one ``aggregate_source`` call over the union of
    the group's features (a column declared numeric by one model and categorical by
    another is aggregated both ways). Each shared aggregate is scored once; the
    Benjamini–Hochberg adjustment, the verdicts and the model's verdict stay per model,
    over its own features, and the predictions (``model_events``) are read per model. A
    model's result is the one it gets when run alone.

    Timing figures are the batch's: ``started_at``, ``finished_at`` and ``duration_s``
    span the whole batch, ``read_lock_s``, ``write_lock_s`` and ``lock_wait_s`` are its
    two sessions' (the same in every result). ``bytes_fetched`` is the model's own reads
    (metadata, predictions) plus, for the first model of each group in ``runs``' order,
    the group's shared scans: the results' sum is what the batch fetched.

    ``progress`` gets each model's steps (:class:`RunProgress`, ``model`` set).
    """
    report = progress or (lambda _step: None)
    runs = [(str(model), str(run_id)) for model, run_id in runs]
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    read_timer, write_timer = PhaseTimer(), PhaseTimer()
    outcomes: list[ModelDriftResult | Exception | None] = [None] * len(runs)
    reads: list[_ModelRead] = []
    with open_duckdb(db_path, config, read_only=True, timer=read_timer) as session:
        for index, (model, run_id) in enumerate(runs):
            before = session.bytes_fetched
            try:
                metadata = _model_metadata(session, model)
                read = _ModelRead(index, model, run_id, metadata)
                report(RunProgress("read", 0, len(_declared_kinds(metadata)), model=model))
                _request_features(session, read, config)
            except Exception as exc:
                outcomes[index] = exc
                continue
            read.bytes_fetched += session.bytes_fetched - before
            reads.append(read)
        groups: dict[tuple[str, str, str, str], list[_ModelRead]] = {}
        for read in reads:
            if read.source is None:
                _report_features(read, report)
            else:
                groups.setdefault(_source_key(read.source), []).append(read)
        for members in groups.values():
            before = session.bytes_fetched
            try:
                _read_group(session, members, config)
            except Exception as exc:  # not a DuckDB error (those are the features' errors)
                for read in members:
                    outcomes[read.index] = exc
                continue
            finally:
                members[0].bytes_fetched += session.bytes_fetched - before
            for read in members:
                _report_features(read, report)
        for read in reads:
            if outcomes[read.index] is not None:
                continue
            before = session.bytes_fetched
            try:
                events = _read_events(session, read.model, read.metadata, config)
                read.model_drift = _model_drift(events, config)
            except Exception as exc:
                outcomes[read.index] = exc
            read.bytes_fetched += session.bytes_fetched - before

    results: list[tuple[int, ModelDriftResult]] = []
    for read in reads:
        if outcomes[read.index] is not None:
            continue
        try:
            result = _result(read, config, started_at, read_timer)
        except Exception as exc:
            outcomes[read.index] = exc
            continue
        outcomes[read.index] = result
        results.append((read.index, result))

    if results:
        for _, result in results:
            report(RunProgress("write", len(result.features), len(result.features),
                               model=result.model))
        with open_duckdb(db_path, config, read_only=False, timer=write_timer) as session:
            apply_schema(session)
            written = []
            for index, result in results:
                try:
                    write_run(session, result)
                except Exception as exc:
                    outcomes[index] = exc
                    continue
                written.append(result)
            # Each model's newest rows, then the metadata table once: what a run of each
            # model alone leaves in the Parquet copy.
            for result in written:
                _export(session, config, lambda r=result: export_latest(
                    session, config.results_dir, r.model, r.run_id))
            if written:
                _export(session, config, lambda: export_metadata(session, config.results_dir))
    finished_at = dt.datetime.now(dt.UTC)
    duration_s = time.perf_counter() - clock
    answers: list[ModelDriftResult | Exception] = []
    for outcome in outcomes:
        assert outcome is not None
        if isinstance(outcome, ModelDriftResult):
            outcome = dataclasses.replace(
                outcome, finished_at=finished_at, duration_s=duration_s,
                write_lock_s=write_timer.held_s,
                lock_wait_s=read_timer.waited_s + write_timer.waited_s)
        answers.append(outcome)
    return answers


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


@dataclasses.dataclass
class _ModelRead:
    """One model's part of a batch while it is read."""

    index: int  # its place in the batch's runs
    model: str
    run_id: str
    metadata: dict[str, Any]
    declared: dict[str, str | None] = dataclasses.field(default_factory=dict)
    errors: dict[str, FeatureDrift] = dataclasses.field(default_factory=dict)
    specs: list[FeatureSpec] = dataclasses.field(default_factory=list)  # to aggregate
    source: Source | None = None  # None: nothing to read (no table, no features)
    table: str | None = None
    plan: WindowPlan | None = None
    scored: list[FeatureDrift] = dataclasses.field(default_factory=list)
    model_drift: ModelDrift | None = None
    bytes_fetched: int = 0


def _request_features(session: Session, read: _ModelRead, config: DriftRunConfig) -> None:
    """The model's features to aggregate and its source; the features that cannot be read
    (a missing column, a wrong type, no table) get their error entries here."""
    metadata = read.metadata
    read.declared = declared = _declared_kinds(metadata)
    read.table = table = metadata.get("feature_table")
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
        for name, kind in declared.items():
            read.errors[name] = error_feature(name, kind or NUMERIC, missing_all)
        read.plan = _empty_plan(config.windows)
        return
    assert columns is not None and table
    for name, kind in declared.items():
        column_type = columns.get(name)
        kind = kind or (NUMERIC if column_type and is_numeric_type(column_type)
                        else CATEGORICAL)
        problem = _feature_problem(name, kind, column_type)
        if problem:
            read.errors[name] = error_feature(name, kind, problem)
        else:
            read.specs.append(FeatureSpec(name, kind, quote_ident(name)))
    keys = key_columns(metadata.get("key_column"))
    key = (", ".join(quote_ident(k) for k in keys)
           if keys and all(k in columns for k in keys) else "rowid")
    read.source = Source(relation=quote_ident(table), where="TRUE", params={},
                         ts=quote_ident(ts_name), key=key, rowid=is_table(session, table))


def _source_key(source: Source) -> tuple[str, str, str, str]:
    """Models whose sources have the same key share their windows and scans."""
    where = f"{source.where} {sorted(source.params.items())!r}"
    return source.relation, where, source.ts, source.key


def _read_group(session: Session, members: list[_ModelRead], config: DriftRunConfig) -> None:
    """Plan the windows of the members' one source and aggregate the union of their
    features in one call; score each aggregate once and give each member its own."""
    source, table = members[0].source, members[0].table
    assert source is not None
    # One spec per (column, kind); a column wanted both ways gets a second spec, under a
    # name no feature can have (a NUL character), so the two stay apart.
    union: dict[tuple[str, str], FeatureSpec] = {}
    taken: set[str] = set()
    for read in members:
        for spec in read.specs:
            key = (spec.name, spec.kind)
            if key not in union:
                name = spec.name if spec.name not in taken else f"{spec.name}\x00{spec.kind}"
                taken.add(name)
                union[key] = dataclasses.replace(spec, name=name)
    try:
        plan = plan_windows(session, source, config.windows)
        aggregates = aggregate_source(session, source, plan, list(union.values()),
                                      config.psi_bins, config.ks_bins,
                                      config.duckdb_memory_limit,
                                      memory_limit_max=config.duckdb_memory_limit_max)
    except duckdb.Error as exc:  # e.g. a view over a dropped table: CatalogException
        message = f"feature table {table!r} could not be read: {duckdb_error_text(exc)}"
        for read in members:
            for spec in read.specs:
                read.errors[spec.name] = error_feature(spec.name, spec.kind, message)
            read.plan = _empty_plan(config.windows)
        return
    plan = _with_sampled(plan, aggregates)
    by_name = {spec.name: key for key, spec in union.items()}
    failed = {by_name[name]: message for name, message in aggregates.errors.items()}
    scored: dict[tuple[str, str], FeatureDrift] = {}
    for name, aggregate in aggregates.features.items():
        key = by_name[name]
        if aggregate.spec.name != key[0]:
            aggregate = dataclasses.replace(
                aggregate, spec=dataclasses.replace(aggregate.spec, name=key[0]))
        scored[key] = score_feature(aggregate, config.max_categories)
    for read in members:
        read.plan = plan
        wanted = {(spec.name, spec.kind) for spec in read.specs}
        for key, message in failed.items():
            if key in wanted:
                read.errors[key[0]] = error_feature(key[0], key[1], message)
        read.scored = [scored[key] for key in scored if key in wanted]


def _report_features(read: _ModelRead, report: ProgressCallback) -> None:
    """The model's features for the progress callback: the ones not scored, then the
    scored ones."""
    total = len(read.declared)
    everything = [*read.errors.values(), *read.scored]
    for done, feature in enumerate(everything, start=1):
        report(RunProgress("feature", done, total, feature, model=read.model))


def _result(read: _ModelRead, config: DriftRunConfig, started_at: dt.datetime,
            read_timer: PhaseTimer) -> ModelDriftResult:
    """The model's result from its own features: Benjamini–Hochberg and the verdicts over
    them, the predictions, the model's verdict."""
    assert read.plan is not None and read.model_drift is not None
    judged = {**{f.name: f for f in read.scored}, **read.errors}
    judged = apply_verdicts(
        {name: judged[name] for name in _feature_order(read.metadata, judged)},
        config.thresholds)
    model_drift = read.model_drift
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
    return ModelDriftResult(
        run_id=read.run_id, model=read.model, verdict=overall.verdict,
        drift_score=overall.drift_score, features=judged, model_drift=model_drift,
        historical_window=read.plan.historical, current_window=read.plan.current,
        errors=errors,
        started_at=started_at, finished_at=dt.datetime.now(dt.UTC), duration_s=0.0,
        read_lock_s=read_timer.held_s, write_lock_s=0.0, bytes_fetched=read.bytes_fetched,
        ks_error_bound=max(bounds, default=math.nan),
        settings={"psi_bins": config.psi_bins, "ks_bins": config.ks_bins,
                  "windows": dataclasses.asdict(config.windows)})


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
                    ts="ts", key="hash(ts, prediction" + (", label)" if has_label else ")"),
                    rowid=True)
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
