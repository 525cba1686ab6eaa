"""A merging t-digest (Dunning & Ertl 2019) with the k2 scale function, built with numpy.

Exact count, min, max, sum and sum of squares travel with the centroids; NULL, NaN and
infinite inputs are only counted. CDF and quantiles follow docs/wire-format.md section 2,
the same rules the PostgreSQL extension implements in C.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

# The extension's compression defaults, #define'd in its headers (pg_extension/src/*.h;
# tests/core/test_shared_constants.py keeps the two sides equal).
AGGREGATE_DEFAULT_COMPRESSION = 100  # tdigest_agg(value) without a compression argument
ANALYSIS_DEFAULT_COMPRESSION = 200  # pg_stat_guard.compression: perform_drift_analysis
# A digest built here compares like the ones an analysis sends.
DEFAULT_COMPRESSION = ANALYSIS_DEFAULT_COMPRESSION
MIN_COMPRESSION = 10
MAX_COMPRESSION = 10000
MAX_CENTROIDS = 65536
EXACT_FACTOR = 50  # windows of up to 50·δ values keep every value as a centroid


def _normaliser(count: float, compression: float) -> float:
    """Z(n) of the normalised k2 scale: 4 ln(n/δ) + 24, with n/δ floored at 1."""
    return 4.0 * math.log(max(count / compression, 1.0)) + 24.0


def _k2(q: np.ndarray, compression: float, count: float) -> np.ndarray:
    """k2 scale for q, clamped half a point inside (0, 1) so the ends stay finite."""
    eps = 0.5 / count
    q = np.clip(q, eps, 1.0 - eps)
    return compression / _normaliser(count, compression) * np.log(q / (1.0 - q))


def _k2_scalar(q: float, compression: float, count: float, norm: float) -> float:
    eps = 0.5 / count
    q = min(max(q, eps), 1.0 - eps)
    return compression / norm * math.log(q / (1.0 - q))


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
    bytes with :func:`stat_guard.wire.decode_digest`.
    """

    compression: int
    means: np.ndarray
    weights: np.ndarray
    count: int
    min: float = 0.0
    max: float = 0.0
    sum: float = 0.0
    sum_sq: float = 0.0
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
        means, weights = _compress_sorted(ordered, compression)
        with np.errstate(over="ignore", invalid="ignore"):
            total = _summed(ordered, means, weights)
            total_sq = float(np.sum(ordered * ordered))
        return cls(
            compression=compression,
            means=means,
            weights=weights,
            count=int(ordered.size),
            min=float(ordered[0]),
            max=float(ordered[-1]),
            sum=total,
            sum_sq=total_sq,
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
        merged_means, merged_weights = _merge_centroids(means[order], weights[order], compression)
        with np.errstate(over="ignore", invalid="ignore"):
            total = _summed(np.array([d.sum for d in live]), merged_means, merged_weights)
            total_sq = float(np.sum([d.sum_sq for d in live]))
        return cls(
            compression=compression,
            means=merged_means,
            weights=merged_weights,
            count=sum(d.count for d in live),
            min=min(d.min for d in live),
            max=max(d.max for d in live),
            sum=total,
            sum_sq=total_sq,
            **counters,
        )

    # ---- exact summaries ----------------------------------------------------------

    @staticmethod
    def _centroid_mean(means: np.ndarray, weights: np.ndarray) -> float:
        """The weighted mean of the centroids; its terms are each at most the largest
        mean times a weight share, so no partial sum overflows."""
        return float(np.sum(means * (weights / np.sum(weights))))

    @property
    def mean(self) -> float:
        if self.count == 0:
            return math.nan
        return min(max(self.sum / self.count, self.min), self.max) if math.isfinite(self.sum) \
            else self._centroid_mean(self.means, self.weights)

    @property
    def variance(self) -> float:
        """Sample variance (n - 1) from sum and sum of squares; NaN when undefined."""
        if self.count < 2 or not (math.isfinite(self.sum) and math.isfinite(self.sum_sq)):
            return math.nan
        n = float(self.count)
        return max((self.sum_sq - self.sum * (self.sum / n)) / (n - 1.0), 0.0)

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
            "mean": None if empty else finite_or_none(self.mean),
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
        floats = ("min", "max", "sum", "sum_sq")
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



def _summed(values: np.ndarray, means: np.ndarray, weights: np.ndarray) -> float:
    """The sum of finite values (or of digests' sums), never NaN.

    A sum may overflow to ±Infinity (the wire format allows it); a pairwise sum can meet
    +Infinity and -Infinity in its partial sums and give NaN, which no reader accepts.
    Then, as the extension's merge does, the centroids' mean times the count stands in:
    finite, or ±Infinity where that overflows too.
    """
    total = float(np.sum(values))
    if math.isnan(total):
        count = float(np.sum(weights))
        total = TDigest._centroid_mean(means, weights) * count
    return total

def _compress_sorted(ordered: np.ndarray, compression: int) -> tuple[np.ndarray, np.ndarray]:
    """Group sorted unit-weight values into centroids.

    - Up to ``EXACT_FACTOR·δ`` values, every value is its own centroid: small windows
      stay exact.
    - Otherwise values are grouped by the k2 bin of their mid rank (every point of a
      centroid has its mid-rank k value in [j, j + 1); the tails come out as single
      points because one point spans more than one k unit there).
    - A heavy run of ties (at least 2 values and an eighth of the local centroid size)
      becomes two centroids of exactly that value, which readers treat as a point mass;
      so discrete and heavily rounded columns keep exact CDF jumps.
    """
    n = ordered.size
    if n <= EXACT_FACTOR * compression:
        return ordered.copy(), np.ones(n, dtype=np.uint64)
    # Where k(mid rank) crosses each integer j: the first i with k((i + ½)/n) >= j.
    scale = compression / _normaliser(float(n), compression)
    k_low = math.floor(scale * math.log((0.5 / n) / (1.0 - 0.5 / n)))
    k_high = math.floor(scale * math.log((1.0 - 0.5 / n) / (0.5 / n)))
    crossings = np.ceil(n / (1.0 + np.exp(-np.arange(k_low + 1, k_high + 1) / scale)) - 0.5)
    k_bins = np.zeros(n, dtype=np.int64)
    np.add.at(k_bins, np.clip(crossings.astype(np.int64), 0, n - 1)[crossings < n], 1)
    k_bins = np.cumsum(k_bins)
    changes = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    run_starts = np.concatenate(([0], changes))
    run_lengths = np.diff(np.append(run_starts, n))
    run_q = (run_starts + run_lengths / 2.0) / n
    local_size = n * run_q * (1.0 - run_q) * _normaliser(float(n), compression) / compression
    heavy_runs = (run_lengths >= 2) & (run_lengths >= local_size / 8.0)
    run_id = np.repeat(np.arange(run_starts.size), run_lengths)
    heavy = heavy_runs[run_id]
    boundary = np.zeros(n, dtype=bool)
    boundary[0] = True
    run_change = run_id[1:] != run_id[:-1]
    either_heavy = heavy[1:] | heavy[:-1]
    plain = ~either_heavy & (k_bins[1:] != k_bins[:-1])
    boundary[1:] = (either_heavy & run_change) | plain
    heavy_starts = run_starts[heavy_runs]
    boundary[heavy_starts + run_lengths[heavy_runs] // 2] = True
    starts = np.flatnonzero(boundary)
    weights = np.diff(np.append(starts, n)).astype(np.uint64)
    magnitude = float(max(abs(ordered[0]), abs(ordered[-1])))
    if magnitude > 1e300:  # keep partial sums of huge values finite
        means = np.add.reduceat(ordered / magnitude, starts) / weights * magnitude
    else:
        means = np.add.reduceat(ordered, starts) / weights
    # A mean lies within its group's values; clipping also keeps runs of ties exact.
    ends = np.append(starts[1:], n) - 1
    means = np.clip(means, ordered[starts], ordered[ends]) + 0.0
    if means.size > MAX_CENTROIDS:
        return _merge_centroids(means, weights, compression)
    return means, weights


def _merge_centroids(
    means: np.ndarray, weights: np.ndarray, compression: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merge of sorted centroids: absorb a neighbour while the k2 span stays <= 1."""
    total = float(np.sum(weights, dtype=np.float64))
    if total <= EXACT_FACTOR * compression:
        return _collapse_ties(means, weights)
    norm = _normaliser(total, compression)
    out_means: list[float] = []
    out_weights: list[int] = []
    cur_mean = float(means[0])
    cur_weight = int(weights[0])
    before = 0.0
    k_left = _k2_scalar(before / total, compression, total, norm)
    for m, w in zip(means[1:].tolist(), weights[1:].tolist(), strict=True):
        k_right = _k2_scalar((before + cur_weight + w) / total, compression, total, norm)
        if k_right - k_left <= 1.0 or (m == cur_mean and out_means and out_means[-1] == m):
            cur_mean = _combine_mean(cur_mean, cur_weight, m, w)
            cur_weight += w
        else:
            out_means.append(cur_mean)
            out_weights.append(cur_weight)
            before += cur_weight
            k_left = _k2_scalar(before / total, compression, total, norm)
            cur_mean, cur_weight = m, w
    out_means.append(cur_mean)
    out_weights.append(cur_weight)
    return np.asarray(out_means, dtype=np.float64) + 0.0, np.asarray(out_weights, dtype=np.uint64)


def _collapse_ties(means: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return means.astype(np.float64) + 0.0, weights.astype(np.uint64)


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
