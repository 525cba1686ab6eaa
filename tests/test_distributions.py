"""The reference distributions written in plain Python, against scipy's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from stat_guard.distributions import chi2_cdf, chi2_ppf, chi2_sf, kolmogorov_sf

DOFS = [0.5, 1, 2, 2.5, 3, 5, 9, 10, 19, 49, 99, 199, 999, 5000, 100_000]


def _relative(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs) if theirs else abs(ours)


def test_kolmogorov_survival_matches_scipy_on_both_series():
    grid = np.concatenate([np.linspace(0.02, 4.0, 500), [0.999999, 1.0, 1.000001, 6.0]])
    worst = max(_relative(kolmogorov_sf(x), scipy_stats.kstwobign.sf(x)) for x in grid)
    assert worst < 1e-12
    assert kolmogorov_sf(0.0) == 1.0 and kolmogorov_sf(-1.0) == 1.0
    assert kolmogorov_sf(40.0) == 0.0
    assert math.isnan(kolmogorov_sf(math.nan))


@pytest.mark.parametrize("dof", DOFS)
def test_chi2_tails_match_scipy(dof):
    # The prefactor e^(−x + a·ln x − ln Γ(a)) cancels terms of size a·ln x: about 1e-10
    # of relative precision is left at 100,000 degrees of freedom.
    tolerance = 1e-10 if dof < 10_000 else 1e-9
    for x in np.concatenate([np.geomspace(1e-6, 10 * dof + 100, 200), [dof, dof / 2.0]]):
        sf, cdf = scipy_stats.chi2.sf(x, dof), scipy_stats.chi2.cdf(x, dof)
        if sf > 1e-290:
            assert _relative(chi2_sf(x, dof), sf) < tolerance, (x, dof)
        if cdf > 1e-290:
            assert _relative(chi2_cdf(x, dof), cdf) < tolerance, (x, dof)


@pytest.mark.parametrize("dof", DOFS)
def test_chi2_quantiles_match_scipy_from_far_tail_to_far_tail(dof):
    for p in [1e-300, 1e-100, 1e-12, 1e-6, 0.01, 0.05, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99,
              0.999, 1 - 1e-9, 1 - 1e-14]:
        expected = scipy_stats.chi2.ppf(p, dof)
        if expected > 1e-290:
            assert _relative(chi2_ppf(p, dof), expected) < 1e-10, (p, dof)


def test_chi2_edges_and_invalid_arguments():
    assert chi2_ppf(0.0, 3) == 0.0 and chi2_ppf(1.0, 3) == math.inf
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(math.inf, 3) == 0.0
    assert chi2_cdf(-1.0, 3) == 0.0
    for bad in (chi2_ppf(1.5, 3), chi2_ppf(-0.1, 3), chi2_ppf(0.5, 0), chi2_sf(1.0, -2),
                chi2_sf(math.nan, 3), chi2_ppf(math.nan, 3)):
        assert math.isnan(bad)
