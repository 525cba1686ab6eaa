"""The local 3σ signal: decide cheaply, on the caller's side, when to ask for an analysis.

Welford's streaming mean and variance; the owner's trigger is ``value > mean + 3·std``
measured against the values seen before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ThreeSigmaSignal:
    """Streaming outlier trigger.

    ``update(value)`` returns True when the value lies more than ``sigmas`` standard
    deviations above the running mean of the earlier values (or on either side when
    ``two_sided``). It stays quiet until ``warmup`` values were seen. NaN, ±Inf and None
    are counted and ignored.
    """

    sigmas: float = 3.0
    warmup: int = 30
    two_sided: bool = False
    count: int = 0
    mean: float = 0.0
    _m2: float = 0.0
    ignored: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if not self.sigmas > 0:
            raise ValueError("sigmas must be positive")
        if self.warmup < 2:
            raise ValueError("warmup must be at least 2")

    @property
    def variance(self) -> float:
        return self._m2 / (self.count - 1) if self.count > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.count > 1 else math.nan

    @property
    def upper_limit(self) -> float:
        return self.mean + self.sigmas * self.std if self.count > 1 else math.inf

    def is_outlier(self, value: float) -> bool:
        """Would ``value`` fire, against what has been seen so far (no update)?"""
        if self.count < self.warmup:
            return False
        deviation = float(value) - self.mean
        limit = self.sigmas * self.std
        return bool(deviation > limit or (self.two_sided and -deviation > limit))

    def update(self, value: float | None) -> bool:
        """Check ``value`` against the history, then add it; True when it fires."""
        if value is None or not math.isfinite(value):
            self.ignored += 1
            return False
        value = float(value)
        fired = self.is_outlier(value)
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)
        if fired:
            self.fired += 1
        return fired
