"""Fixtures of the ``stat-guard`` command's tests: the command run as its own process
(``python -m workers.cli.main``, what the console script calls) with the fleet tests'
configuration (tests/fleet/conftest.py: the run's private Redis, database 13), and a small
DuckDB file whose feature table drifts in one feature.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from stat_guard.scheduled.engine import ensure_schema
from stat_guard.scheduled.models import ModelRegistration, add_model
from tests.fleet.conftest import CONFIG, CONFIG_PATH, ROOT, Fleet, redis_db, redis_for

__all__ = ["CONFIG", "CONFIG_PATH", "Fleet", "redis_db", "redis_for"]  # redis_db: the fixture

# 4000 events a minute apart; the current window (the last 5 %) has "amount" moved up by
# one whole unit, "stable" and "channel" drawn as before.
ROWS = 4000
SHIFT_FROM = 3790


@dataclass(frozen=True)
class Outcome:
    """What the command did: its exit code and both outputs."""

    code: int
    out: str
    err: str


def stat_guard(*args: str, db_path: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 60) -> Outcome:
    """Run ``stat-guard ARGS`` as a new process with the test configuration."""
    environment = {**os.environ, "STAT_GUARD_CONFIG": str(CONFIG_PATH),
                   "PYTHONUNBUFFERED": "1"}
    if db_path is not None:
        environment["STAT_GUARD_DUCKDB_PATH"] = str(db_path)
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-m", "workers.cli.main", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


def write_feature_table(path: Path, table: str = "payments") -> None:
    """The schema's tables and a feature table ``table`` (ts, entity_id, amount, stable,
    channel, label_text) in a DuckDB file at ``path``."""
    ensure_schema(str(path))
    connection = duckdb.connect(str(path))
    try:
        connection.execute("SELECT setseed(0.25)")
        connection.execute(f"""
            CREATE TABLE {table} AS SELECT
                TIMESTAMP '2026-01-01' + to_minutes(i) AS ts,
                i AS entity_id,
                random() + CASE WHEN i >= {SHIFT_FROM} THEN 1.0 ELSE 0.0 END AS amount,
                random() AS stable,
                ['web', 'app', 'shop'][i % 3 + 1] AS channel,
                'x' || (i % 7) AS label_text,
                i AS day_number
            FROM range({ROWS}) AS t(i)""")
    finally:
        connection.close()


PAYMENTS = ModelRegistration(name="payments", feature_table="payments", timestamp_column="ts",
                             features=("amount", "stable", "channel"),
                             categorical_features=("channel",), key_columns=("entity_id",))


@pytest.fixture
def feature_db(tmp_path: Path) -> Path:
    """A DuckDB file with the feature table ``payments`` and no model registered."""
    path = tmp_path / "cli.duckdb"
    write_feature_table(path)
    return path


@pytest.fixture
def model_db(feature_db: Path) -> Path:
    """``feature_db`` with the model ``payments`` registered over it."""
    add_model(str(feature_db), PAYMENTS, CONFIG.drift_run_config())
    return feature_db


