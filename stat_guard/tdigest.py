"""A merging t-digest (Dunning & Ertl 2019) built with numpy, as the extension builds it.

The scale function is k2 normalised by n with a cap on a centroid's mass (MASS_CAP/δ of
all values), the C merge of pg_extension/src/tdigest.c applied to one sorted buffer. Exact
count, min, max, mean (a double-double: ``mean`` + ``mean_residual``) and M2 (the sum of
squared deviations from the mean) travel with the centroids, combined by Chan et al.'s
formula; NULL, NaN and infinite inputs are only counted. Up to EXACT_FACTOR·δ values every
value is a centroid and the moments come from correctly rounded sums, so the extension and
this module write the same bytes for a small window. CDF and quantiles follow
docs/wire-format.md section 2, the rules the extension implements in C.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

# The extension's one compression default (PSG_DEFAULT_COMPRESSION in pg_extension/src/
# pg_stat_guard.h): tdigest_agg(value) and pg_stat_guard.compression alike
# (tests/core/test_shared_constants.py keeps the two sides equal).
DEFAULT_COMPRESSION = 40
MIN_COMPRESSION = 10
MAX_COMPRESSION = 10000
MAX_CENTROIDS = 65536
# Windows of up to 75·δ values keep every value as a centroid (TD_EXACT_FACTOR): 3,000
# values at the default δ = 40.
EXACT_FACTOR = 75
# No centroid holds more than MASS_CAP/δ of the values (TD_MASS_CAP): 1.1% at δ = 40.
MASS_CAP = 0.44


def exact_limit(compression: int) -> int:
    """Values up to which every value is a centroid of its own."""
    return min(EXACT_FACTOR * compression, MAX_CENTROIDS)


def _normaliser(count: float, compression: float) -> float:
    """Z(n) of the normalised k2 scale: 4 ln(n/δ) + 24, with n/δ floored at 1."""
    return 4.0 * math.log(max(count / compression, 1.0)) + 24.0


def _combine_mean(m1: float, w1: float, m2: float, w2: float) -> float:
    """Weighted mean written so that ±1e308 inputs never overflow."""
    total = w1 + w2
    return m1 * (w1 / total) + m2 * (w2 / total)


def _check_compression(compression: int) -> int:
    if isinstance(compression, bool) or not isinstance(compression, (int, np.integer)):
        raise TypeError(f"compression must be an integer, got {type(compression).__name__}")
    if not MIN_COMPRESSION <= compression <= MAX_COMPRESSION:
        raise ValueError(
            f"compression must be between {MIN_COMPRESSION} and {MAX_COMPRESSION}, "
            f"got {compression}"
        )
    return int(compression)


# ---- moments: every operation as pg_extension/src/tdigest.c does it -------------------


def ulp(x: float) -> float:
    """Unit in the last place of |x| (2^-1074 for 0 and subnormals), as td_ulp."""
    if x == 0.0:
        return 5e-324
    e = math.frexp(abs(x))[1]
    return math.ldexp(1.0, e - 53) if e - 53 >= -1074 else 5e-324


def _ldexp(x: float, e: int) -> float:
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


def _unit_exponent(m: float) -> int:
    """e with m·2^-e in [1, 2)."""
    return math.frexp(m)[1] - 1


def _two_sum(a: float, b: float) -> tuple[float, float]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _finish_mean(hi: float, lo: float, vmin: float, vmax: float) -> tuple[float, float]:
    """mean, residual from hi + lo: mean in [min, max], |residual| <= ulp(mean)/2."""
    m = hi + lo
    r = lo - (m - hi)
    if not (math.isfinite(m) and math.isfinite(r)):
        m, r = hi, 0.0
    if not m >= vmin:
        m, r = vmin, 0.0
    if not m <= vmax:
        m, r = vmax, 0.0
    if not 2.0 * abs(r) <= ulp(m):
        r = 0.0
    return m + 0.0, r + 0.0


def exact_moments(values: np.ndarray, vmin: float, vmax: float) -> tuple[float, float, float]:
    """(mean, mean_residual, m2) of finite values from correctly rounded sums (math.fsum),
    bit for bit what td_exact_moments gives: docs/wire-format.md section 1.2."""
    n = values.size
    biggest = max(abs(vmin), abs(vmax))
    if n == 0 or biggest == 0.0:
        return 0.0, 0.0, 0.0
    e = _unit_exponent(biggest)
    scaled = np.ldexp(np.asarray(values, dtype=np.float64), -e)
    listed = scaled.tolist()
    ms = math.fsum(listed) / n
    ms = min(max(ms, math.ldexp(vmin, -e)), math.ldexp(vmax, -e))
    rs = math.fsum(itertools.chain(listed, itertools.repeat(-ms, n))) / n
    hi = ms + rs
    lo = rs - (hi - ms)
    deviations = scaled - hi
    ss = math.fsum((deviations * deviations).tolist()) - float(n) * (lo * lo)
    if not ss > 0.0:
        ss = 0.0
    mean, residual = _finish_mean(_ldexp(hi, e), _ldexp(lo, e), vmin, vmax)
    return mean, residual, _ldexp(ss, 2 * e) + 0.0


def _sorted_moments(ordered: np.ndarray) -> tuple[float, float, float]:
    """Moments of many sorted values: one shifted pass (as td_builder_flush does per
    buffer), numpy's pairwise sums; within 1e-15 of the exact ones, not bit-equal."""
    n = ordered.size
    vmin, vmax = float(ordered[0]), float(ordered[-1])
    biggest = max(abs(vmin), abs(vmax))
    e = 0
    if biggest > 2.0**400 or 0.0 < biggest < 2.0**-400:
        e = max(_unit_exponent(biggest), -1022)
    scaled = np.ldexp(ordered, -e) if e else ordered
    shift = float(scaled[n // 2])
    with np.errstate(over="ignore", invalid="ignore"):
        deviations = scaled - shift
        s1 = float(np.sum(deviations))
        s2 = float(np.sum(deviations * deviations))
    hi, lo = _two_sum(shift, s1 / n)
    s2 -= s1 * (s1 / n)
    m2 = _ldexp(_ldexp(s2, e), e) if s2 > 0.0 else 0.0
    mean, residual = _finish_mean(_ldexp(hi, e), _ldexp(lo, e), vmin, vmax)
    return mean, residual, m2 + 0.0


def combine_moments(na: int, a: tuple[float, float, float], nb: int,
                    b: tuple[float, float, float], vmin: float,
                    vmax: float) -> tuple[float, float, float]:
    """Chan, Golub & LeVeque: moments of two parts, the mean kept as a double-double;
    the same operations as td_combine_moments. Never NaN; an overflowing M2 is +Inf."""
    if nb == 0:
        return a
    if na == 0:
        return (*_finish_mean(b[0], b[1], vmin, vmax), b[2])
    mean_a, res_a, m2_a = a
    mean_b, res_b, m2_b = b
    n = float(na) + float(nb)
    wb = float(nb) / n
    d_hi, d_lo = _two_sum(mean_b, -mean_a)
    if not math.isfinite(d_hi):
        mean, residual = _finish_mean(mean_a * (float(na) / n) + mean_b * wb, 0.0, vmin, vmax)
        return mean, residual, math.inf
    delta = d_hi + (d_lo + (res_b - res_a))
    hi, lo = _two_sum(mean_a, delta * wb)
    lo += res_a
    if not math.isfinite(hi):
        hi, lo = mean_a * (float(na) / n) + mean_b * wb, 0.0
    m2 = m2_a + m2_b + (delta * delta) * (float(na) * wb)
    mean, residual = _finish_mean(hi, lo, vmin, vmax)
    return mean, residual, m2


@dataclass(frozen=True)
class _Anchors:
    """Piecewise-linear CDF support points (docs/wire-format.md, section 2)."""

    x: np.ndarray
    f_low: np.ndarray
    f_high: np.ndarray
    total: float


@dataclass(frozen=True, eq=False)
class TDigest:
    """An immutable t-digest with exact summary statistics.

    ``means`` (float64) and ``weights`` (uint64) are sorted by mean; ``count`` equals the
    sum of the weights. Build one with :meth:`from_values` or :meth:`merge`; read one from
    bytes with :func:`stat_guard.wire.decode_digest`. An empty digest stores
    ``mean = 0.0`` (the wire format's value); :attr:`average` is NaN for it.
    """

    compression: int
    means: np.ndarray
    weights: np.ndarray
    count: int
    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0  # exact to a rounding (NaN-free, in [min, max]); nan when empty
    mean_residual: float = 0.0  # exact mean - mean, at most half an ulp of mean
    m2: float = 0.0  # sum of squared deviations from the mean; +Inf when it overflows
    null_count: int = 0
    nan_count: int = 0
    pos_inf_count: int = 0
    neg_inf_count: int = 0
    _anchor_cache: list = field(default_factory=list, repr=False, compare=False)

    # ---- construction -------------------------------------------------------------

    @classmethod
    def empty(cls, compression: int = DEFAULT_COMPRESSION) -> TDigest:
        return cls(
            compression=_check_compression(compression),
            means=np.empty(0, dtype=np.float64),
            weights=np.empty(0, dtype=np.uint64),
            count=0,
        )

    @classmethod
    def from_values(
        cls,
        values: Iterable[float | None] | np.ndarray,
        compression: int = DEFAULT_COMPRESSION,
        null_count: int = 0,
    ) -> TDigest:
        """Summarise values. ``None`` entries (and ``null_count``) count as NULLs.

        NaN and ±Inf are counted and kept out of the centroids.
        """
        compression = _check_compression(compression)
        if null_count < 0:
            raise ValueError("null_count must be >= 0")
        arr = np.asarray(values if isinstance(values, np.ndarray) else list(values))
        if arr.dtype == object:
            is_null = np.array([v is None for v in arr.ravel()], dtype=bool)
            null_count += int(is_null.sum())
            arr = arr.ravel()[~is_null]
        try:
            arr = np.asarray(arr, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"values must be numbers or None: {exc}") from None
        nan_mask = np.isnan(arr)
        pos_inf = int(np.count_nonzero(arr == np.inf))
        neg_inf = int(np.count_nonzero(arr == -np.inf))
        nan_count = int(np.count_nonzero(nan_mask))
        finite = arr[np.isfinite(arr)]
        base = cls.empty(compression)
        if finite.size == 0:
            return cls(
                compression=compression,
                means=base.means,
                weights=base.weights,
                count=0,
                null_count=null_count,
                nan_count=nan_count,
                pos_inf_count=pos_inf,
                neg_inf_count=neg_inf,
            )
        ordered = np.sort(finite)
        ordered = ordered + 0.0  # -0.0 becomes +0.0: one value, one byte string
        vmin, vmax = float(ordered[0]), float(ordered[-1])
        if ordered.size <= exact_limit(compression):
            means, weights = ordered.copy(), np.ones(ordered.size, dtype=np.uint64)
            moments = exact_moments(ordered, vmin, vmax)
        else:
            means, weights = _compress(ordered, np.ones(ordered.size, dtype=np.uint64),
                                       compression)
            moments = _sorted_moments(ordered)
        return cls(
            compression=compression,
            means=means,
            weights=weights,
            count=int(ordered.size),
            min=vmin,
            max=vmax,
            mean=moments[0],
            mean_residual=moments[1],
            m2=moments[2],
            null_count=null_count,
            nan_count=nan_count,
            pos_inf_count=pos_inf,
            neg_inf_count=neg_inf,
        )

    @classmethod
    def merge(cls, digests: Sequence[TDigest], compression: int | None = None) -> TDigest:
        """Merge digests into one; the compression defaults to the largest given."""
        if not digests:
            raise ValueError("merge needs at least one digest")
        compression = _check_compression(
            compression if compression is not None else max(d.compression for d in digests)
        )
        live = [d for d in digests if d.count > 0]
        counters = {
            "null_count": sum(d.null_count for d in digests),
            "nan_count": sum(d.nan_count for d in digests),
            "pos_inf_count": sum(d.pos_inf_count for d in digests),
            "neg_inf_count": sum(d.neg_inf_count for d in digests),
        }
        if not live:
            empty = cls.empty(compression)
            return cls(compression=compression, means=empty.means, weights=empty.weights,
                       count=0, **counters)
        means = np.concatenate([d.means for d in live])
        weights = np.concatenate([d.weights for d in live])
        order = np.argsort(means, kind="stable")
        means, weights = means[order], weights[order]
        count = sum(d.count for d in live)
        vmin, vmax = min(d.min for d in live), max(d.max for d in live)
        if count > exact_limit(compression):
            means, weights = _compress(means, weights, compression)
        if means.size == count:
            moments = exact_moments(means, vmin, vmax)
        else:
            moments, so_far, low, high = (live[0].mean, live[0].mean_residual, live[0].m2), \
                live[0].count, live[0].min, live[0].max
            for d in live[1:]:
                low, high = min(low, d.min), max(high, d.max)
                moments = combine_moments(so_far, moments, d.count,
                                          (d.mean, d.mean_residual, d.m2), low, high)
                so_far += d.count
        return cls(
            compression=compression,
            means=means + 0.0,
            weights=weights.astype(np.uint64),
            count=count,
            min=vmin,
            max=vmax,
            mean=moments[0],
            mean_residual=moments[1],
            m2=moments[2],
            **counters,
        )

    # ---- exact summaries ----------------------------------------------------------

    @property
    def average(self) -> float:
        """The mean, NaN for an empty digest."""
        return self.mean if self.count else math.nan

    @property
    def sum(self) -> float:
        """mean · count (±Infinity when that overflows; 0 for an empty digest)."""
        return self.mean * float(self.count)

    @property
    def variance(self) -> float:
        """Sample variance m2 / (n - 1); NaN with fewer than two values or when m2
        overflowed."""
        if self.count < 2 or not math.isfinite(self.m2):
            return math.nan
        return self.m2 / (float(self.count) - 1.0)

    @property
    def stddev(self) -> float:
        return math.sqrt(self.variance)

    @property
    def invalid_count(self) -> int:
        return self.null_count + self.nan_count + self.pos_inf_count + self.neg_inf_count

    def summary(self) -> dict[str, float | int | None]:
        """Counts and moments as JSON-safe numbers (``None`` where undefined)."""

        def finite_or_none(value: float) -> float | None:
            return value if math.isfinite(value) else None

        empty = self.count == 0
        return {
            "count": self.count,
            "null_count": self.null_count,
            "nan_count": self.nan_count,
            "pos_inf_count": self.pos_inf_count,
            "neg_inf_count": self.neg_inf_count,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "mean": None if empty else self.mean,
            "stddev": finite_or_none(self.stddev),
        }

    # ---- CDF and quantiles --------------------------------------------------------

    def _anchors(self) -> _Anchors:
        if self._anchor_cache:
            return self._anchor_cache[0]
        anchors = _build_anchors(self)
        self._anchor_cache.append(anchors)
        return anchors

    def cdf(self, x: float | np.ndarray) -> float | np.ndarray:
        """P(X <= x) under the digest's piecewise-linear model; NaN for an empty digest."""
        xs = np.asarray(x, dtype=np.float64)
        if self.count == 0:
            result = np.full(xs.shape, np.nan)
        else:
            result = _eval_cdf(self._anchors(), xs, left=False) / self._anchors().total
        return float(result) if np.ndim(x) == 0 else result

    def cdf_left(self, x: float | np.ndarray) -> float | np.ndarray:
        """P(X < x): the left limit of :meth:`cdf`."""
        xs = np.asarray(x, dtype=np.float64)
        if self.count == 0:
            result = np.full(xs.shape, np.nan)
        else:
            result = _eval_cdf(self._anchors(), xs, left=True) / self._anchors().total
        return float(result) if np.ndim(x) == 0 else result

    def quantile(self, q: float | np.ndarray) -> float | np.ndarray:
        """Inverse of :meth:`cdf`; ``q`` must lie in [0, 1]."""
        qs = np.asarray(q, dtype=np.float64)
        if np.any(np.isnan(qs)) or np.any((qs < 0.0) | (qs > 1.0)):
            raise ValueError("quantile levels must lie in [0, 1]")
        if self.count == 0:
            result = np.full(qs.shape, np.nan)
        else:
            result = _eval_quantile(self, self._anchors(), qs)
        return float(result) if np.ndim(q) == 0 else result

    def anchor_points(self) -> np.ndarray:
        """x positions where the CDF changes slope or jumps."""
        return self._anchors().x if self.count else np.empty(0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TDigest):
            return NotImplemented
        scalars = ("compression", "count", "null_count", "nan_count", "pos_inf_count",
                   "neg_inf_count")
        floats = ("min", "max", "mean", "mean_residual", "m2")
        return (
            all(getattr(self, s) == getattr(other, s) for s in scalars)
            and all(
                getattr(self, f) == getattr(other, f)
                or (math.isnan(getattr(self, f)) and math.isnan(getattr(other, f)))
                for f in floats
            )
            and np.array_equal(self.means, other.means)
            and np.array_equal(self.weights, other.weights)
        )

    __hash__ = None  # type: ignore[assignment]


# ---- building ---------------------------------------------------------------------


def _compress(means: np.ndarray, weights: np.ndarray,
              compression: int) -> tuple[np.ndarray, np.ndarray]:
    """One greedy pass over sorted centroids (or unit-weight points), as td_merge_points
    and td_merge_centroids do it for one input.

    - The centroid that starts after weight W grows while it stays within the k2 bound
      (k grows by at most 1) and within W + MASS_CAP·n/δ.
    - A run of equal means that readers take as a point mass (two or more items, or
      points) and that holds at least 2 and an eighth of the local centroid size becomes
      two centroids of exactly that value: discrete and rounded columns keep exact jumps.
    """
    m = means.size
    total = float(np.sum(weights, dtype=np.float64))
    cum = np.cumsum(weights, dtype=np.float64)
    before_item = cum - weights
    z = _normaliser(total, compression)
    odds_step = math.exp(z / compression)
    cap_w = total * (MASS_CAP / compression)
    # Runs of equal means and the heavy ones among them.
    changes = np.flatnonzero(means[1:] != means[:-1]) + 1
    run_starts = np.concatenate(([0], changes))
    run_ends = np.append(run_starts[1:], m)
    run_w = cum[run_ends - 1] - before_item[run_starts]
    run_q = (before_item[run_starts] + run_w / 2.0) / total
    local = np.minimum(total * run_q * (1.0 - run_q) * z / compression, cap_w)
    heavy = ((run_ends - run_starts) >= 2) & (run_w >= 2) & (run_w * 8.0 >= local)
    heavy_starts, heavy_ends = run_starts[heavy], run_ends[heavy]
    starts: list[int] = []
    pairs: list[tuple[int, int]] = []  # (index into starts, run end) of point masses
    pos, next_heavy = 0, 0
    while pos < m:
        while next_heavy < heavy_starts.size and heavy_starts[next_heavy] < pos:
            next_heavy += 1
        if next_heavy < heavy_starts.size and heavy_starts[next_heavy] == pos:
            pairs.append((len(starts), int(heavy_ends[next_heavy])))
            starts.append(pos)
            pos = int(heavy_ends[next_heavy])
            next_heavy += 1
            continue
        before = float(before_item[pos])
        if before <= 0.0:
            limit = 0.0
        else:
            odds = before / (total - before) * odds_step
            limit = min(total * (odds / (1.0 + odds)), before + cap_w)
        end = max(pos + 1, int(np.searchsorted(cum, limit, side="right")))
        if next_heavy < heavy_starts.size:
            end = min(end, int(heavy_starts[next_heavy]))
        starts.append(pos)
        pos = end
    start_idx = np.asarray(starts, dtype=np.int64)
    end_idx = np.append(start_idx[1:], m)
    group_w = np.add.reduceat(weights.astype(np.float64), start_idx)
    first = means[start_idx]
    with np.errstate(over="ignore", invalid="ignore"):
        shifted = np.add.reduceat((means - np.repeat(first, end_idx - start_idx))
                                  * weights.astype(np.float64), start_idx)
        group_means = first + shifted / group_w
    bad = ~np.isfinite(group_means)
    if np.any(bad):  # spreads past ±1e308: m1·(w1/W) + … never leaves the range
        share = weights.astype(np.float64) / np.repeat(group_w, end_idx - start_idx)
        group_means[bad] = np.add.reduceat(means * share, start_idx)[bad]
    group_means = np.clip(group_means, first, means[end_idx - 1])
    out_means: list[float] = []
    out_weights: list[int] = []
    pair_at = dict(pairs)
    int_cum = np.concatenate(([0], np.cumsum(weights, dtype=np.uint64)))
    for k, (a, b) in enumerate(zip(start_idx.tolist(), end_idx.tolist(), strict=True)):
        w = int(int_cum[b]) - int(int_cum[a])
        if k in pair_at:
            out_means += [float(means[a]), float(means[a])]
            out_weights += [w // 2, w - w // 2]
        else:
            out_means.append(float(group_means[k]))
            out_weights.append(w)
    return (np.asarray(out_means, dtype=np.float64) + 0.0,
            np.asarray(out_weights, dtype=np.uint64))


# ---- reading ----------------------------------------------------------------------


def _build_anchors(digest: TDigest) -> _Anchors:
    means = digest.means
    weights = digest.weights.astype(np.float64)
    starts = np.flatnonzero(np.concatenate(([True], means[1:] != means[:-1])))
    run_lengths = np.diff(np.append(starts, means.size))
    x = means[starts]
    w = np.add.reduceat(weights, starts)
    atom = (run_lengths >= 2) | (w == 1.0) | (x == digest.min) | (x == digest.max)
    before = np.concatenate(([0.0], np.cumsum(w)[:-1]))
    f_low = np.where(atom, before, before + w / 2.0)
    f_high = np.where(atom, before + w, before + w / 2.0)
    total = float(np.sum(w))
    if not atom[0]:
        x = np.concatenate(([digest.min], x))
        f_low = np.concatenate(([0.0], f_low))
        f_high = np.concatenate(([0.0], f_high))
    if not atom[-1]:
        x = np.append(x, digest.max)
        f_low = np.append(f_low, total)
        f_high = np.append(f_high, total)
    return _Anchors(x=x, f_low=f_low, f_high=f_high, total=total)


def _fraction(x: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """(x - xa) / (xb - xa), halving everything when the span overflows."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        span = xb - xa
        direct = (x - xa) / span
        halved = (x / 2.0 - xa / 2.0) / (xb / 2.0 - xa / 2.0)
    return np.where(np.isfinite(span), direct, halved)


def _eval_cdf(anchors: _Anchors, xs: np.ndarray, *, left: bool) -> np.ndarray:
    ax = anchors.x
    idx = np.searchsorted(ax, xs, side="right") - 1
    safe = np.clip(idx, 0, ax.size - 1)
    nxt = np.clip(idx + 1, 0, ax.size - 1)
    at_anchor = ax[safe] == xs
    frac = _fraction(xs, ax[safe], ax[nxt])
    fa = anchors.f_high[safe]
    fb = anchors.f_low[nxt]
    with np.errstate(invalid="ignore"):  # the unused branch may hold inf * 0
        between = fa + frac * (fb - fa)
    value = np.where(at_anchor, anchors.f_low[safe] if left else fa, between)
    value = np.where(idx >= ax.size - 1, np.where(at_anchor & left, anchors.f_low[safe], fa),
                     value)
    value = np.where(idx < 0, 0.0, value)
    return np.where(np.isnan(xs), np.nan, value)


def _eval_quantile(digest: TDigest, anchors: _Anchors, qs: np.ndarray) -> np.ndarray:
    t = qs * anchors.total
    steps = np.empty(anchors.x.size * 2)
    steps[0::2] = anchors.f_low
    steps[1::2] = anchors.f_high
    j = np.searchsorted(steps, t, side="left")
    j = np.clip(j, 0, steps.size - 1)
    i = j // 2
    on_anchor = (j % 2 == 1) | (steps[j] == t)
    prev = np.clip(i - 1, 0, anchors.x.size - 1)
    xa, xb = anchors.x[prev], anchors.x[i]
    fa, fb = anchors.f_high[prev], anchors.f_low[i]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        frac = np.where(fb > fa, (t - fa) / (fb - fa), 0.0)
        span = xb - xa
        direct = xa + frac * span
        halved = 2.0 * (xa / 2.0 + frac * (xb / 2.0 - xa / 2.0))
    between = np.clip(np.where(np.isfinite(span), direct, halved), xa, xb)
    result = np.where(on_anchor, anchors.x[i], between)
    result = np.where(qs == 0.0, digest.min, result)
    return np.where(qs == 1.0, digest.max, result)
