"""The Parquet copy of the results: written after each run and flag, readable while runs
write the DuckDB file, and never the reason a run fails."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from stat_guard.scheduled.engine import DriftRunConfig, flag_model, run_model_drift
from stat_guard.scheduled.export import METADATA_FILE, default_results_dir, latest_file
from workers.config import load_config


def _read(path: Path, query: str = "SELECT * FROM t") -> list[dict]:
    connection = duckdb.connect()
    try:
        connection.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
        cursor = connection.execute(query)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()


@pytest.fixture
def model_db(make_model) -> str:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(0, 1, 4000), rng.normal(3, 1, 1000)])
    return make_model({"x": values, "y": rng.normal(0, 1, 5000)}, ["x", "y"],
                      name="risk/v2", table="features_risk")


def test_a_run_writes_its_rows_and_the_metadata(model_db, tmp_path):
    results = tmp_path / "results"
    config = DriftRunConfig(results_dir=str(results))
    run_model_drift(model_db, "risk/v2", "risk/v2@1", config)
    latest = latest_file(str(results), "risk/v2")
    assert latest.name == "risk%2Fv2.parquet" and latest.parent == results / "latest"
    rows = _read(latest)
    assert {row["run_id"] for row in rows} == {"risk/v2@1"}
    by_feature = {row["feature"]: row for row in rows}
    assert by_feature["x"]["verdict"] == "drift" and by_feature["y"]["verdict"] == "ok"
    (metadata,) = _read(results / METADATA_FILE)
    assert metadata["name"] == "risk/v2" and metadata["last_run_id"] == "risk/v2@1"
    assert not any(p.name.endswith(".tmp") for p in results.rglob("*"))

    # The next run replaces the copy; no run's rows are mixed with another's.
    run_model_drift(model_db, "risk/v2", "risk/v2@2", config)
    assert {row["run_id"] for row in _read(latest)} == {"risk/v2@2"}
    assert _read(results / METADATA_FILE)[0]["last_run_id"] == "risk/v2@2"


def test_a_reader_of_the_copy_does_not_hold_up_a_run(model_db, tmp_path):
    """A notebook keeps a connection open on the copy for the whole time: the run does
    not wait for it (an open read-only handle on the DuckDB file would block it)."""
    results = tmp_path / "results"
    # A blocked open would wait at least 1 s before its second try: far from the time
    # an unblocked open takes, even on a loaded machine.
    config = DriftRunConfig(results_dir=str(results), lock_attempts=2,
                            lock_base_delay_s=1.0, lock_max_delay_s=1.0)
    run_model_drift(model_db, "risk/v2", "risk/v2@1", config)
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, duckdb\n"
         "c = duckdb.connect()\n"
         "c.execute(\"CREATE VIEW v AS SELECT * FROM read_parquet('\" + sys.argv[1] + \"')\")\n"
         "print(c.execute('SELECT count(*) FROM v').fetchone()[0], flush=True)\n"
         "time.sleep(8)\n",
         str(latest_file(str(results), "risk/v2"))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert int(reader.stdout.readline()) >= 3
        result = run_model_drift(model_db, "risk/v2", "risk/v2@2", config)
        assert result.lock_wait_s < 0.5
        assert reader.poll() is None  # still reading while the run wrote
    finally:
        reader.kill()
        reader.wait(timeout=10)
    assert {r["run_id"] for r in _read(latest_file(str(results), "risk/v2"))} == {"risk/v2@2"}


def test_a_flag_refreshes_the_metadata_copy(model_db, tmp_path):
    results = tmp_path / "results"
    config = DriftRunConfig(results_dir=str(results))
    run_model_drift(model_db, "risk/v2", "risk/v2@1", config)
    assert _read(results / METADATA_FILE)[0]["flagged"] is not True
    flag_model(model_db, "risk/v2", "risk/v2@1", "drift", config)
    (row,) = _read(results / METADATA_FILE)
    assert row["flagged"] is True and row["flagged_run_id"] == "risk/v2@1"


def test_a_copy_that_cannot_be_written_is_logged_not_raised(model_db, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the results directory should be")
    config = DriftRunConfig(results_dir=str(blocker))
    with caplog.at_level(logging.WARNING, logger="stat_guard.scheduled.engine"):
        result = run_model_drift(model_db, "risk/v2", "risk/v2@1", config)
    assert result.verdict == "drift"
    assert any("results copy in" in r.getMessage() and str(blocker) in r.getMessage()
               for r in caplog.records)
    # The scores are in the database all the same.
    connection = duckdb.connect(model_db, read_only=True)
    try:
        count = connection.execute("SELECT count(*) FROM drift_runs WHERE run_id = ?",
                                   ["risk/v2@1"]).fetchone()[0]
    finally:
        connection.close()
    assert count >= 3


def test_no_results_dir_writes_no_copy(model_db, tmp_path):
    run_model_drift(model_db, "risk/v2", "risk/v2@1", DriftRunConfig())
    assert not list(Path(model_db).parent.glob("*.results"))


@pytest.mark.parametrize("model, name", [
    ("churn_v3", "churn_v3.parquet"),
    ("a/b", "a%2Fb.parquet"),
    ("..", "%2E..parquet"),
    (".hidden", "%2Ehidden.parquet"),
    ("50%", "50%25.parquet"),
])
def test_model_names_make_safe_file_names(model, name):
    path = latest_file("/r", model)
    assert path.name == name and path.parent == Path("/r/latest")


def test_the_fleet_configuration_places_the_copy_beside_the_file(tmp_path):
    base = tmp_path / "App.yaml"
    base.write_text("duckdb:\n  path: /data/features.duckdb\n")
    assert load_config(base, environ={}).results_dir() == "/data/features.results"
    assert default_results_dir("/data/features.duckdb") == "/data/features.results"
    assert load_config(base, environ={}).drift_run_config().results_dir == \
        "/data/features.results"
    (tmp_path / "off.yaml").write_text(
        "duckdb:\n  path: /data/f.duckdb\n  export_results: false\n")
    assert load_config(tmp_path / "off.yaml", environ={}).drift_run_config().results_dir == ""
    (tmp_path / "elsewhere.yaml").write_text(
        "duckdb:\n  path: /data/f.duckdb\n  results_dir: /srv/results\n")
    assert load_config(tmp_path / "elsewhere.yaml", environ={}).results_dir() == "/srv/results"
