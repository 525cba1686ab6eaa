"""The shared tables: an older database gains the columns it lacks; a complete one gets no DDL."""

from __future__ import annotations

import duckdb
import numpy as np

from stat_guard.scheduled import connection as connection_module
from stat_guard.scheduled.engine import run_model_drift
from stat_guard.scheduled.schema import DRIFT_RUNS_COLUMNS, MODEL_METADATA_COLUMNS


def _columns(path: str, table: str) -> set[str]:
    with duckdb.connect(path, read_only=True) as connection:
        return {name for (name,) in connection.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
        ).fetchall()}


def test_an_older_database_gains_the_missing_columns(make_model) -> None:
    rng = np.random.default_rng(3)
    path = make_model({"a": rng.normal(size=2_000)}, ["a"])
    with duckdb.connect(path) as connection:  # as an earlier release left it
        connection.execute("ALTER TABLE drift_runs DROP COLUMN ks_error_bound")
        connection.execute("ALTER TABLE model_metadata DROP COLUMN flagged_at")
    assert "ks_error_bound" not in _columns(path, "drift_runs")

    result = run_model_drift(path, "m", "r1")

    assert {n for n, t in DRIFT_RUNS_COLUMNS} <= _columns(path, "drift_runs")
    assert {n for n, _ in MODEL_METADATA_COLUMNS} <= _columns(path, "model_metadata")
    with duckdb.connect(path, read_only=True) as connection:
        [(bound,)] = connection.execute(
            "SELECT ks_error_bound FROM drift_runs WHERE run_id = 'r1' AND feature = 'a'"
        ).fetchall()
    assert bound == result.features["a"].ks_error_bound


def test_a_complete_schema_gets_no_ddl(make_model, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    path = make_model({"a": rng.normal(size=2_000)}, ["a"])
    run_model_drift(path, "m", "r1")
    statements: list[str] = []
    execute = connection_module.Session.execute

    def recording(self, sql, params=None):  # the real statement still runs
        statements.append(sql.lstrip().split(None, 1)[0].upper())
        return execute(self, sql, params)

    monkeypatch.setattr(connection_module.Session, "execute", recording)
    run_model_drift(path, "m", "r2")
    assert statements, "the write phase ran no statement at all"
    assert not {"CREATE", "ALTER"} & set(statements), statements
