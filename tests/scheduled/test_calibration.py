"""The verdict rule is calibrated on the scheduled path: DuckDB counts (about 1,000 fine
bins for KS, 10 PSI bins from the historical window's quantiles, categories from
``histogram()``) flag same-distribution pairs at most 5% of the time from min_count values
up, a 1σ mean shift in at least 80% of pairs from 50 values per window and a 0.5σ shift
from 300 (tests/calibration.py: the families and what a shift means for each).

One DuckDB file per window size holds one model whose every feature is an independent
pair, historical window 4 times the current, so one ``run_model_drift`` scores them all:
the engine corrects nothing across features unless configured to. Repetitions are
modest; an observed rate passes within three binomial standard errors of its target and
is printed with its 95% Clopper–Pearson interval (``pytest -s``). The full table is
bench/bench_verdicts.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration import (
    FAMILIES,
    HISTORICAL_RATIO,
    describe_rate,
    draw,
    false_alarm_ceiling,
    power_floor,
    score_scheduled_pairs,
    write_calibration_model,
)

# Calm pairs (features) per family in each size's file. A 4,000 : 1,000 pair costs the
# most: about 80 ms for its exact KS p-value.
CALM_PAIRS = {30: 150, 50: 150, 300: 150, 1_000: 40, 10_000: 60}
# Shifted pairs per family, in the file of the size where the rule promises to find them.
SHIFTS = {50: 1.0, 300: 0.5}
SHIFTED_PAIRS = 60


@pytest.fixture(scope="module")
def scheduled_runs(tmp_path_factory):
    """Size → the scored features of that size's calibration model, run on first use."""
    directory = tmp_path_factory.mktemp("calibration")
    runs: dict[int, dict] = {}

    def run(size: int) -> dict:
        if size not in runs:
            rng = np.random.default_rng([size, 2025])
            pairs = {}
            for family in FAMILIES:
                for i in range(CALM_PAIRS[size]):
                    pairs[f"{family}_calm_{i:03d}"] = (
                        family, draw(family, HISTORICAL_RATIO * size, 0.0, rng),
                        draw(family, size, 0.0, rng))
                for i in range(SHIFTED_PAIRS if size in SHIFTS else 0):
                    pairs[f"{family}_shifted_{i:03d}"] = (
                        family, draw(family, HISTORICAL_RATIO * size, 0.0, rng),
                        draw(family, size, SHIFTS[size], rng))
            path = str(directory / f"calibration_{size}.duckdb")
            write_calibration_model(path, pairs)
            runs[size] = score_scheduled_pairs(path)
        return runs[size]

    return run


def _flagged(features: dict, prefix: str) -> tuple[int, int]:
    chosen = [f for name, f in features.items() if name.startswith(prefix)]
    assert chosen and all(f.error is None for f in chosen)
    return sum(f.verdict in {"warning", "drift"} for f in chosen), len(chosen)


@pytest.mark.parametrize("size", sorted(CALM_PAIRS))
@pytest.mark.parametrize("family", FAMILIES)
def test_same_distribution_pairs_are_flagged_at_most_5_percent(scheduled_runs, family, size):
    features = scheduled_runs(size)
    some = next(f for name, f in features.items() if name.startswith(family))
    assert (some.n_historical, some.n_current) == (HISTORICAL_RATIO * size, size)
    flagged, pairs = _flagged(features, f"{family}_calm_")
    rate = describe_rate(flagged, pairs)
    print(f"scheduled path, {family}, {HISTORICAL_RATIO * size} : {size} values, no shift: "
          f"flagged {rate}")
    assert flagged / pairs <= false_alarm_ceiling(pairs), rate


@pytest.mark.parametrize("size", sorted(SHIFTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_shift_is_flagged_in_at_least_80_percent_of_pairs(scheduled_runs, family, size):
    flagged, pairs = _flagged(scheduled_runs(size), f"{family}_shifted_")
    rate = describe_rate(flagged, pairs)
    print(f"scheduled path, {family}, {HISTORICAL_RATIO * size} : {size} values, shift "
          f"{SHIFTS[size]}σ: flagged {rate}")
    assert flagged / pairs >= power_floor(pairs), rate
