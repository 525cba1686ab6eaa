"""The verdict rules: a feature is flagged only when its change is significant for the
sample sizes and at least the owner's effect size.

Effect sizes (the owner's floors): PSI >= 0.1 is a warning and PSI > 0.25 drift; KS
warns above a statistic of 0.1; the share of missing values (NULL, NaN, ±Inf) warns when it
moved by 5 points and is drift at 20. Significance: each of those changes must also be
unlikely under "same distribution" for the windows' sizes: PSI by Pearson's chi-square
test of the same bins (or categories), KS by its p-value, the missing share by a
two-proportion test. A feature's false-alarm budget ``significance`` (default 0.05) is
shared by the tests that apply to it (Bonferroni), and with ``false_discovery_rate`` the
features of a model are corrected together (Benjamini–Hochberg). The measured false-alarm
and detection rates are in docs/statistics.md. A model's verdict is its features' worst,
its drift score their largest PSI (:func:`model_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum

from stat_guard.counts import two_proportion_pvalue


class Verdict(StrEnum):
    INSUFFICIENT_DATA = "insufficient_data"
    OK = "ok"
    WARNING = "warning"
    DRIFT = "drift"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.INSUFFICIENT_DATA: 0, Verdict.OK: 1, Verdict.WARNING: 2, Verdict.DRIFT: 3}
_VERDICTS = frozenset(v.value for v in Verdict)
# A feature (or a whole run) that could not be scored. Not a Verdict: no rule decides it.
ERROR = "error"


@dataclass(frozen=True)
class Thresholds:
    """Configurable rule thresholds; the effect-size defaults are the owner's."""

    psi_warning: float = 0.1  # PSI at or above (and significant): warning
    psi_drift: float = 0.25  # PSI above (and significant): drift
    ks_statistic: float = 0.1  # KS statistic above (and significant): warning
    missing_rate_warning: float = 0.05  # missing share moved by at least this: warning
    missing_rate_drift: float = 0.2  # ... by at least this: drift
    significance: float = 0.05  # a feature's false-alarm budget, shared by its tests
    false_discovery_rate: bool = False  # correct a model's features together (BH)
    min_count: int = 30  # fewer finite values than this in either window: insufficient_data

    def __post_init__(self) -> None:
        if not 0 <= self.psi_warning <= self.psi_drift:
            raise ValueError("need 0 <= psi_warning <= psi_drift")
        if not 0 <= self.ks_statistic <= 1:
            raise ValueError("ks_statistic must be in [0, 1]")
        if not 0 <= self.missing_rate_warning <= self.missing_rate_drift <= 1:
            raise ValueError("need 0 <= missing_rate_warning <= missing_rate_drift <= 1")
        if not 0 < self.significance < 1:
            raise ValueError("significance must be in (0, 1)")
        if self.min_count < 1:
            raise ValueError("min_count must be >= 1")

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """What the rules look at for one feature; both paths build it from their figures.

    ``n_*`` count the finite values (numeric) or the non-missing categories; ``missing_*``
    the NULL, NaN and ±Inf values left out. ``psi_pvalue`` is the chi-square test of the
    bins (or categories) PSI was computed over.
    """

    n_baseline: int
    n_current: int
    psi: float = math.nan
    psi_pvalue: float = math.nan
    ks_statistic: float = math.nan
    ks_pvalue: float = math.nan
    missing_baseline: int = 0
    missing_current: int = 0

    @property
    def missing_rates(self) -> tuple[float, float]:
        return (_share(self.missing_baseline, self.n_baseline + self.missing_baseline),
                _share(self.missing_current, self.n_current + self.missing_current))

    def missing_pvalue(self) -> float:
        return two_proportion_pvalue(self.missing_baseline, self.n_baseline
                                     + self.missing_baseline, self.missing_current,
                                     self.n_current + self.missing_current)

    def tests(self) -> int:
        """How many tests share the feature's false-alarm budget."""
        return (1 + (not math.isnan(self.ks_pvalue))
                + (self.missing_baseline + self.missing_current > 0))

    def pvalue(self) -> float:
        """The feature's Bonferroni-combined p-value (its smallest test's, times the tests);
        what a false-discovery-rate correction across features takes."""
        tests = [self.psi_pvalue, self.ks_pvalue]
        if self.missing_baseline + self.missing_current > 0:
            tests.append(self.missing_pvalue())
        finite = [p for p in tests if not math.isnan(p)]
        return min(1.0, min(finite) * self.tests()) if finite else math.nan


