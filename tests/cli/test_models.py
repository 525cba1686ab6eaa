"""``stat-guard models list|add|remove`` on real DuckDB files: what is written, what is
refused and why, in one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stat_guard.scheduled.engine import run_model_drift
from tests.cli.conftest import CONFIG, stat_guard
from tests.fleet.support import file_held_by_another_process, query

ADD = ("models", "add", "payments", "--table", "payments", "--time-column", "ts",
       "--features", "amount,stable,channel", "--categorical", "channel", "--key", "entity_id")


def test_add_writes_the_row_and_list_shows_it(feature_db: Path) -> None:
    added = stat_guard(*ADD, db_path=feature_db)
    assert added.code == 0, added.err
    assert added.out.strip() == ("model payments added (production): table payments, "
                                 "2 numeric and 1 categorical features")
    assert query(feature_db, "SELECT name, status, feature_table, timestamp_column, "
                             "key_column, features, categorical_features, flagged "
                             "FROM model_metadata") == [
        ("payments", "production", "payments", "ts", "entity_id",
         ["amount", "stable", "channel"], ["channel"], False)]

    listed = stat_guard("models", "list", db_path=feature_db)
    assert listed.code == 0, listed.err
    header, rule, row = listed.out.splitlines()
    assert header.split() == ["model", "status", "table", "features", "last", "verdict",
                              "score", "last", "run", "flagged"]
    assert set(rule) <= {"-", " "}
    assert row.split() == ["payments", "production", "payments", "3", "(1", "categorical)",
                           "-", "-", "-", "no"]


def test_list_json_carries_the_last_run(model_db: Path) -> None:
    run_model_drift(str(model_db), "payments", "payments@manual-x", CONFIG.drift_run_config())
    listed = stat_guard("models", "list", "--json", db_path=model_db)
    assert listed.code == 0, listed.err
    [model] = json.loads(listed.out)
    assert model["name"] == "payments" and model["features"] == ["amount", "stable", "channel"]
    assert model["last_run_id"] == "payments@manual-x"
    assert model["last_verdict"] == "drift"
    assert model["last_model_drift_score"] > 1.0


def test_list_of_an_empty_file(tmp_path: Path) -> None:
    from stat_guard.scheduled.engine import ensure_schema

    ensure_schema(str(tmp_path / "empty.duckdb"))
    listed = stat_guard("models", "list", db_path=tmp_path / "empty.duckdb")
    assert (listed.code, listed.out.strip()) == (
        0, f"no models registered in {tmp_path / 'empty.duckdb'}")
    assert stat_guard("models", "list", "--json",
                      db_path=tmp_path / "empty.duckdb").out.strip() == "[]"


@pytest.mark.parametrize(("change", "message"), [
    ({"--table": "nope"}, "feature table 'nope' does not exist"),
    ({"--features": "amount,missing,channel"}, "feature column 'missing' is not in feature table "
                                       "'payments'"),
    ({"--time-column": "when"}, "time column 'when' is not in feature table 'payments'"),
    ({"--time-column": "day_number"}, "time column 'day_number' is BIGINT, not a timestamp "
                                      "or date"),
    ({"--features": "amount,label_text", "--categorical": ""},
     "numeric feature 'label_text' is VARCHAR, not a number"),
    ({"--features": "amount,stable", "--categorical": "stable"},
     "categorical feature 'stable' is DOUBLE; categories must be text, boolean, enum or "
     "integer"),
    ({"--categorical": "label_text"}, "categorical features not among the features: "
                                      "label_text"),
    ({"--key": "account"}, "key column 'account' is not in feature table 'payments'"),
    ({"--features": "amount,__model__,channel"}, "'__model__' is a reserved name"),
])
def test_add_refuses_what_does_not_fit_the_table(feature_db: Path, change: dict[str, str],
                                                 message: str) -> None:
    argv = list(ADD)
    for option, value in change.items():
        argv[argv.index(option) + 1] = value
    refused = stat_guard(*argv, db_path=feature_db)
    assert refused.code == 2
    assert refused.out == ""
    assert len(refused.err.splitlines()) == 1, refused.err
    assert refused.err.startswith("stat-guard: model not added: " + message), refused.err
    assert query(feature_db, "SELECT count(*) FROM model_metadata") == [(0,)]


def test_add_twice_is_refused(model_db: Path) -> None:
    again = stat_guard(*ADD, db_path=model_db)
    assert again.code == 2
    assert again.err.strip() == ("stat-guard: model not added: model 'payments' is "
                                 "registered already (remove it first to change it)")


def test_remove_keeps_the_run_history(model_db: Path) -> None:
    run_model_drift(str(model_db), "payments", "payments@manual-x", CONFIG.drift_run_config())
    removed = stat_guard("models", "remove", "payments", db_path=model_db)
    assert (removed.code, removed.out.strip()) == (
        0, "model payments removed (its runs stay in drift_runs)")
    assert query(model_db, "SELECT count(*) FROM model_metadata") == [(0,)]
    assert query(model_db, "SELECT count(*) FROM drift_runs WHERE run_id = "
                           "'payments@manual-x'")[0][0] == 5  # 3 features, prediction, model


def test_remove_of_an_unknown_model(model_db: Path) -> None:
    unknown = stat_guard("models", "remove", "nobody", db_path=model_db)
    assert unknown.code == 2
    assert unknown.err.strip() == "stat-guard: model 'nobody' is not registered"
    assert query(model_db, "SELECT name FROM model_metadata") == [("payments",)]


def test_a_missing_duckdb_file(tmp_path: Path) -> None:
    for argv in (("models", "list"), ADD, ("models", "remove", "payments")):
        missing = stat_guard(*argv, db_path=tmp_path / "absent.duckdb")
        assert missing.code == 2
        assert missing.err.strip() == (f"stat-guard: DuckDB file "
                                       f"'{tmp_path / 'absent.duckdb'}' does not exist "
                                       f"(check duckdb.path)")
    assert not (tmp_path / "absent.duckdb").exists()


def test_a_busy_duckdb_file_is_said_busy(model_db: Path) -> None:
    with file_held_by_another_process(model_db, seconds=2.5):
        busy = stat_guard("models", "remove", "payments", db_path=model_db)
    assert busy.code == 2
    assert len(busy.err.splitlines()) == 1
    assert busy.err.startswith("stat-guard: the DuckDB file is busy (a drift run or another "
                               "writer holds it); try again when it is done"), busy.err
    assert query(model_db, "SELECT name FROM model_metadata") == [("payments",)]
