"""SQL aggregates give the same statistics as the raw rows, within the stated bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss

from stat_guard import stats as st
from stat_guard.scheduled.engine import DriftRunConfig, run_model_drift
from tests.scheduled.conftest import window_values

NUMERIC = {"fraud_scoring": ["amount", "account_age_days", "txn_count_24h", "merchant_risk"],
           "pricing": ["demand_index", "bedrooms", "lot_size"]}


@pytest.fixture(scope="module")
def runs(demo):
    return {model: run_model_drift(demo.db_path, model, f"accuracy-{model}")
            for model in NUMERIC}


def _window_values(demo, result, model: str, feature: str):
    """The feature's exact values in the run's historical and current windows."""
    table = f"features_{model}"
    return tuple(window_values(demo.db_path, table, feature, window.start, window.end)
                 for window in (result.historical_window, result.current_window))


@pytest.mark.parametrize(("model", "feature"),
                         [(m, f) for m, features in NUMERIC.items() for f in features])
def test_binned_ks_is_within_its_bound_of_exact_ks(demo, runs, model, feature):
    result = runs[model]
    baseline, current = _window_values(demo, result, model, feature)
    assert (baseline.size, current.size) == (20_000, 5_000)
    exact = ss.ks_2samp(baseline, current).statistic
    f = result.features[feature]
    assert f.ks_statistic <= exact + 1e-12
    assert exact <= f.ks_statistic + f.ks_error_bound + 1e-12
    assert f.ks_error_bound <= 1.5 / 1000  # about one fine bin of mass at most


@pytest.mark.parametrize(("model", "feature"),
                         [(m, f) for m, features in NUMERIC.items() for f in features])
def test_psi_equals_stat_guard_on_the_same_bins(demo, runs, model, feature):
    result = runs[model]
    baseline, current = _window_values(demo, result, model, feature)
    f = result.features[feature]
    edges = np.array(f.psi_bin_edges)
    expected, actual = st.bin_counts(baseline, edges), st.bin_counts(current, edges)
    # Edges come from DuckDB's quantile sketch: deciles of the baseline within a point of
    # mass; the counts over them are exact.
    if np.unique(baseline).size > 1000:  # continuous: equal-frequency bins exist
        assert np.max(np.abs(expected / baseline.size - 0.1)) < 0.01
    assert f.psi == pytest.approx(st.psi_from_counts(expected, actual), abs=1e-9)
    assert f.kl == pytest.approx(st.kl_from_counts(expected, actual), abs=1e-9)
    assert f.js == pytest.approx(st.js_distance_from_counts(expected, actual), abs=1e-9)
    exact_w = ss.wasserstein_distance(baseline, current) / np.std(baseline, ddof=1)
    # Mass spread evenly inside each fine bin: close, not exact, on heavy tails.
    assert f.wasserstein_normalized == pytest.approx(exact_w, rel=0.05, abs=0.01)


def test_categorical_drift_with_an_unseen_category(demo, runs):
    result = runs["fraud_scoring"]
    connection_rows = {}
    import duckdb
    connection = duckdb.connect(demo.db_path, read_only=True)
    try:
        for label, window in (("historical", result.historical_window),
                              ("current", result.current_window)):
            connection_rows[label] = dict(connection.execute(
                "SELECT country, count(*) FROM features_fraud_scoring "
                "WHERE ts BETWEEN ? AND ? GROUP BY country", [window.start, window.end]
            ).fetchall())
    finally:
        connection.close()
    expected = st.categorical_drift(connection_rows["historical"], connection_rows["current"])
    country = result.features["country"]
    assert "NG" not in connection_rows["historical"] and connection_rows["current"]["NG"] > 500
    assert country.unseen_categories == ("NG",)
    assert country.psi == pytest.approx(expected.psi, abs=1e-12)
    assert country.chi2 == pytest.approx(expected.chi2, rel=1e-12)
    assert country.js == pytest.approx(expected.js_distance, abs=1e-12)


def test_fewer_fine_bins_widen_the_stated_bound(demo):
    coarse = run_model_drift(demo.db_path, "pricing", "coarse", DriftRunConfig(ks_bins=50))
    assert coarse.features["demand_index"].ks_error_bound > 5 * 1.0 / 1000
    assert coarse.features["demand_index"].ks_error_bound <= 1.5 / 50


def test_ks_bound_holds_when_the_edges_come_from_a_sample(make_model):
    """Windows larger than the edge sample (stat_guard.scheduled.aggregates.EDGE_SAMPLE_ROWS): the
    edges are sample quantiles, the counts still exact, and the bound still brackets the
    exact KS at about one fine bin of mass."""
    from stat_guard.scheduled.aggregates import EDGE_SAMPLE_ROWS

    rng = np.random.default_rng(11)
    rows = 300_000
    recent = np.arange(rows) >= int(rows * 0.95)
    columns = {"calm": rng.normal(0, 1, rows),
               "moved": rng.lognormal(0, 1, rows) + np.where(recent, 0.3, 0.0)}
    path = make_model(columns, list(columns))
    result = run_model_drift(path, "m", "sampled-edges")
    assert result.historical_window.sampled_rows > 1.5 * EDGE_SAMPLE_ROWS
    for name in columns:
        f = result.features[name]
        baseline, current = (window_values(path, "features_m", name, w.start, w.end)
                             for w in (result.historical_window, result.current_window))
        exact = ss.ks_2samp(baseline, current).statistic
        assert f.ks_statistic <= exact + 1e-12
        assert exact <= f.ks_statistic + f.ks_error_bound + 1e-12
        assert 0 < f.ks_error_bound <= 2.0 / 1000, (name, f.ks_error_bound)
    assert result.features["moved"].verdict in {"warning", "drift"}


def test_bounds_hold_on_heavy_tails_spikes_and_ties(make_model):
    """Shapes an even grid handles badly: a Cauchy tail, a spike of zeros inside a
    continuous feature, a narrow spike far from a wide bulk, rounded values, and a drifted
    current window far outside the historical range. Every bin count stays exact, so KS
    stays bracketed and PSI equals stat_guard's over the reported edges."""
    rng = np.random.default_rng(5)
    rows = 120_000
    recent = np.arange(rows) >= int(rows * 0.95)
    zero_inflated = np.where(rng.random(rows) < 0.3, 0.0, rng.normal(0, 1, rows))
    columns = {
        "cauchy": rng.standard_cauchy(rows),
        "zero_inflated": zero_inflated,
        "spike_and_bulk": np.where(rng.random(rows) < 0.5, 1000 + rng.normal(0, 1e-6, rows),
                                   rng.normal(0, 100, rows)),
        "rounded": np.round(rng.normal(50, 10, rows), 1),
        "far_drift": rng.normal(0, 1, rows) + np.where(recent, 1e6, 0.0),
        "lognormal_wide": rng.lognormal(0, 3, rows),
        "rare_ones": (rng.random(rows) < 0.01).astype(float),
        "huge_outliers": np.where(np.arange(rows) % 997 == 0, 1e300, 5.0 + rng.random(rows)),
    }
    path = make_model(columns, list(columns))
    result = run_model_drift(path, "m", "shapes")
    for name in columns:
        f = result.features[name]
        baseline, current = (window_values(path, "features_m", name, w.start, w.end)
                             for w in (result.historical_window, result.current_window))
        exact = ss.ks_2samp(baseline, current).statistic
        assert f.ks_statistic <= exact + 1e-12, name
        assert exact <= f.ks_statistic + f.ks_error_bound + 1e-12, name
        assert f.ks_error_bound <= 2.0 / 1000, (name, f.ks_error_bound)
        edges = np.array(f.psi_bin_edges)
        expected, actual = st.bin_counts(baseline, edges), st.bin_counts(current, edges)
        assert f.psi == pytest.approx(st.psi_from_counts(expected, actual), abs=1e-9), name
        assert f.n_historical == baseline.size and f.n_current == current.size
    assert result.features["far_drift"].verdict == "drift"
    assert result.features["rounded"].ks_error_bound == 0.0
    assert result.features["rare_ones"].ks_error_bound == 0.0


