"""The verdict rule is calibrated on the digest path: same-distribution window pairs are
flagged (warning or drift) at most 5% of the time from min_count values up, and a 1σ
mean shift is flagged in at least 80% of pairs from 50 values per window, a 0.5σ shift
from 300 (tests/calibration.py: the families and what a shift means for each).

Windows of equal size and historical windows 4 times the current. Repetitions are modest
so the suite stays quick: an observed rate passes within three binomial standard errors
of its target, and every rate is printed with its 95% Clopper–Pearson interval
(``pytest -s``). The full table, with Evidently's defaults and the former rule beside
it, is bench/bench_verdicts.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

from stat_guard.verdict import DEFAULT_THRESHOLDS
from tests.calibration import (
    FAMILIES,
    HISTORICAL_RATIO,
    describe_rate,
    draw,
    false_alarm_ceiling,
    power_floor,
    score_digest_pair,
)

# Calm pairs per size and window ratio. Numeric pairs of 300 and 1,000 values cost the
# most: the exact KS p-value of a 4,000 : 1,000 pair takes about 40 ms. Category pairs
# cost a fraction of a millisecond, and their one test has the whole 5% to itself, so
# small windows get enough of them to tell 5% from 5.5%.
CALM_PAIRS = {30: 400, 50: 400, 300: 300, 1_000: 60, 10_000: 100}
CALM_CATEGORY_PAIRS = {30: 20_000, 50: 20_000, 300: 2_000, 1_000: 400, 10_000: 100}
SHIFTED_PAIRS = 100
RATIOS = (1, HISTORICAL_RATIO)


def _pairs(family: str, size: int, ratio: int, shift: float, pairs: int):
    rng = np.random.default_rng([FAMILIES.index(family), size, ratio, round(shift * 100)])
    for _ in range(pairs):
        baseline = draw(family, ratio * size, 0.0, rng)
        current = draw(family, size, shift, rng)
        yield score_digest_pair(family, baseline, current)


def test_the_smallest_window_judged_is_min_count():
    assert DEFAULT_THRESHOLDS.min_count == min(CALM_PAIRS) == 30


@pytest.mark.parametrize("ratio", RATIOS, ids=lambda r: f"{r}x")
@pytest.mark.parametrize("size", sorted(CALM_PAIRS))
@pytest.mark.parametrize("family", FAMILIES)
def test_same_distribution_pairs_are_flagged_at_most_5_percent(family, size, ratio):
    pairs = (CALM_CATEGORY_PAIRS if family == "categorical" else CALM_PAIRS)[size]
    flagged = sum(s.flagged for s in _pairs(family, size, ratio, 0.0, pairs))
    rate = describe_rate(flagged, pairs)
    print(f"digest path, {family}, {ratio * size} : {size} values, no shift: flagged {rate}")
    assert flagged / pairs <= false_alarm_ceiling(pairs), rate


@pytest.mark.parametrize("ratio", RATIOS, ids=lambda r: f"{r}x")
@pytest.mark.parametrize(("shift", "size"), [(1.0, 50), (0.5, 300)],
                         ids=["1sigma-50", "half-sigma-300"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_shift_is_flagged_in_at_least_80_percent_of_pairs(family, shift, size, ratio):
    flagged = sum(s.flagged for s in _pairs(family, size, ratio, shift, SHIFTED_PAIRS))
    rate = describe_rate(flagged, SHIFTED_PAIRS)
    print(f"digest path, {family}, {ratio * size} : {size} values, shift {shift}σ: "
          f"flagged {rate}")
    assert flagged / SHIFTED_PAIRS >= power_floor(SHIFTED_PAIRS), rate


@pytest.mark.parametrize(("family", "median_above"), [
    ("normal", DEFAULT_THRESHOLDS.psi_drift), ("categorical", DEFAULT_THRESHOLDS.psi_drift),
    # Ties merge Poisson(2)'s deciles into about 6 bins: less noise, still above 0.1.
    ("poisson", DEFAULT_THRESHOLDS.psi_warning)])
def test_psi_alone_would_flag_most_calm_pairs_of_30_values(family, median_above):
    """Why PSI needs its significance test: between two samples of 30 values of the same
    distribution the median PSI is above the owner's lines (0.25 over 10 bins), so PSI
    alone would flag most such pairs; the rule flags at most 5%."""
    scores = list(_pairs(family, 30, 1, 0.0, 200))
    psi = np.array([s.psi for s in scores])
    print(f"{family}, 30 : 30 values, no shift: PSI median {np.median(psi):.3f}, "
          f"95th percentile {np.quantile(psi, 0.95):.3f}")
    assert np.median(psi) > median_above
    assert np.mean(psi >= DEFAULT_THRESHOLDS.psi_warning) > 0.5
    assert np.mean([s.flagged for s in scores]) <= false_alarm_ceiling(len(scores))
