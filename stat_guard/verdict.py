"""The owner's verdict rules: PSI is the primary trigger, KS a guarded secondary one.

PSI < 0.1 is ok, 0.1–0.25 a warning, > 0.25 drift. KS raises a warning only when
p < 0.05 and the statistic > 0.1, because at large sample sizes KS flags tiny deviations.
A model's verdict is its features' worst, its drift score their largest PSI
(:func:`model_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum


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
    """Configurable rule thresholds; the defaults are the owner's."""

    psi_warning: float = 0.1  # PSI at or above: warning
    psi_drift: float = 0.25  # PSI above: drift
    ks_pvalue: float = 0.05  # KS warns when its p-value is below this ...
    ks_statistic: float = 0.1  # ... and its statistic above this
    min_count: int = 30  # fewer finite values than this in either window: insufficient_data
    ks_use_adjusted_pvalue: bool = False  # use the Benjamini–Hochberg p-value in the KS rule

    def __post_init__(self) -> None:
        if not 0 <= self.psi_warning <= self.psi_drift:
            raise ValueError("need 0 <= psi_warning <= psi_drift")
        if not 0 < self.ks_pvalue < 1 or not 0 <= self.ks_statistic <= 1:
            raise ValueError("ks_pvalue must be in (0, 1) and ks_statistic in [0, 1]")
        if self.min_count < 1:
            raise ValueError("min_count must be >= 1")

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


DEFAULT_THRESHOLDS = Thresholds()


def decide(psi: float, ks_statistic: float, ks_pvalue: float, n_baseline: int, n_current: int,
           thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Decision:
    """One feature's verdict from its PSI and KS figures."""
    if min(n_baseline, n_current) < thresholds.min_count:
        return Decision(Verdict.INSUFFICIENT_DATA, (
            f"fewer than {thresholds.min_count} finite values "
            f"(baseline {n_baseline}, current {n_current})",))
    verdict = Verdict.OK
    reasons: list[str] = []
    if not math.isnan(psi):
        if psi > thresholds.psi_drift:
            verdict = Verdict.DRIFT
            reasons.append(f"psi {psi:.4g} > {thresholds.psi_drift:g}")
        elif psi >= thresholds.psi_warning:
            verdict = Verdict.WARNING
            reasons.append(f"psi {psi:.4g} >= {thresholds.psi_warning:g}")
    if (not math.isnan(ks_pvalue) and ks_pvalue < thresholds.ks_pvalue
            and ks_statistic > thresholds.ks_statistic):
        reasons.append(f"ks {ks_statistic:.4g} > {thresholds.ks_statistic:g} "
                       f"with p {ks_pvalue:.3g} < {thresholds.ks_pvalue:g}")
        verdict = worst([verdict, Verdict.WARNING])
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
