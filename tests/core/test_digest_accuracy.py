"""Digest-based KS and PSI against the exact raw-sample values.

Six distributions, sizes 1e2 to 1e6, the default compression. KS must be within 0.01.
PSI must be within 0.01 wherever the exact PSI is in the decision range (<= 0.5); windows
of up to 75·δ = 3,000 values are kept exactly (δ = 40), larger ones are compressed (10,000
to 1,000,000 values here). Above 0.5, PSI's logarithm magnifies tail rank errors, so the
bound is 5% relative, which never changes a verdict.
The maxima are written to .artifacts/accuracy.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stat_guard import stats as st
from stat_guard.tdigest import TDigest

SIZES = [100, 1_000, 3_000, 10_000, 20_000, 30_000, 100_000, 1_000_000]
SHIFTS = [0.0, 0.05, 0.2, 0.5]


def _sample(kind: str, n: int, shift: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, 1.0, n)
    if kind == "lognormal":
        return rng.lognormal(shift, 1.0, n)
    if kind == "bimodal":
        return np.where(rng.random(n) < 0.3, rng.normal(-2 + shift, 0.5, n), rng.normal(2, 1, n))
    if kind == "uniform":
        return rng.uniform(shift, 1 + shift, n)
    if kind == "discrete":
        return rng.poisson(3 + 3 * shift, n).astype(float)
    if kind == "constant":
        return np.full(n, 5.0 + (shift > 0.1))
    raise ValueError(kind)


KINDS = ["normal", "lognormal", "bimodal", "uniform", "discrete", "constant"]
_RESULTS: dict[str, dict] = {}


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_digest_ks_and_psi_track_the_exact_values(kind):
    rng = np.random.default_rng(KINDS.index(kind) + 2)
    worst_ks = worst_psi_abs = worst_psi_rel = 0.0
    for n in SIZES:
        for shift in SHIFTS:
            baseline, current = _sample(kind, n, 0.0, rng), _sample(kind, n, shift, rng)
            db, dc = TDigest.from_values(baseline), TDigest.from_values(current)
            ks_error = abs(st.ks_samples(baseline, current).statistic
                           - st.ks_digests(db, dc).statistic)
            exact_psi = st.psi_samples(baseline, current).statistic
            psi_error = abs(exact_psi - st.psi_digests(db, dc).statistic)
            worst_ks = max(worst_ks, ks_error)
            if exact_psi <= 0.5:
                worst_psi_abs = max(worst_psi_abs, psi_error)
            else:
                worst_psi_rel = max(worst_psi_rel, psi_error / exact_psi)
            assert ks_error <= 0.01, (kind, n, shift, ks_error)
            if exact_psi <= 0.5:
                assert psi_error <= 0.01, (kind, n, shift, exact_psi, psi_error)
            else:
                assert psi_error <= 0.05 * exact_psi, (kind, n, shift, exact_psi, psi_error)
    _RESULTS[kind] = {"max_ks_error": worst_ks, "max_psi_error_psi_le_0_5": worst_psi_abs,
                      "max_psi_relative_error_above": worst_psi_rel}
    out = Path(__file__).resolve().parents[2] / ".artifacts"
    out.mkdir(exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(_RESULTS, indent=1))