def test_window_extremes_come_from_its_first_and_last_cells():
    """A window's minimum and maximum are read from its first and last present cells
    (cells are in value order and never overlap): equal to the extremes over all its
    cells, whether or not the window reaches the grid's ends."""
    import random

    from stat_guard.scheduled.aggregates import FeatureAggregate, FeatureSpec, _set_bins

    rng = random.Random(3)
    inf = math.inf
    for _ in range(200):
        cells, value = [], 0.0
        for _ in range(rng.randint(1, 40)):
            lo = value + rng.random() + 0.01
            hi = lo + rng.random()
            value = hi
            windows = [(rng.randint(1, 50), lo, hi) if rng.random() < 0.6 else (0, inf, -inf)
                       for _ in range(2)]
            cells.append([*windows[0], *windows[1]])
        aggregate = FeatureAggregate(FeatureSpec("x", "numeric", '"x"'))
        _set_bins(aggregate, cells, {}, 10, 0.01)
        for w, window in enumerate(("historical", "current")):
            present = [c for c in cells if c[3 * w]]
            counts = aggregate.windows[window]
            if present:
                assert counts.minimum == min(c[3 * w + 1] for c in present)
                assert counts.maximum == max(c[3 * w + 2] for c in present)
            else:
                assert math.isnan(counts.minimum) and math.isnan(counts.maximum)
