"""The engine finds the injected drift of the demo data and stores it idempotently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from stat_guard.display import PREDICTION_NAME, decode_run, encode_run
from stat_guard.scheduled.engine import (
    ModelNotFoundError,
    flag_model,
    production_models,
    run_model_drift,
)
from stat_guard.scheduled.schema import MODEL_ROW, PREDICTION_ROW

ALERTING = {"warning", "drift"}


def _count(db_path: str, sql: str, params=None):
    connection = duckdb.connect(db_path, read_only=True)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def test_only_production_models_are_listed(demo):
    assert production_models(demo.db_path) == sorted(demo.production_models)
    assert "recommender_v2" not in production_models(demo.db_path)


@pytest.mark.parametrize("model", ["fraud_scoring", "churn", "pricing"])
def test_finds_exactly_the_drifted_features(demo, model):
    result = run_model_drift(demo.db_path, model, f"find-{model}")
    alerting = {name for name, f in result.features.items() if f.verdict in ALERTING}
    assert alerting == set(demo.drifted_features[model])
    for name in demo.stable_features[model]:
        feature = result.features[name]
        assert feature.verdict == "ok", (name, feature)
        assert feature.psi < 0.02 and feature.error is None
    assert result.verdict in ALERTING
    assert result.drift_score == pytest.approx(
        max(f.psi for f in [*result.features.values(), result.model_drift.prediction]))
    assert result.errors == {}


def test_injected_drift_sizes_show_in_the_statistics(demo):
    fraud = run_model_drift(demo.db_path, "fraud_scoring", "sizes-fraud")
    churn = run_model_drift(demo.db_path, "churn", "sizes-churn")
    pricing = run_model_drift(demo.db_path, "pricing", "sizes-pricing")
    # A 0.5σ mean shift: PSI ≈ 0.25, KS ≈ 2Φ(0.25) − 1 ≈ 0.197, Wasserstein ≈ 0.5σ.
    for shifted in (fraud.features["amount"], churn.features["monthly_charges"]):
        assert 0.18 < shifted.psi < 0.32
        assert 0.17 < shifted.ks_statistic < 0.23 and shifted.ks_pvalue < 1e-50
    assert churn.features["monthly_charges"].wasserstein_normalized == pytest.approx(0.5, abs=0.06)
    assert pricing.features["demand_index"].psi > 0.25  # σ doubled
    country = fraud.features["country"]
    assert country.unseen_categories == ("NG",) and country.verdict == "drift"
    # Fraud scores follow the amount; pricing's and churn's outputs barely move.
    assert fraud.model_drift.prediction.verdict in ALERTING
    assert churn.model_drift.prediction.verdict == "ok"
    assert churn.model_drift.performance.metric == "accuracy"
    assert fraud.model_drift.performance.metric == "mae"
    assert fraud.model_drift.performance.labeled_historical > 10_000


def test_scores_are_written_to_metadata_and_runs(demo):
    result = run_model_drift(demo.db_path, "churn", "written-1")
    [(score, scores, verdict, run_id, run_at)] = _count(
        demo.db_path, "SELECT last_model_drift_score, last_feature_drift_scores, last_verdict, "
        "last_run_id, last_run_at FROM model_metadata WHERE name = 'churn'")
    assert score == pytest.approx(result.drift_score)
    assert verdict == result.verdict and run_id == "written-1" and run_at is not None
    assert scores["monthly_charges"] == pytest.approx(result.features["monthly_charges"].psi)
    assert set(scores) == set(result.features)
    rows = _count(demo.db_path, "SELECT feature, verdict, psi, ks_statistic, ks_error_bound, "
                  "n_current, current_rows FROM drift_runs WHERE run_id = 'written-1'")
    by_feature = {r[0]: r for r in rows}
    assert set(by_feature) == set(result.features) | {PREDICTION_ROW, MODEL_ROW}
    monthly = by_feature["monthly_charges"]
    assert monthly[1] == result.features["monthly_charges"].verdict
    assert monthly[2] == pytest.approx(result.features["monthly_charges"].psi)
    assert monthly[4] <= 2.0 / 1000
    assert monthly[5] == result.current_window.sampled_rows == 5_000


def test_retrying_a_run_id_rewrites_and_a_new_run_id_adds(demo):
    count = "SELECT count(*) FROM drift_runs WHERE model = 'pricing'"
    run_model_drift(demo.db_path, "pricing", "retry-1")
    [(after_first,)] = _count(demo.db_path, count)
    run_model_drift(demo.db_path, "pricing", "retry-1")
    [(after_retry,)] = _count(demo.db_path, count)
    run_model_drift(demo.db_path, "pricing", "retry-2")
    [(after_new,)] = _count(demo.db_path, count)
    per_run = len(demo.features["pricing"]) + 2  # features, predictions, model row
    assert after_retry == after_first
    assert after_new == after_first + per_run


def test_record_is_flat_small_and_complete(demo):
    result = run_model_drift(demo.db_path, "fraud_scoring", "record-1")
    record = result.stream_record().to_fields()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in record.items())
    assert record["source"] == "scheduled" and record["run_id"] == "record-1"
    assert len(json.dumps(record)) < 64_000
    features = json.loads(record["features"])
    assert set(features) == set(result.features)
    assert set(features["amount"]) == {"psi", "ks_statistic", "ks_pvalue", "kl", "js",
                                       "wasserstein", "missing_rate_baseline",
                                       "missing_rate_current", "verdict", "error"}
    assert float(record["drift_score"]) == pytest.approx(result.drift_score, rel=1e-5)
    assert result.read_lock_s > 0 and result.write_lock_s > 0
    assert result.read_lock_s + result.write_lock_s < result.duration_s
    # The display summaries: every feature and the predictions, valid once stored.
    shown = decode_run(encode_run(result.run_display()))
    by_name = {f.name: f for f in shown.features}
    assert set(by_name) == set(result.features) | {PREDICTION_NAME}
    assert (shown.run_id, shown.verdict) == ("record-1", result.verdict)
    for name, feature in result.features.items():
        assert by_name[name].verdict == feature.verdict
        assert by_name[name].n_current == feature.n_current
    for name in demo.drifted_features["fraud_scoring"]:
        assert by_name[name].verdict in ALERTING and by_name[name].reasons


def test_flag_model_is_idempotent_per_run_id(demo):
    flag_model(demo.db_path, "churn", "flag-1", "drift")
    sql = "SELECT flagged, flag_reason, flagged_run_id, flagged_at FROM model_metadata " \
          "WHERE name = 'churn'"
    [first] = _count(demo.db_path, sql)
    flag_model(demo.db_path, "churn", "flag-1", "drift")
    [again] = _count(demo.db_path, sql)
    assert first[:3] == (True, "drift", "flag-1") and again == first
    flag_model(demo.db_path, "churn", "flag-2", "warning", reason="psi 0.3 on plan")
    [later] = _count(demo.db_path, sql)
    assert later[1:3] == ("psi 0.3 on plan", "flag-2")


def test_a_run_loads_neither_numpy_nor_scipy(demo, tmp_path):
    """The engine works on counts in plain Python: a drift process never holds numpy's
    11 MB (docs/scheduled-drift.md, Benchmark)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from stat_guard.scheduled.engine import run_model_drift\n"
        f"result = run_model_drift({demo.db_path!r}, 'pricing', 'imports-1')\n"
        "assert result.verdict in {'warning', 'drift'}, result.verdict\n"
        "from stat_guard.display import encode_run\n"
        "assert len(encode_run(result.run_display())) > 100\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'numpy', 'scipy', "
        "'pandas'}))\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=root, env={"PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unknown_model_raises(demo):
    with pytest.raises(ModelNotFoundError):
        run_model_drift(demo.db_path, "no_such_model", "x")
