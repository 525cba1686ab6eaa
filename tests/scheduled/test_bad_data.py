"""Bad data never stops a run: each bad feature gets its own error entry, the rest are scored."""

from __future__ import annotations

import dataclasses
import math

import duckdb
import numpy as np
import pytest

from stat_guard.scheduled.engine import DEFAULT_CONFIG, ensure_schema, run_model_drift

SIZE = 20_000
HOSTILE = 'risk"; DROP TABLE model_metadata; --'


@pytest.fixture
def bad_model(make_model):
    rng = np.random.default_rng(3)
    with_gaps = rng.normal(size=SIZE)
    with_gaps[::10] = np.nan
    with_gaps[5::50] = np.inf
    with_gaps[7::50] = -np.inf
    columns = {
        "good": rng.normal(size=SIZE),
        "with_gaps": with_gaps,
        "all_nan": np.full(SIZE, np.nan),
        "all_null": [None] * SIZE,
        "constant": np.full(SIZE, 3.0),
        "text": [f"v{i}" for i in range(SIZE)],
        HOSTILE: rng.normal(size=SIZE),
        "segment": [None if i % 9 == 0 else f"s{i % 3}" for i in range(SIZE)],
    }
    columns["all_null"][0] = 1.0  # typed DOUBLE; then NULL again below
    columns["all_null"][0] = None
    features = [*columns, "missing_column", "__model__"]
    return make_model({k: v for k, v in columns.items()}, features, ["segment"])


def test_each_bad_feature_gets_its_error_and_the_rest_are_scored(bad_model):
    result = run_model_drift(bad_model, "m", "bad-1")
    f = result.features
    assert f["good"].verdict == "ok" and f["good"].error is None
    assert f[HOSTILE].verdict == "ok" and f[HOSTILE].n_current == 1_000
    assert f["segment"].verdict == "ok" and f["segment"].missing_current > 0

    gaps = f["with_gaps"]
    assert gaps.verdict == "ok" and math.isfinite(gaps.psi)
    assert gaps.missing_historical > 0 and any("NaN/Inf" in n for n in gaps.notes)
    assert gaps.n_historical + gaps.missing_historical == 4_000

    for name in ("all_nan", "all_null"):
        assert f[name].verdict == "insufficient_data", name
        assert "fewer than 30" in f[name].error
    assert f["constant"].verdict == "insufficient_data"
    assert "constant" in f["constant"].error
    assert f["text"].verdict == "error" and "not numeric" in f["text"].error
    assert f["missing_column"].verdict == "error" and "missing" in f["missing_column"].error
    assert f["__model__"].verdict == "error" and "reserved" in f["__model__"].error

    assert set(result.errors) == {"all_nan", "all_null", "constant", "text",
                                  "missing_column", "__model__"}
    assert result.verdict == "ok"
    assert result.model_drift.error == "no events for this model"


def test_hostile_names_are_quoted_not_executed(bad_model):
    run_model_drift(bad_model, "m", "bad-2")
    import duckdb
    connection = duckdb.connect(bad_model, read_only=True)
    try:
        [(models,)] = connection.execute("SELECT count(*) FROM model_metadata").fetchall()
        [(rows,)] = connection.execute(
            "SELECT count(*) FROM drift_runs WHERE feature = ?", [HOSTILE]).fetchall()
    finally:
        connection.close()
    assert models == 1 and rows == 1


def test_an_empty_feature_table_gives_insufficient_data(make_model):
    path = make_model({"x": np.array([], dtype=float)}, ["x"])
    result = run_model_drift(path, "m", "empty")
    assert result.features["x"].verdict == "insufficient_data"
    assert result.historical_window.rows == result.current_window.rows == 0
    assert result.verdict == "insufficient_data"


def test_a_model_without_features_is_an_error_with_its_reason(make_model):
    """NULL or empty features in model_metadata: an error run that says why (it was a
    bare insufficient_data, the reason lost)."""
    path = make_model({"x": np.arange(100.0)}, [])
    connection = duckdb.connect(path)
    try:
        connection.execute("UPDATE model_metadata SET features = NULL WHERE name = 'm'")
    finally:
        connection.close()
    result = run_model_drift(path, "m", "no-features")
    assert result.verdict == "error"
    assert result.errors == {"model_metadata": "no features listed in model_metadata"}
    record = result.stream_record()
    assert record.verdict == "error" and record.error == "no features listed in model_metadata"