def _share(part: int, whole: int) -> float:
    return part / whole if whole > 0 else math.nan


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


DEFAULT_THRESHOLDS = Thresholds()


def decide(evidence: Evidence, thresholds: Thresholds = DEFAULT_THRESHOLDS,
           feature_pvalue_adjusted: float = math.nan) -> Decision:
    """One feature's verdict. ``feature_pvalue_adjusted``: the feature's p-value after the
    Benjamini–Hochberg correction across the model's features; used when
    ``thresholds.false_discovery_rate`` is on (a test then counts only if that is
    significant too)."""
    level = thresholds.significance / evidence.tests()
    if thresholds.false_discovery_rate and not (
            feature_pvalue_adjusted < thresholds.significance):
        level = 0.0  # nothing of this feature survives the correction

    def significant(pvalue: float) -> bool:
        return not math.isnan(pvalue) and pvalue < level

    verdict = Verdict.OK
    reasons: list[str] = []
    e, t = evidence, thresholds
    missing_b, missing_c = e.missing_rates
    if (e.missing_baseline + e.missing_current > 0 and not math.isnan(missing_b)
            and not math.isnan(missing_c)):
        moved = abs(missing_c - missing_b)
        pvalue = e.missing_pvalue()
        if moved >= t.missing_rate_warning and significant(pvalue):
            verdict = Verdict.DRIFT if moved >= t.missing_rate_drift else Verdict.WARNING
            reasons.append(f"missing share {missing_b:.1%} -> {missing_c:.1%} "
                           f"(p {pvalue:.2g})")
    if min(e.n_baseline, e.n_current) < t.min_count:
        reasons.append(f"fewer than {t.min_count} finite values "
                       f"(baseline {e.n_baseline}, current {e.n_current})")
        return Decision(verdict if verdict != Verdict.OK else Verdict.INSUFFICIENT_DATA,
                        tuple(reasons))
    if not math.isnan(e.psi) and significant(e.psi_pvalue):
        if e.psi > t.psi_drift:
            verdict = worst([verdict, Verdict.DRIFT])
            reasons.append(f"psi {e.psi:.4g} > {t.psi_drift:g} (p {e.psi_pvalue:.2g})")
        elif e.psi >= t.psi_warning:
            verdict = worst([verdict, Verdict.WARNING])
            reasons.append(f"psi {e.psi:.4g} >= {t.psi_warning:g} (p {e.psi_pvalue:.2g})")
    if e.ks_statistic > t.ks_statistic and significant(e.ks_pvalue):
        verdict = worst([verdict, Verdict.WARNING])
        reasons.append(f"ks {e.ks_statistic:.4g} > {t.ks_statistic:g} "
                       f"(p {e.ks_pvalue:.2g})")
    return Decision(verdict, tuple(reasons))


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict; an empty list is insufficient data."""
    return max(verdicts, key=lambda v: v.severity, default=Verdict.INSUFFICIENT_DATA)


@dataclass(frozen=True)
class ModelVerdict:
    verdict: str  # a Verdict's value, or ERROR
    drift_score: float  # NaN when no feature has one


def model_verdict(features: Iterable[tuple[str, float | None]]) -> ModelVerdict:
    """The model-level rule over its features' (verdict, PSI) pairs.

    The verdict is the worst among the scored features; the drift score the largest
    finite PSI among them, features with insufficient data left out. A feature whose
    verdict is not a :class:`Verdict` (``error``: it could not be scored) counts for
    neither; when every feature is like that the model's verdict is ``error``, and with
    no features at all ``insufficient_data``.
    """
    judged = list(features)
    scored = [(Verdict(verdict), psi) for verdict, psi in judged if verdict in _VERDICTS]
    if not scored:
        return ModelVerdict(ERROR if judged else Verdict.INSUFFICIENT_DATA.value, math.nan)
    psis = [psi for verdict, psi in scored if verdict != Verdict.INSUFFICIENT_DATA
            and psi is not None and math.isfinite(psi)]
    return ModelVerdict(worst(verdict for verdict, _ in scored).value,
                        max(psis, default=math.nan))
