"""Two data failures the verdict must see on the scheduled path: a burst of missing values
with the rest unchanged, and a categorical column whose categories are all new, beyond
the number of categories kept apart."""

from __future__ import annotations

import re

import numpy as np

from stat_guard.scheduled.engine import run_model_drift
from stat_guard.scheduled.scoring import UNSEEN_CATEGORY, pool_categories

SIZE = 20_000


def test_a_null_burst_is_drift_with_its_own_reason(make_model):
    rng = np.random.default_rng(31)
    values = rng.normal(size=SIZE)
    values[rng.random(SIZE) < 0.01] = np.nan
    burst = rng.random(2_000) < 0.4
    values[-2_000:][burst] = np.nan  # the current window: 40% NULL, the rest unchanged
    path = make_model({"v": values, "calm": rng.normal(size=SIZE)}, ["v", "calm"])
    result = run_model_drift(path, "m", "burst-1")
    feature = result.features["v"]
    assert feature.verdict == "drift", feature
    assert re.match(r"missing share 1\.\d% -> 4\d\.\d%", feature.reasons[0]), feature.reasons
    assert feature.psi < 0.1
    figures = feature.figures()
    assert figures.missing_rate_current > 0.35 and figures.missing_rate_baseline < 0.02
    assert result.features["calm"].verdict == "ok"


def test_a_wholesale_change_of_many_categories_is_drift(make_model):
    rng = np.random.default_rng(32)
    old = [f"old{i}" for i in rng.integers(0, 50_000, SIZE - 2_000)]
    new = [f"new{i}" for i in rng.integers(0, 50_000, 2_000)]
    steady = [f"s{i}" for i in rng.integers(0, 5, SIZE)]
    path = make_model({"code": old + new, "steady": steady}, ["code", "steady"],
                      ["code", "steady"])
    result = run_model_drift(path, "m", "codes-1")
    code = result.features["code"]
    assert code.verdict == "drift", code
    assert code.unseen_share == 1.0 and len(code.unseen_categories) == 20
    assert code.distinct_categories > 20 * 200  # the windows' values, far above the 200 kept
    assert any("high cardinality" in note for note in code.notes)
    assert result.features["steady"].verdict == "ok"


def test_pooling_keeps_new_categories_apart_from_the_rare_old_ones():
    historical = {f"c{i}": 100 - i for i in range(10)}
    current = {"c0": 50, "c9": 5, "fresh": 40}
    expected, actual = pool_categories(historical, current, max_categories=5)
    assert set(expected) == {"c0", "c1", "c2", "(other)", UNSEEN_CATEGORY}
    assert expected[UNSEEN_CATEGORY] == 0 and actual[UNSEEN_CATEGORY] == 40
    assert actual["(other)"] == 5 and sum(expected.values()) == sum(historical.values())
