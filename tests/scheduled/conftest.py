"""Fixtures for the scheduled drift engine: real DuckDB files in temporary directories."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import duckdb
import numpy as np
import pytest

from demo.duckdb_data import DemoSummary, generate_demo_data
from stat_guard.scheduled.engine import ensure_schema


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """The demo database, 100,000 rows per model (historical 20,000, current 5,000)."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    return generate_demo_data(str(path), rows_per_model=100_000, seed=7)


@pytest.fixture
def make_model(tmp_path) -> Callable[..., str]:
    """A database with one model whose feature table is built from numpy columns."""

    def build(columns: dict[str, Sequence], features: Sequence[str],
              categorical: Sequence[str] = (), name: str = "m", table: str = "features_m",
              timestamps: np.ndarray | None = None, status: str = "production",
              events: bool = False) -> str:
        path = str(tmp_path / f"{name.replace('/', '_')}.duckdb")
        ensure_schema(path)
        size = len(next(iter(columns.values()))) if columns else 0
        if timestamps is None:
            timestamps = np.arange(size)
        start = dt.datetime(2025, 1, 1)
        connection = duckdb.connect(path)
        try:
            names = ["entity_id", "ts", *columns]
            types = ["BIGINT", "TIMESTAMP", *(_duck_type(v) for v in columns.values())]
            connection.execute(
                f"CREATE TABLE {_q(table)} ("
                + ", ".join(f"{_q(n)} {t}" for n, t in zip(names, types, strict=True)) + ")")
            lists = [list(range(size)),
                     [start + dt.timedelta(seconds=int(t)) for t in timestamps[:size]],
                     *([_py(v) for v in values] for values in columns.values())]
            if size:
                unnested = ", ".join(f"unnest(?::{t}[])" for t in types)
                connection.execute(f"INSERT INTO {_q(table)} SELECT {unnested}", lists)
            connection.execute(
                "INSERT INTO model_metadata (name, status, features, categorical_features, "
                "feature_table) VALUES (?, ?, ?, ?, ?)",
                [name, status, list(features), list(categorical), table])
            if events:
                connection.execute(
                    "INSERT INTO model_events SELECT unnest(?::TIMESTAMP[]), ?, "
                    "unnest(?::DOUBLE[]), unnest(?::DOUBLE[])",
                    [lists[1], name, [float(i % 7) for i in range(size)],
                     [float(i % 5) for i in range(size)]])
        finally:
            connection.close()
        return path

    return build


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duck_type(values: Sequence) -> str:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, str):
        return "VARCHAR"
    if isinstance(sample, int | np.integer):
        return "BIGINT"
    return "DOUBLE"


def _py(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def window_values(db_path: str, table: str, column: str, start, end,
                  where: str = "TRUE") -> np.ndarray:
    """Raw values of one window, pulled for checking only (never in the engine)."""
    connection = duckdb.connect(db_path, read_only=True)
    try:
        rows = connection.execute(
            f"SELECT CAST({_q(column)} AS DOUBLE) FROM {_q(table)} "
            f"WHERE ts BETWEEN ? AND ? AND {where}", [start, end]).fetchall()
    finally:
        connection.close()
    return np.array([r[0] for r in rows], dtype=np.float64)
