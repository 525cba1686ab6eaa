"""The stream record: what the producers write is what the consumers read back."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from stat_guard.result_record import (
    ONDEMAND,
    SCHEDULED,
    FeatureFigures,
    OnDemandDetails,
    ResultRecord,
    ScheduledDetails,
)

FINISHED = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)


def _scheduled(features: dict[str, FeatureFigures]) -> ResultRecord:
    return ResultRecord(
        run_id="churn@20261122T100000Z", model="churn", source=SCHEDULED, verdict="drift",
        drift_score=0.312345678, features=features,
        started_at=FINISHED - timedelta(seconds=30), finished_at=FINISHED, duration_s=30.0,
        details=ScheduledDetails(model_drift={"prediction": None, "performance": None,
                                              "error": "no events for this model"},
                                 error_count=1, historical_rows=2000, current_rows=500,
                                 read_lock_s=0.25, write_lock_s=0.05))


def test_fields_are_flat_strings_that_read_back_to_the_same_record():
    record = _scheduled({
        "age": FeatureFigures("drift", psi=0.312345678, ks_statistic=0.2, ks_pvalue=1e-30,
                              kl=0.3, js=0.15, wasserstein=0.45),
        "region": FeatureFigures("error", error="column missing from the feature table")})
    fields = record.to_fields()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert fields["drift_score"] == "0.312346"
    assert json.loads(fields["features"])["age"]["psi"] == 0.312346
    assert json.loads(fields["features"])["region"] == {
        "psi": None, "ks_statistic": None, "ks_pvalue": None, "kl": None, "js": None,
        "wasserstein": None, "missing_rate_baseline": None, "missing_rate_current": None,
        "verdict": "error", "error": "column missing from the feature table"}
    again = ResultRecord.from_fields({k.encode(): v.encode() for k, v in fields.items()})
    assert again.to_fields() == fields
    assert again.finished_at == FINISHED and again.duration_s == 30.0
    assert again.details == record.details


def test_ondemand_columns_keep_the_records_names():
    column = {"verdict": "warning", "psi": 0.12, "ks_statistic": 0.2, "ks_pvalue": 0.01,
              "kl_divergence": 0.08, "js_distance": 0.1, "wasserstein_normalized": 0.3,
              "reasons": ["psi 0.12 >= 0.1"]}
    figures = FeatureFigures.from_verdict_column(column)
    assert (figures.kl, figures.js, figures.wasserstein) == (0.08, 0.1, 0.3)
    record = ResultRecord(run_id="req-1", model="events", source=ONDEMAND, verdict="warning",
                          drift_score=0.12, features={"amount": figures},
                          details=OnDemandDetails("public.events", "t0", "t1", rows=3000))
    fields = record.to_fields()
    assert (fields["table"], fields["rows"]) == ("public.events", "3000")
    assert ResultRecord.from_fields(fields).details == record.details


def test_features_beyond_the_limit_keep_only_the_verdict_of_ok_ones():
    features = {f"feature_{i:05d}": FeatureFigures("ok", psi=0.01, ks_statistic=0.02,
                                                   ks_pvalue=0.5, kl=0.01, js=0.02,
                                                   wasserstein=0.03) for i in range(1000)}
    features["moved"] = FeatureFigures("drift", psi=0.9)
    fields = _scheduled(features).to_fields()
    assert fields["features_truncated"] == "1"
    assert len(json.dumps(fields)) < 64_000
    document = json.loads(fields["features"])
    assert document["feature_00000"] == {"verdict": "ok"}
    assert document["moved"]["psi"] == 0.9


def test_malformed_fields_read_as_empty():
    record = ResultRecord.from_fields({"model": "m", "source": "scheduled", "verdict": "ok",
                                       "drift_score": "nan", "features": '{"a": 3, "b": {}}',
                                       "finished_at": "yesterday", "duration_s": "-"})
    assert record.run_id == "" and record.drift_score is None
    assert record.finished_at is None and record.duration_s is None
    assert record.features == {"b": FeatureFigures("")}
    assert record.to_fields()["drift_score"] == "nan"
    assert math.isnan(float(record.to_fields()["drift_score"]))
