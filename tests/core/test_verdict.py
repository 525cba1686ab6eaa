"""The owner's verdict rules, the model verdict, and the local 3σ signal."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stat_guard.envelope_verdict import analyze_envelope, compare_samples, evaluate
from stat_guard.signal import ThreeSigmaSignal
from stat_guard.tdigest import TDigest
from stat_guard.verdict import Evidence, Thresholds, Verdict, decide, worst
from stat_guard.wire import ColumnDigests, Envelope, encode_envelope
from tests.conftest import GOLDEN_DIR

SIGNIFICANT = 1e-9


def numeric(psi: float = 0.0, psi_p: float = SIGNIFICANT, ks: float = 0.0, ks_p: float = 1.0,
            n: int = 1000, m: int = 1000, missing_b: int = 0, missing_c: int = 0) -> Evidence:
    return Evidence(n_baseline=n, n_current=m, psi=psi, psi_pvalue=psi_p, ks_statistic=ks,
                    ks_pvalue=ks_p, missing_baseline=missing_b, missing_current=missing_c)


@pytest.mark.parametrize("psi, expected", [
    (0.0, Verdict.OK), (0.0999, Verdict.OK), (0.1, Verdict.WARNING), (0.25, Verdict.WARNING),
    (0.2501, Verdict.DRIFT), (3.0, Verdict.DRIFT),
])
def test_a_significant_psi_is_judged_by_the_owners_effect_sizes(psi, expected):
    assert decide(numeric(psi)).verdict is expected


@pytest.mark.parametrize("psi_p", [0.2, 0.03, math.nan])
def test_a_large_psi_that_is_not_significant_is_not_flagged(psi_p):
    """At 30 values a window's PSI over 10 bins is often above 0.25 by chance alone; the
    bins' chi-square test (at half the 0.05 budget when KS is also tested) must agree."""
    decision = decide(numeric(0.9, psi_p, n=30, m=30))
    assert decision.verdict is Verdict.OK, decision


@pytest.mark.parametrize("ks, p, expected", [
    (0.2, 0.01, Verdict.WARNING),   # both conditions: warning
    (0.05, 1e-30, Verdict.OK),      # tiny p but small distance: big-sample noise, no alert
    (0.3, 0.2, Verdict.OK),         # large distance, not significant
    (0.3, 0.03, Verdict.OK),        # significant at 0.05 alone, not at its share of it
    (0.1, 0.001, Verdict.OK),       # the distance must exceed 0.1
])
def test_ks_warns_only_when_significant_and_substantial(ks, p, expected):
    decision = decide(numeric(0.01, 1.0, ks, p, 10_000, 10_000))
    assert decision.verdict is expected
    if expected is Verdict.WARNING:
        assert any("ks" in r for r in decision.reasons)


def test_ks_never_lowers_a_psi_drift():
    assert decide(numeric(0.5, SIGNIFICANT, 0.3, 1e-9)).verdict is Verdict.DRIFT


def test_too_few_values_is_insufficient_data():
    decision = decide(numeric(5.0, SIGNIFICANT, 0.9, 0.0, n=10))
    assert decision.verdict is Verdict.INSUFFICIENT_DATA and "fewer than 30" in decision.reasons[0]


def test_a_jump_in_missing_values_is_drift_even_with_the_rest_unchanged():
    # 1% -> 40% NULLs, the finite values the same
    decision = decide(numeric(0.001, 0.9, 0.01, 0.9, 9900, 6000, 100, 4000))
    assert decision.verdict is Verdict.DRIFT
    assert decision.reasons[0].startswith("missing share 1.0% -> 40.0%")


def test_a_small_or_insignificant_change_in_missing_values_is_not_flagged():
    assert decide(numeric(missing_b=10, missing_c=12)).verdict is Verdict.OK  # 1.0% -> 1.2%
    # 3% -> 10% of 30 values: 7 points, but within chance at this size
    assert decide(numeric(n=29, m=27, missing_b=1, missing_c=3)).verdict in (
        Verdict.OK, Verdict.INSUFFICIENT_DATA)
    assert decide(numeric(n=9000, m=9000, missing_b=1000, missing_c=1600)).verdict is \
        Verdict.WARNING  # 10% -> 15%: a warning


def test_a_window_of_nothing_but_missing_values_is_drift_not_insufficient_data():
    decision = decide(numeric(math.nan, math.nan, math.nan, math.nan, 5000, 0, 50, 3000))
    assert decision.verdict is Verdict.DRIFT
    assert any("fewer than 30" in r for r in decision.reasons)


def test_the_false_discovery_rate_correction_applies_when_configured():
    evidence = numeric(0.3, 0.01)
    assert decide(evidence).verdict is Verdict.DRIFT
    fdr = Thresholds(false_discovery_rate=True)
    assert decide(evidence, fdr, feature_pvalue_adjusted=0.2).verdict is Verdict.OK
    assert decide(evidence, fdr, feature_pvalue_adjusted=0.01).verdict is Verdict.DRIFT


def test_thresholds_are_configurable_and_validated():
    strict = Thresholds(psi_warning=0.01, psi_drift=0.05)
    assert decide(numeric(0.06), strict).verdict is Verdict.DRIFT
    with pytest.raises(ValueError):
        Thresholds(psi_warning=0.3, psi_drift=0.2)
    with pytest.raises(ValueError):
        Thresholds(missing_rate_warning=0.5, missing_rate_drift=0.2)
    with pytest.raises(ValueError):
        Thresholds(significance=0.0)


