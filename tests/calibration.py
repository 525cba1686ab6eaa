"""Same-distribution and shifted window pairs for measuring the verdict rule's false-alarm
and detection rates, scored the way each path scores them.

Read by tests/core/test_calibration.py, tests/scheduled/test_calibration.py and
bench/bench_verdicts.py, so the suite and the benchmark measure the same families, shifts
and paths. A pair is a historical (baseline) window and a current window; it is
*flagged* when its feature's verdict is warning or drift.

Families, and what a shift of s means for each:

- ``normal``: N(0, 1); shifted, N(s, 1).
- ``poisson``: integer counts, Poisson(2), heavily tied (nine values hold 99.99% of the
  mass); shifted, Poisson(2 + s·√2): the mean moves by s standard deviations of the
  historical counts and the values stay integer counts.
- ``categorical``: ten categories c0…c9 with shares 30, 20, 15, 10, 8, 6, 4, 3, 2, 2%, the
  cells of a latent N(0, 1) cut at fixed points; shifted, the latent variable is N(s, 1),
  so mass moves from the first categories towards the rare last ones as a normal mean
  shift of s standard deviations would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import duckdb
import numpy as np
from scipy import stats as ss

from stat_guard import counts
from stat_guard.envelope_verdict import compare_digests, evaluate
from stat_guard.scheduled.engine import (
    DriftRunConfig,
    FeatureDrift,
    WindowConfig,
    ensure_schema,
    run_model_drift,
)
from stat_guard.tdigest import TDigest
from stat_guard.verdict import Evidence, Verdict, decide

FAMILIES = ("normal", "poisson", "categorical")
POISSON_MEAN = 2.0
CATEGORY_SHARES = (0.30, 0.20, 0.15, 0.10, 0.08, 0.06, 0.04, 0.03, 0.02, 0.02)
CATEGORY_NAMES = tuple(f"c{i}" for i in range(len(CATEGORY_SHARES)))
# Latent N(0, 1) cut points that give CATEGORY_SHARES.
_CATEGORY_CUTS = np.array([NormalDist().inv_cdf(q) for q in
                           np.cumsum(CATEGORY_SHARES)[:-1]])
FLAGGED = frozenset({Verdict.WARNING.value, Verdict.DRIFT.value})
FALSE_ALARM_TARGET = 0.05  # a feature's significance budget: at most 5% of calm pairs flagged
POWER_TARGET = 0.80  # at least 80% of shifted pairs flagged, where the rule promises it
HISTORICAL_RATIO = 4  # historical windows 4× the current, about as the engine's defaults

# The scheduled engine's windows for a calibration table: its first 80% of rows by time is
# the historical window, the newest 20% the current one (4 : 1, as the default 50–70% and
# newest 5% are), whole up to 5,000,000 rows each.
CALIBRATION_WINDOWS = WindowConfig(current_fraction=0.2, historical_start=0.0,
                                   historical_end=0.8, max_rows_per_window=5_000_000)
CALIBRATION_CONFIG = DriftRunConfig(windows=CALIBRATION_WINDOWS)
CALIBRATION_MODEL = "calibration"


def draw(family: str, size: int, shift: float, rng: np.random.Generator) -> np.ndarray:
    """``size`` values of a family shifted by ``shift`` (see the module docstring):
    float64 for normal, int64 counts for poisson, int64 category codes for categorical."""
    if family == "normal":
        return rng.normal(shift, 1.0, size)
    if family == "poisson":
        return rng.poisson(POISSON_MEAN + shift * math.sqrt(POISSON_MEAN), size)
    if family == "categorical":
        return np.searchsorted(_CATEGORY_CUTS, rng.normal(shift, 1.0, size))
    raise ValueError(f"unknown family {family!r}")


def category_counts(codes: np.ndarray) -> dict[str, int]:
    """Category name → count of the categories present (as a count table holds them)."""
    tally = np.bincount(codes, minlength=len(CATEGORY_NAMES))
    return {CATEGORY_NAMES[i]: int(c) for i, c in enumerate(tally) if c}


# ---- the digest path ----------------------------------------------------------------


@dataclass(frozen=True)
class PairScore:
    """One pair as the digest path judged it, with the figures the former rule reads."""

    verdict: str
    psi: float
    ks_statistic: float  # NaN for categories
    ks_pvalue: float

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGGED


def score_digest_pair(family: str, baseline: np.ndarray, current: np.ndarray) -> PairScore:
    """Numeric windows as the verdict service sees them: t-digests built as the extension
    builds them (the same bytes up to 75·δ values), compared and judged by
    ``compare_digests`` and ``evaluate``. Categories as counted category tables, through
    ``categorical_drift`` and the same rule (PSI over the categories, significance by
    their chi-square test)."""
    if family == "categorical":
        result = counts.categorical_drift(category_counts(baseline), category_counts(current))
        evidence = Evidence(n_baseline=result.n_baseline, n_current=result.n_current,
                            psi=result.psi, psi_pvalue=result.chi2_pvalue)
        return PairScore(decide(evidence).verdict.value, result.psi, math.nan, math.nan)
    comparison = compare_digests(TDigest.from_values(baseline), TDigest.from_values(current))
    report = evaluate({"feature": comparison})
    return PairScore(report.features["feature"].decision.verdict.value,
                     comparison.psi.statistic, comparison.ks.statistic, comparison.ks.pvalue)


# ---- the scheduled path -------------------------------------------------------------


def write_calibration_model(db_path: str, pairs: Mapping[str, tuple[str, np.ndarray,
                                                                    np.ndarray]]) -> None:
    """A DuckDB file with one production model whose every feature is an independent pair:
    name → (family, historical values, current values), every historical window of one
    length and every current window of another. The historical values fill the oldest
    rows, the current values the newest, so ``CALIBRATION_WINDOWS`` cuts exactly there.
    """
    if os.path.exists(db_path):
        os.remove(db_path)
    lengths = {(h.size, c.size) for _, h, c in pairs.values()}
    if len(lengths) != 1:
        raise ValueError("every pair needs the same window lengths")
    [(historical, current)] = lengths
    if historical != (HISTORICAL_RATIO * current):
        raise ValueError("the historical window must be 4 times the current one")
    ensure_schema(db_path)
    columns = {"entity_id": np.arange(historical + current)}
    select = ["entity_id", "TIMESTAMP '2025-01-01' + to_seconds(entity_id) AS ts"]
    for i, (name, (family, h, c)) in enumerate(pairs.items()):
        columns[f"v{i}"] = np.concatenate([h, c])
        quoted = '"' + name.replace('"', '""') + '"'
        select.append(f"'c' || CAST(v{i} AS VARCHAR) AS {quoted}" if family == "categorical"
                      else f"v{i} AS {quoted}")
    categorical = [n for n, (family, _, _) in pairs.items() if family == "categorical"]
    connection = duckdb.connect(db_path)
    try:
        connection.register("calibration_columns", columns)
        connection.execute(f"CREATE TABLE calibration_features AS SELECT {', '.join(select)} "
                           "FROM calibration_columns")
        connection.execute(
            "INSERT INTO model_metadata (name, status, features, categorical_features, "
            "feature_table) VALUES (?, 'production', ?, ?, 'calibration_features')",
            [CALIBRATION_MODEL, list(pairs), categorical])
    finally:
        connection.close()


def score_scheduled_pairs(db_path: str, run_id: str = "calibration"
                          ) -> dict[str, FeatureDrift]:
    """One scheduled run over the calibration model: every pair scored at once. The engine
    corrects nothing across features unless configured to (Benjamini–Hochberg is off by
    default), so each feature's verdict is that of its pair alone."""
    result = run_model_drift(db_path, CALIBRATION_MODEL, run_id, CALIBRATION_CONFIG)
    sizes = (result.historical_window.sampled_rows, result.current_window.sampled_rows)
    if sizes[0] != HISTORICAL_RATIO * sizes[1]:
        raise AssertionError(f"windows of {sizes} rows, not 4 : 1")
    return result.features


# ---- rates --------------------------------------------------------------------------


def clopper_pearson(hits: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) two-sided interval of a binomial rate."""
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if hits == 0 else float(ss.beta.ppf(tail, hits, trials - hits + 1))
    high = 1.0 if hits == trials else float(ss.beta.ppf(1.0 - tail, hits + 1, trials - hits))
    return low, high


def false_alarm_ceiling(trials: int, target: float = FALSE_ALARM_TARGET) -> float:
    """The highest observed rate a rule whose true rate is ``target`` gives, bar chance of
    about 0.1%: the target plus three binomial standard errors."""
    return target + 3.0 * math.sqrt(target * (1.0 - target) / trials)


def power_floor(trials: int, target: float = POWER_TARGET) -> float:
    """The lowest observed rate a rule whose true rate is ``target`` gives, bar chance of
    about 0.1%: the target minus three binomial standard errors."""
    return target - 3.0 * math.sqrt(target * (1.0 - target) / trials)


def describe_rate(hits: int, trials: int) -> str:
    low, high = clopper_pearson(hits, trials)
    return f"{hits}/{trials} = {hits / trials:.1%} (95% CI {low:.1%}–{high:.1%})"
