"""The write phase: a run's rows in ``drift_runs`` and its scores in ``model_metadata``.

One transaction, keyed by run id: a retried run deletes its own earlier rows and writes
them again, so retries rewrite and never duplicate.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from stat_guard.scheduled.connection import Session
from stat_guard.scheduled.results import FeatureDrift, ModelDriftResult
from stat_guard.scheduled.schema import (
    DRIFT_RUNS_COLUMNS,
    MODEL_ROW,
    PREDICTION_ROW,
    RESERVED_FEATURE_NAMES,
    apply_schema,
)
from stat_guard.scheduled.windows import WindowBounds

_COLUMN_NAMES = [name for name, _ in DRIFT_RUNS_COLUMNS]
_ROW = f"({', '.join('?' for _ in _COLUMN_NAMES)})"
# Rows a statement inserts: one multi-row VALUES is about 5x faster than executemany's
# statement a row (47 of the 75 ms a 20-feature run's write took).
INSERT_ROWS = 64


def write_run(session: Session, result: ModelDriftResult) -> int:
    """Replace the run's rows and update the model's last scores; returns rows written.
    The caller has run ``apply_schema`` in this session (once for a batch's writes)."""
    created_at = result.finished_at.astimezone(dt.UTC).replace(tzinfo=None)
    # A feature named like a reserved row is reported in the result and the model row only.
    rows = [_feature_row(result, f, result.historical_window, result.current_window,
                         created_at) for f in result.features.values()
            if f.name not in RESERVED_FEATURE_NAMES]
    model_drift = result.model_drift
    if model_drift.prediction is not None or model_drift.error:
        prediction = model_drift.prediction or FeatureDrift(
            PREDICTION_ROW, "prediction", "error", error=model_drift.error)
        row = _feature_row(result, prediction, model_drift.historical_window,
                           model_drift.current_window, created_at, name=PREDICTION_ROW)
        if model_drift.performance is not None:
            p = model_drift.performance
            row.update(performance_metric=p.metric, performance_historical=_db(p.historical),
                       performance_current=_db(p.current), labeled_historical=p.labeled_historical,
                       labeled_current=p.labeled_current)
        rows.append(row)
    rows.append(_model_row(result, created_at))

    # Two flat lists, not a list of {key, value} dicts: DuckDB 2.x imports numpy to bind
    # a dict parameter, and a drift process holds no numpy (docs/scheduled-drift.md).
    scored = [(name, f.psi) for name, f in result.features.items() if math.isfinite(f.psi)]
    score_names = [name for name, _ in scored]
    score_values = [psi for _, psi in scored]
    session.execute("BEGIN TRANSACTION")
    try:
        session.execute("DELETE FROM drift_runs WHERE run_id = $run_id AND model = $model",
                        {"run_id": result.run_id, "model": result.model})
        for start in range(0, len(rows), INSERT_ROWS):
            chunk = rows[start:start + INSERT_ROWS]
            session.connection.execute(
                f"INSERT INTO drift_runs ({', '.join(_COLUMN_NAMES)}) "
                f"VALUES {', '.join([_ROW] * len(chunk))}",
                [r.get(c) for r in chunk for c in _COLUMN_NAMES])
        session.execute(
            "UPDATE model_metadata SET last_model_drift_score = $score, "
            "last_feature_drift_scores = map($score_names::VARCHAR[], "
            "$score_values::DOUBLE[]), last_verdict = $verdict, last_run_id = $run_id, "
            "last_run_at = $run_at WHERE name = $model",
            {"score": _db(result.drift_score), "score_names": score_names,
             "score_values": score_values, "verdict": result.verdict,
             "run_id": result.run_id, "run_at": created_at, "model": result.model})
        session.execute("COMMIT")
    except BaseException:
        session.execute("ROLLBACK")
        raise
    return len(rows)


def flag(session: Session, model: str, run_id: str, reason: str) -> bool:
    """Mark the model flagged by ``run_id``; a second call with the same run id changes nothing."""
    apply_schema(session)
    changed = session.fetchall(
        "UPDATE model_metadata SET flagged = true, flag_reason = $reason, "
        "flagged_run_id = $run_id, flagged_at = now()::TIMESTAMP "
        "WHERE name = $model AND flagged_run_id IS DISTINCT FROM $run_id RETURNING name",
        {"model": model, "run_id": run_id, "reason": reason})
    return bool(changed)


def unflag(session: Session, model: str) -> bool | None:
    """Clear the model's ``flagged`` state, keeping the run that flagged it
    (``flagged_run_id``, ``flagged_at``, ``flag_reason``); whether it was flagged, None for
    an unknown model."""
    apply_schema(session)
    rows = session.fetchall("SELECT coalesce(flagged, false) FROM model_metadata "
                            "WHERE name = $model", {"model": model})
    if not rows:
        return None
    session.execute("UPDATE model_metadata SET flagged = false WHERE name = $model",
                    {"model": model})
    return bool(rows[0][0])


def _feature_row(result: ModelDriftResult, f: FeatureDrift, historical: WindowBounds | None,
                 current: WindowBounds | None, created_at: dt.datetime,
                 name: str | None = None) -> dict[str, Any]:
    kind = "prediction" if name == PREDICTION_ROW else f.kind
    return {
        "run_id": result.run_id, "model": result.model, "feature": name or f.name,
        "kind": kind, "verdict": f.verdict, "reasons": "; ".join(f.reasons + f.notes) or None,
        "error": f.error, "drift_score": _db(f.psi), **_window_cells(historical, current),
        "n_historical": f.n_historical, "n_current": f.n_current,
        "missing_historical": f.missing_historical, "missing_current": f.missing_current,
        "psi": _db(f.psi), "psi_critical": _db(f.psi_critical),
        "psi_pvalue": _db(f.psi_pvalue),
        "psi_bin_edges": list(f.psi_bin_edges) or None, "kl": _db(f.kl), "js": _db(f.js),
        "wasserstein": _db(f.wasserstein),
        "wasserstein_normalized": _db(f.wasserstein_normalized),
        "ks_statistic": _db(f.ks_statistic), "ks_pvalue": _db(f.ks_pvalue),
        "ks_error_bound": _db(f.ks_error_bound), "pvalue_adjusted": _db(f.pvalue_adjusted),
        "chi2": _db(f.chi2), "chi2_pvalue": _db(f.chi2_pvalue),
        "unseen_categories": list(f.unseen_categories) or None,
        "unseen_share": _db(f.unseen_share),
        "distinct_categories": f.distinct_categories or None, "created_at": created_at,
    }


def _model_row(result: ModelDriftResult, created_at: dt.datetime) -> dict[str, Any]:
    return {"run_id": result.run_id, "model": result.model, "feature": MODEL_ROW,
            "kind": "model", "verdict": result.verdict, "drift_score": _db(result.drift_score),
            "error": "; ".join(f"{k}: {v}" for k, v in result.errors.items())[:4000] or None,
            "ks_error_bound": _db(result.ks_error_bound),
            **_window_cells(result.historical_window, result.current_window),
            "created_at": created_at}


def _window_cells(historical: WindowBounds | None,
                  current: WindowBounds | None) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for label, bounds in (("historical", historical), ("current", current)):
        if bounds is None:
            continue
        cells[f"{label}_start"] = _timestamp(bounds.start)
        cells[f"{label}_end"] = _timestamp(bounds.end)
        cells[f"{label}_rows"] = bounds.rows
        cells[f"{label}_sampled"] = bounds.sampled_rows
    return cells


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return None  # a numeric time column: bounds stay in the result, not in the table


def _db(value: float | None) -> float | None:
    """NaN and ±Inf are stored as NULL."""
    return None if value is None or not math.isfinite(value) else float(value)