def test_worst_orders_verdicts():
    assert worst([Verdict.OK, Verdict.DRIFT, Verdict.WARNING]) is Verdict.DRIFT
    assert worst([Verdict.INSUFFICIENT_DATA, Verdict.OK]) is Verdict.OK
    assert worst([]) is Verdict.INSUFFICIENT_DATA


def test_model_verdict_flags_the_drifted_features_only():
    rng = np.random.default_rng(21)
    comparisons = {f"f{i}": compare_samples(rng.normal(size=5000), rng.normal(size=5000))
                   for i in range(10)}
    comparisons["shifted"] = compare_samples(rng.normal(size=5000), rng.normal(1.0, 1, 5000))
    report = evaluate(comparisons)
    assert report.verdict is Verdict.DRIFT
    flagged = [n for n, f in report.features.items() if f.decision.verdict is not Verdict.OK]
    assert flagged == ["shifted"]
    adjusted = report.features["f0"].pvalue_adjusted
    assert adjusted >= report.features["f0"].comparison.ks.pvalue


def test_envelope_analysis_flips_the_verdict_with_drift():
    rng = np.random.default_rng(22)
    baseline = TDigest.from_values(rng.normal(size=20_000))

    def run(shift: float) -> dict:
        current = TDigest.from_values(rng.normal(shift, 1, 10_000))
        columns = {"x": ColumnDigests(current, baseline)}
        body = encode_envelope(Envelope({"request_id": "t"}, columns))
        return analyze_envelope(body)

    calm, drifted = run(0.0), run(0.8)
    assert calm["verdict"] == "ok" and drifted["verdict"] == "drift"
    assert drifted["columns"]["x"]["psi"] > 0.25 and drifted["request_id"] == "t"
    json.dumps(drifted, allow_nan=False)


def test_golden_envelope_analysis_is_json_safe():
    result = analyze_envelope((GOLDEN_DIR / "envelope.psge").read_bytes())
    text = json.dumps(result, allow_nan=False)
    assert result["columns"]["latency ms"]["verdict"] == "insufficient_data"
    assert result["columns"]["latency ms"]["psi"] is None
    assert result["columns"]["latency ms"]["current"]["null_count"] == 3
    assert "NaN" not in text


def test_three_sigma_signal_fires_on_an_outlier_after_warmup():
    signal = ThreeSigmaSignal()
    rng = np.random.default_rng(23)
    fired = [signal.update(v) for v in rng.normal(10, 2, 500)]
    assert sum(fired) <= 3  # a normal stream rarely passes mean + 3σ
    assert signal.mean == pytest.approx(10, abs=0.3) and signal.std == pytest.approx(2, rel=0.1)
    limit = signal.upper_limit
    assert signal.update(limit + 0.01) is True
    assert signal.update(signal.mean) is False


def test_three_sigma_signal_is_quiet_during_warmup_and_ignores_invalid_values():
    signal = ThreeSigmaSignal(warmup=10)
    assert not any(signal.update(v) for v in [1, 1, 1, 1, 1000])
    assert signal.update(float("nan")) is False and signal.update(None) is False
    assert signal.ignored == 2 and signal.count == 5


def test_three_sigma_signal_matches_numpy_moments():
    values = np.random.default_rng(24).exponential(size=10_000)
    signal = ThreeSigmaSignal()
    for v in values:
        signal.update(float(v))
    assert signal.mean == pytest.approx(values.mean(), rel=1e-12)
    assert signal.std == pytest.approx(values.std(ddof=1), rel=1e-10)
    assert not math.isnan(signal.upper_limit)


def test_two_sided_signal_also_fires_below():
    signal = ThreeSigmaSignal(two_sided=True)
    for v in np.random.default_rng(25).normal(0, 1, 200):
        signal.update(float(v))
    assert signal.update(signal.mean - 10 * signal.std) is True


def test_model_verdict_is_the_worst_and_the_largest_psi_with_enough_data():
    from stat_guard.verdict import ERROR, model_verdict

    overall = model_verdict([("ok", 0.02), ("warning", 0.15), ("insufficient_data", 0.9),
                             (ERROR, math.nan)])
    assert (overall.verdict, overall.drift_score) == ("warning", 0.15)
    assert model_verdict([(ERROR, 0.5), (ERROR, math.nan)]).verdict == ERROR
    empty = model_verdict([])
    assert empty.verdict == "insufficient_data" and math.isnan(empty.drift_score)
    few = model_verdict([("insufficient_data", 0.4)])
    assert few.verdict == "insufficient_data" and math.isnan(few.drift_score)


def test_a_null_burst_in_digests_is_drift_with_its_own_reason():
    rng = np.random.default_rng(26)
    history = rng.normal(size=20_000)
    history[rng.random(20_000) < 0.01] = np.nan
    window = rng.normal(size=5_000)
    window[rng.random(5_000) < 0.4] = np.nan
    body = encode_envelope(Envelope({"request_id": "burst"}, {
        "x": ColumnDigests(TDigest.from_values(window), TDigest.from_values(history))}))
    column = analyze_envelope(body)["columns"]["x"]
    assert column["verdict"] == "drift"
    assert column["reasons"][0].startswith("missing share 1.0% -> 39.") or \
        column["reasons"][0].startswith("missing share 1.0% -> 40.")
    assert column["psi"] < 0.1