def test_a_missing_feature_table_is_an_error_for_every_feature(make_model):
    path = make_model({"x": np.arange(100.0)}, ["x", "y"], table="features_m")
    import duckdb
    connection = duckdb.connect(path)
    connection.execute("DROP TABLE features_m")
    connection.close()
    result = run_model_drift(path, "m", "no-table")
    assert {f.verdict for f in result.features.values()} == {"error"}
    assert result.verdict == "error"
    assert "not found" in result.errors["x"]


def test_a_feature_that_outgrows_the_memory_limit_is_retried_alone_under_the_larger_one(
        tmp_path):
    """400,000 distinct categories do not fit DuckDB's 16 MB default: that one feature
    runs again under duckdb_memory_limit_max; without the larger limit it gets an error
    entry and the other features are still scored."""
    path = str(tmp_path / "wide.duckdb")
    ensure_schema(path)
    connection = duckdb.connect(path)
    try:
        connection.execute(
            "CREATE TABLE f AS SELECT i AS entity_id, TIMESTAMP '2025-01-01' + "
            "to_microseconds(i * 1000000) AS ts, 'customer-' || i::VARCHAR AS customer, "
            "(i % 997) / 997.0 AS x FROM range(400000) r(i)")
        connection.execute(
            "INSERT INTO model_metadata (name, status, features, categorical_features, "
            "feature_table) VALUES ('wide', 'production', ['customer', 'x'], ['customer'], "
            "'f')")
    finally:
        connection.close()
    assert DEFAULT_CONFIG.duckdb_memory_limit == "16MB"
    retried = run_model_drift(path, "wide", "wide-1")
    assert retried.errors == {}
    assert retried.features["customer"].n_historical == 80_000
    capped = run_model_drift(path, "wide", "wide-2", dataclasses.replace(
        DEFAULT_CONFIG, duckdb_memory_limit_max=DEFAULT_CONFIG.duckdb_memory_limit))
    assert set(capped.errors) == {"customer"}
    assert "Out of Memory" in capped.errors["customer"]
    assert capped.features["x"].verdict != "error"


def _broken_view_model(path: str) -> str:
    """A production model whose feature table is a view over a table since dropped."""
    ensure_schema(path)
    connection = duckdb.connect(path)
    try:
        connection.execute("CREATE TABLE base AS SELECT i AS entity_id, TIMESTAMP '2025-01-01'"
                           " + to_microseconds(i * 1000000) AS ts, i / 7.0 AS x "
                           "FROM range(1000) r(i)")
        connection.execute("CREATE VIEW features_broken AS SELECT * FROM base")
        connection.execute("INSERT INTO model_metadata (name, status, features, feature_table)"
                           " VALUES ('broken', 'production', ['x'], 'features_broken')")
        connection.execute("DROP TABLE base")
    finally:
        connection.close()
    return path


def test_a_view_over_a_dropped_table_is_an_error_result_not_an_exception(tmp_path):
    path = _broken_view_model(str(tmp_path / "broken.duckdb"))
    result = run_model_drift(path, "broken", "broken-1")
    assert result.verdict == "error"
    assert result.features["x"].verdict == "error"
    assert "could not be read" in result.errors["x"]
    assert "CatalogException" in result.errors["x"]
    record = result.stream_record()
    assert record.verdict == "error" and "could not be read" in record.error
    assert record.to_fields()["error"] == record.error
    connection = duckdb.connect(path, read_only=True)
    try:
        rows = connection.execute("SELECT feature, verdict FROM drift_runs WHERE run_id = "
                                  "'broken-1' ORDER BY feature").fetchall()
    finally:
        connection.close()
    assert ("x", "error") in rows and ("__model__", "error") in rows


def test_a_missing_duckdb_file_raises_and_is_never_created(tmp_path):
    from stat_guard.scheduled.engine import DuckDBFileMissingError, production_models

    path = tmp_path / "typo.duckdb"
    with pytest.raises(DuckDBFileMissingError, match="does not exist"):
        run_model_drift(str(path), "m", "r-1")
    with pytest.raises(DuckDBFileMissingError):
        production_models(str(path))
    with pytest.raises(DuckDBFileMissingError):
        ensure_schema(str(path), create=False)
    assert not path.exists()
