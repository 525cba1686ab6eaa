"""A batch of models: the models sharing a feature table share its scans, and each model's
result is the one it gets when run alone, statistic by statistic."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from stat_guard.scheduled import engine
from stat_guard.scheduled.engine import (
    ModelDriftResult,
    ModelNotFoundError,
    ensure_schema,
    production_model_groups,
    run_model_drift,
    run_models_drift,
)
from stat_guard.scheduled.export import METADATA_FILE, latest_file

# model -> (table, features, categorical features)
MODELS = {
    "base": ("shared", ["a", "b", "c"], []),
    "twin": ("shared", ["a", "b", "c"], []),
    "extra": ("shared", ["a", "b", "c", "e"], ["e"]),
    "as_category": ("shared", ["a", "d"], ["d"]),
    "as_number": ("shared", ["d", "b", "missing"], []),
    "elsewhere": ("other", ["x", "y"], []),
}
SHARED = {"base", "twin", "extra", "as_category", "as_number"}
# Columns that change between a run and its copy.
VOLATILE = {"run_id", "created_at"}


@pytest.fixture(scope="module")
def batch_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """60,000 rows a table: 12,000 / 3,000-row windows, so the cells use the grid (above
    8,192 rows) and the current window the unnested GROUP BY."""
    path = str(tmp_path_factory.mktemp("batch") / "batch.duckdb")
    ensure_schema(path)
    connection = duckdb.connect(path)
    try:
        connection.execute("SELECT setseed(0.25)")
        recent = "i >= 57000"
        connection.execute(f"""
            CREATE TABLE shared AS SELECT i AS entity_id,
                TIMESTAMP '2026-01-01' + to_seconds(i * 60) AS ts,
                random() + CASE WHEN {recent} THEN 0.2 ELSE 0 END AS a,
                sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS b,
                CASE WHEN random() < 0.02 THEN NULL ELSE random() * 10 END AS c,
                CAST(floor(random() * CASE WHEN {recent} THEN 9 ELSE 6 END) AS BIGINT) AS d,
                ['red', 'green', 'blue'][1 + CAST(floor(random() * 3) AS INTEGER)] AS e
            FROM range(60000) r(i)""")
        connection.execute("""
            CREATE TABLE other AS SELECT i AS entity_id,
                TIMESTAMP '2026-01-01' + to_seconds(i * 60) AS ts,
                random() AS x, random() * random() AS y
            FROM range(30000) r(i)""")
        for name, (table, features, categorical) in MODELS.items():
            connection.execute(
                "INSERT INTO model_metadata (name, status, features, categorical_features, "
                "feature_table) VALUES (?, 'production', ?, ?, ?)",
                [name, features, categorical, table])
        connection.execute(
            "INSERT INTO model_events SELECT ts, m, CAST(entity_id % 7 AS DOUBLE), "
            "CAST(entity_id % 5 AS DOUBLE) FROM shared, (VALUES ('base'), ('extra')) v(m)")
        connection.execute("INSERT INTO model_metadata (name, status, features, "
                           "feature_table) VALUES ('staged', 'staging', ['a'], 'shared')")
    finally:
        connection.close()
    return path


def _rows(db_path: str, run_id: str) -> dict[str, dict]:
    connection = duckdb.connect(db_path, read_only=True)
    try:
        cursor = connection.execute("SELECT * FROM drift_runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return {row["feature"]: {k: v for k, v in row.items() if k not in VOLATILE}
            for row in rows}


def _figures(result: ModelDriftResult) -> dict:
    fields = result.stream_record().to_fields()
    for name in ("run_id", "started_at", "finished_at", "duration_s", "read_lock_s",
                 "write_lock_s", "display_key"):
        fields.pop(name, None)
    return fields


def _displays(result: ModelDriftResult) -> list:
    return [f.to_json() for f in result.run_display().features]


def test_a_batch_shares_the_scans_and_equals_each_run_alone(
        batch_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, list[tuple[str, str, str]]]] = []
    real = engine.aggregate_source

    def counting(session, source, plan, features, *args, **kwargs):
        calls.append((source.relation, [(f.name, f.kind, f.expr) for f in features]))
        return real(session, source, plan, features, *args, **kwargs)

    monkeypatch.setattr(engine, "aggregate_source", counting)
    config = engine.DriftRunConfig(results_dir=str(tmp_path / "results"))
    names = [*MODELS, "ghost"]
    steps = []
    outcomes = run_models_drift(batch_db, [(m, f"batch-{m}") for m in names], config,
                                progress=steps.append)

    assert isinstance(outcomes[-1], ModelNotFoundError)
    batch = dict(zip(MODELS, outcomes[:-1], strict=True))
    assert all(isinstance(r, ModelDriftResult) for r in batch.values()), batch
    # One aggregation of the shared table for the whole batch, over the union of the
    # features: a column once per kind, numeric and categorical 'd' apart.
    shared = [specs for relation, specs in calls if relation == '"shared"']
    assert len(shared) == 1
    assert sorted((expr, kind) for _name, kind, expr in shared[0]) == [
        ('"a"', "numeric"), ('"b"', "numeric"), ('"c"', "numeric"),
        ('"d"', "categorical"), ('"d"', "numeric"), ('"e"', "categorical")]
    assert len({name for name, _, _ in shared[0]}) == 6
    assert [r for r, _ in calls].count('"other"') == 1
    # The predictions stay per model: model_events is aggregated once for each model.
    assert [r for r, _ in calls].count("model_events") == len(MODELS)
    # Progress names the model of each step.
    assert {s.model for s in steps if s.stage == "read"} == set(MODELS)
    assert {s.model for s in steps if s.stage == "write"} == set(MODELS)
    assert {s.feature.name for s in steps if s.model == "extra" and s.feature} == \
        {"a", "b", "c", "e"}

    # Timing figures are the batch's; the shared scans' bytes count on the group's first.
    first = batch["base"]
    for result in batch.values():
        assert (result.read_lock_s, result.write_lock_s, result.duration_s) == \
            (first.read_lock_s, first.write_lock_s, first.duration_s)
        assert result.started_at == first.started_at
    assert batch["base"].bytes_fetched > 20 * batch["twin"].bytes_fetched
    # Each model's Parquet copy and the metadata table are written.
    assert all(latest_file(config.results_dir, m).exists() for m in MODELS)
    assert (Path(config.results_dir) / METADATA_FILE).exists()

    calls.clear()
    for model, result in batch.items():
        alone = run_model_drift(batch_db, model, f"alone-{model}", config)
        assert _rows(batch_db, f"batch-{model}") == _rows(batch_db, f"alone-{model}"), model
        assert _figures(result) == _figures(alone), model
        assert _displays(result) == _displays(alone), model
        assert result.features.keys() == alone.features.keys()
    assert len([r for r, _ in calls if r == '"shared"']) == len(SHARED)

    # The two readings of 'd' are each their model's own.
    assert batch["as_category"].features["d"].kind == "categorical"
    assert batch["as_number"].features["d"].kind == "numeric"
    assert math.isfinite(batch["as_number"].features["d"].ks_statistic)
    assert batch["as_number"].features["missing"].error == \
        "column missing from the feature table"
    assert batch["base"].model_drift.prediction is not None
    assert batch["twin"].model_drift.error == "no events for this model"


def test_one_model_alone_raises_as_before(batch_db: str) -> None:
    with pytest.raises(ModelNotFoundError):
        run_model_drift(batch_db, "ghost", "ghost@1")
    assert run_models_drift(batch_db, []) == []


def test_production_models_are_grouped_by_feature_table(batch_db: str) -> None:
    assert production_model_groups(batch_db) == [
        ["as_category", "as_number", "base", "extra", "twin"], ["elsewhere"]]
    assert production_model_groups(batch_db, max_models=2) == [
        ["as_category", "as_number"], ["base", "extra"], ["elsewhere"], ["twin"]]
    assert production_model_groups(batch_db, status="staging") == [["staged"]]


def test_a_model_that_raises_costs_the_others_nothing(
        batch_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine._read_events

    def failing(session, model, *args, **kwargs):
        if model == "twin":
            raise RuntimeError("events on fire")
        return real(session, model, *args, **kwargs)

    monkeypatch.setattr(engine, "_read_events", failing)
    outcomes = run_models_drift(batch_db, [(m, f"raise-{m}") for m in ("base", "twin")])
    assert isinstance(outcomes[1], RuntimeError) and str(outcomes[1]) == "events on fire"
    assert isinstance(outcomes[0], ModelDriftResult)
    assert set(_rows(batch_db, "raise-base")) >= {"a", "b", "c"}
    assert _rows(batch_db, "raise-twin") == {}
    with pytest.raises(RuntimeError, match="events on fire"):
        run_model_drift(batch_db, "twin", "raise-twin-alone")
