"""The reference distributions written in plain Python, against scipy's."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from stat_guard.distributions import (
    chi2_cdf,
    chi2_ppf,
    chi2_sf,
    kolmogorov_sf,
    ks_2samp_exact_sf,
)

ROOT = Path(__file__).resolve().parents[2]

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


# Sizes equal and unequal, coprime and not, one of them 1; shifts from none to separation.
KS_SIZES = [(1, 1), (1, 6), (2, 9), (5, 5), (7, 13), (12, 18), (30, 30), (40, 35),
            (64, 48), (100, 80), (250, 300), (600, 450)]


@pytest.mark.parametrize("n, m", KS_SIZES)
def test_exact_two_sample_ks_matches_scipy_exact(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    for shift in (0.0, 0.25, 0.75, 2.0, 10.0):
        baseline, current = rng.normal(0.0, 1.0, n), rng.normal(shift, 1.0, m)
        theirs = scipy_stats.ks_2samp(baseline, current, method="exact")
        ours = ks_2samp_exact_sf(theirs.statistic, n, m)
        assert ours == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-13), (n, m, shift)


def test_exact_two_sample_ks_at_every_attainable_statistic():
    n, m = 9, 6
    rng = np.random.default_rng(5)
    seen: dict[float, float] = {}
    for _ in range(3000):  # random pairs reach every value D takes for these sizes
        result = scipy_stats.ks_2samp(rng.normal(size=n), rng.normal(size=m), method="exact")
        seen[round(result.statistic * 18)] = result.pvalue
    assert len(seen) >= 12
    for steps, pvalue in seen.items():
        assert ks_2samp_exact_sf(steps / 18, n, m) == pytest.approx(pvalue, rel=1e-12)


def test_exact_two_sample_ks_edges():
    assert ks_2samp_exact_sf(0.0, 10, 20) == 1.0
    assert ks_2samp_exact_sf(1.0, 3, 4) == pytest.approx(2 / math.comb(7, 3))
    assert ks_2samp_exact_sf(0.5, 4, 7) == ks_2samp_exact_sf(0.5, 7, 4)
    assert math.isnan(ks_2samp_exact_sf(math.nan, 3, 4))
    assert math.isnan(ks_2samp_exact_sf(0.5, 0, 4))


def test_small_sample_ks_pvalue_loads_neither_numpy_nor_scipy():
    """The drift engine's p-values over small windows stay in plain Python."""
    probe = ("import sys\n"
             "from stat_guard.counts import ks_pvalue, KS_FINITE_N_LIMIT\n"
             "assert 0 < ks_pvalue(0.4, 40, 35) < 0.01\n"
             "assert 0 < ks_pvalue(0.05, 1500, 1300) < 1\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in {'numpy', 'scipy'}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
