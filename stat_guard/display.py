"""Display summaries: what a picture of one result needs, small and validated.

Every result (a scheduled run or an on-demand analysis) carries, per feature, a
:class:`FeatureDisplay`: baseline and current proportions on at most
:data:`MAX_BINS` even display bins (numeric) or the top categories with their shares
(categorical), a few quantiles, missing rates, the statistics and the verdict's reasons.
Both producers build them with the functions here; the pages and the report file read
them back with :func:`decode_run`, which validates every field (the bytes come from Redis,
so nothing in them is trusted to be well formed).

Bounds: one feature's JSON is at most :data:`MAX_FEATURE_BYTES` bytes (categories are
dropped from the rarest end to fit), a run at most :data:`MAX_FEATURES` features. The
Stream record does not carry them: a run's summaries are stored gzip-compressed under their
own Redis key and the record names that key (docs/fleet.md, "The Stream record").

Plain Python on purpose: the scheduled engine imports this module and never numpy.
"""

from __future__ import annotations

import bisect
import gzip
import io
import itertools
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stat_guard.result_record import figure

VERSION = 1
MAX_BINS = 40  # display bins of a numeric feature
RANGE_LEVELS = (0.001, 0.999)  # the display range: these quantiles of both windows
QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20  # categories shown by name (largest share in either window) ...
MAX_UNSEEN = 10  # ... plus at most this many new ones; the rest pooled into "other"
MAX_NAME_CHARS = 100  # a feature or category name is cut to this
MAX_REASONS = 8
MAX_REASON_CHARS = 200
MAX_ERROR_CHARS = 500
# Shares and statistics keep 6 significant digits; values on the feature's axis (edges,
# quantiles) keep 10, so a narrow range far from zero (epoch seconds, ids) stays drawable.
POSITION_DIGITS = 10
MAX_FEATURE_BYTES = 8192  # one feature's summary as compact JSON
MAX_FEATURES = 2048  # features in one run's summaries
MAX_RUN_BYTES = MAX_FEATURES * MAX_FEATURE_BYTES + 65_536  # decompressed, whole run
NUMERIC, CATEGORICAL = "numeric", "categorical"
# The summary of a scheduled run's predictions (not a feature) carries this name.
PREDICTION_NAME = "__prediction__"
STATISTICS = ("psi", "ks_statistic", "ks_pvalue", "kl", "js", "wasserstein", "chi2",
              "chi2_pvalue")
VERDICTS = ("drift", "warning", "error", "insufficient_data", "ok")  # most severe first


class DisplayError(ValueError):
    """A display summary that is malformed or out of bounds."""


@dataclass(frozen=True)
class CategoryShare:
    name: str
    baseline: float  # share of the window's non-missing values
    current: float
    unseen: bool = False  # absent from the baseline

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "baseline": _round(self.baseline),
                "current": _round(self.current), "unseen": self.unseen}


@dataclass(frozen=True)
class FeatureDisplay:
    """One feature of one result, as the pages draw it.

    Numeric: ``edges`` (``len(baseline) + 1`` increasing numbers) and the share of each
    window's values in each bin; the first and last bins also hold the values below and
    above the display range (``RANGE_LEVELS``). ``quantiles`` maps ``baseline``/``current``
    to the values at ``QUANTILE_LEVELS``. Categorical: ``categories`` and the pooled rest in
    ``other_baseline``/``other_current`` (``other_count`` distinct categories).
    """

    name: str
    kind: str  # NUMERIC or CATEGORICAL
    verdict: str
    reasons: tuple[str, ...] = ()
    error: str | None = None
    statistics: Mapping[str, float | None] = field(default_factory=dict)
    n_baseline: int = 0
    n_current: int = 0
    missing_baseline: float | None = None  # share of NULL/NaN/Inf among all values
    missing_current: float | None = None
    edges: tuple[float, ...] = ()
    baseline: tuple[float, ...] = ()
    current: tuple[float, ...] = ()
    quantiles: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    categories: tuple[CategoryShare, ...] = ()
    other_baseline: float = 0.0
    other_current: float = 0.0
    other_count: int = 0

    @property
    def severity(self) -> tuple[int, float]:
        """Sort key, most severe first: verdict rank, then the larger PSI."""
        psi = self.statistics.get("psi")
        return (verdict_rank(self.verdict), -(psi if psi is not None else -1.0))

    def to_json(self) -> dict[str, Any]:
        return self.to_json_sized()[0]

    def to_json_sized(self) -> tuple[dict[str, Any], int]:
        """:meth:`to_json` and its size in bytes as compact UTF-8 JSON (at most
        MAX_FEATURE_BYTES)."""
        document: dict[str, Any] = {
            "name": self.name[:MAX_NAME_CHARS], "kind": self.kind, "verdict": self.verdict,
            "reasons": [r[:MAX_REASON_CHARS] for r in self.reasons[:MAX_REASONS]],
            "error": self.error[:MAX_ERROR_CHARS] if self.error else None,
            "statistics": {k: _round(self.statistics.get(k)) for k in STATISTICS},
            "n_baseline": self.n_baseline, "n_current": self.n_current,
            "missing_baseline": _round(self.missing_baseline),
            "missing_current": _round(self.missing_current)}
        if self.kind == NUMERIC:
            document.update(edges=_round_all(self.edges, POSITION_DIGITS),
                            baseline=_round_all(self.baseline),
                            current=_round_all(self.current),
                            quantiles={side: _round_all(values, POSITION_DIGITS)
                                       for side, values in self.quantiles.items()})
        else:
            document.update(categories=[c.to_json() for c in self.categories],
                            other={"baseline": _round(self.other_baseline),
                                   "current": _round(self.other_current),
                                   "count": self.other_count})
        # Within the bound: long category names and many categories shrink first.
        size = len(_compact(document).encode())
        while size > MAX_FEATURE_BYTES and document.get("categories"):
            document["categories"].pop()
            size = len(_compact(document).encode())
        if size > MAX_FEATURE_BYTES:
            document["reasons"] = document["reasons"][:1]
            size = len(_compact(document).encode())
        return document, size

    @classmethod
    def from_json(cls, document: Any) -> FeatureDisplay:
        """Validate and read one feature's summary; DisplayError when anything is off."""
        doc = _mapping(document, "feature")
        kind = _choice(doc.get("kind"), (NUMERIC, CATEGORICAL), "kind")
        common = dict(
            name=_text(doc.get("name"), MAX_NAME_CHARS, "name"), kind=kind,
            verdict=_choice(doc.get("verdict"), VERDICTS, "verdict"),
            reasons=tuple(_text(r, MAX_REASON_CHARS, "reason")
                          for r in _list(doc.get("reasons", []), MAX_REASONS, "reasons")),
            error=None if doc.get("error") is None
            else _text(doc.get("error"), MAX_ERROR_CHARS, "error"),
            statistics={k: _optional_number(_mapping(doc.get("statistics", {}),
                                                     "statistics").get(k), k)
                        for k in STATISTICS},
            n_baseline=_count(doc.get("n_baseline", 0), "n_baseline"),
            n_current=_count(doc.get("n_current", 0), "n_current"),
            missing_baseline=_optional_share(doc.get("missing_baseline"), "missing_baseline"),
            missing_current=_optional_share(doc.get("missing_current"), "missing_current"))
        if kind == NUMERIC:
            edges = tuple(_number(e, "edge") for e in _list(doc.get("edges", []),
                                                             MAX_BINS + 1, "edges"))
            baseline = tuple(_share(p, "bin") for p in _list(doc.get("baseline", []),
                                                             MAX_BINS, "baseline"))
            current = tuple(_share(p, "bin") for p in _list(doc.get("current", []),
                                                            MAX_BINS, "current"))
            if baseline or current or edges:
                if not (len(baseline) == len(current) == len(edges) - 1 >= 1):
                    raise DisplayError("edges and bins do not match")
                if any(b < a for a, b in itertools.pairwise(edges)):
                    raise DisplayError("edges are not increasing")
            quantiles = {}
            for side, values in _mapping(doc.get("quantiles", {}), "quantiles").items():
                side = _choice(side, ("baseline", "current"), "quantile side")
                numbers = tuple(_number(v, "quantile") for v in
                                _list(values, len(QUANTILE_LEVELS), "quantiles"))
                if len(numbers) != len(QUANTILE_LEVELS):
                    raise DisplayError("quantiles do not match QUANTILE_LEVELS")
                quantiles[side] = numbers
            return cls(**common, edges=edges, baseline=baseline, current=current,
                       quantiles=quantiles)
        categories = []
        for item in _list(doc.get("categories", []), TOP_CATEGORIES + MAX_UNSEEN,
                          "categories"):
            item = _mapping(item, "category")
            categories.append(CategoryShare(
                name=_text(item.get("name"), MAX_NAME_CHARS, "category name"),
                baseline=_share(item.get("baseline"), "category share"),
                current=_share(item.get("current"), "category share"),
                unseen=bool(item.get("unseen", False))))
        other = _mapping(doc.get("other", {}), "other")
        return cls(**common, categories=tuple(categories),
                   other_baseline=_share(other.get("baseline", 0.0), "other share"),
                   other_current=_share(other.get("current", 0.0), "other share"),
                   other_count=_count(other.get("count", 0), "other count"))


@dataclass(frozen=True)
class RunDisplay:
    """The summaries of one result, most severe feature first."""

    run_id: str
    model: str
    source: str  # scheduled or ondemand
    verdict: str
    drift_score: float | None
    finished_at: str  # ISO 8601, UTC
    features: tuple[FeatureDisplay, ...]
    trigger: str = ""  # scheduled, manual or ondemand

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "run_id": self.run_id, "model": self.model,
                "source": self.source, "trigger": self.trigger, "verdict": self.verdict,
                "drift_score": _round(self.drift_score), "finished_at": self.finished_at,
                "features": [f.to_json() for f in
                             sorted(self.features, key=lambda f: f.severity)[:MAX_FEATURES]]}

    @classmethod
    def from_json(cls, document: Any) -> RunDisplay:
        doc = _mapping(document, "run")
        if doc.get("version") != VERSION:
            raise DisplayError(f"unknown display version {doc.get('version')!r}")
        return cls(run_id=_text(doc.get("run_id"), 1024, "run_id"),
                   model=_text(doc.get("model"), 512, "model"),
                   source=_choice(doc.get("source"), ("scheduled", "ondemand"), "source"),
                   trigger=_text(doc.get("trigger", ""), 32, "trigger"),
                   verdict=_choice(doc.get("verdict"), VERDICTS, "verdict"),
                   drift_score=_optional_number(doc.get("drift_score"), "drift_score"),
                   finished_at=_text(doc.get("finished_at", ""), 64, "finished_at"),
                   features=tuple(FeatureDisplay.from_json(f) for f in
                                  _list(doc.get("features", []), MAX_FEATURES, "features")))


def encode_run(run: RunDisplay) -> bytes:
    """Compact JSON, gzip-compressed: what is stored in Redis."""
    return gzip.compress(_compact(run.to_json()).encode(), compresslevel=6, mtime=0)


def decode_run(data: bytes) -> RunDisplay:
    """Read what :func:`encode_run` wrote; DisplayError on anything malformed or too big."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DisplayError("display summary is not bytes")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            raw = stream.read(MAX_RUN_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DisplayError(f"not a compressed display summary: {exc}") from None
    if len(raw) > MAX_RUN_BYTES:
        raise DisplayError(f"display summary larger than {MAX_RUN_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise DisplayError(f"display summary is not JSON: {exc}") from None
    return RunDisplay.from_json(document)


# --- builders --------------------------------------------------------------------------

Cdf = Callable[[float], float]  # share of the window's values <= x
Quantile = Callable[[float], float]  # the value at a level in [0, 1]


def numeric_display(name: str, baseline_cdf: Cdf | None, current_cdf: Cdf | None,
                    baseline_quantile: Quantile | None, current_quantile: Quantile | None,
                    **common: Any) -> FeatureDisplay:
    """Even display bins over both windows' RANGE_LEVELS quantiles; the end bins also hold
    the tails. A window without values gives None for its CDF and quantile function: it
    places no edge, its shares are all 0 and it has no quantiles. ``common`` takes the
    other FeatureDisplay fields (verdict, statistics …)."""

    def at(quantile: Quantile | None, levels: Sequence[float]) -> list[float]:
        return [] if quantile is None else [quantile(q) for q in levels]

    edges = display_edges(at(baseline_quantile, RANGE_LEVELS),
                          at(current_quantile, RANGE_LEVELS))
    if not edges:
        return FeatureDisplay(name=name, kind=NUMERIC, **common)
    inner = edges[1:-1]
    return numeric_display_at(
        name, edges, None if baseline_cdf is None else [baseline_cdf(e) for e in inner],
        None if current_cdf is None else [current_cdf(e) for e in inner],
        at(baseline_quantile, QUANTILE_LEVELS), at(current_quantile, QUANTILE_LEVELS),
        **common)


def display_edges(baseline_range: Sequence[float], current_range: Sequence[float]
                  ) -> list[float]:
    """The display bin edges from each window's values at RANGE_LEVELS: MAX_BINS even bins
    between the lowest and the highest finite of them (two equal edges when they meet),
    ``[]`` when none is finite."""
    finite = [float(v) for v in (*baseline_range, *current_range) if math.isfinite(v)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    if high <= low:
        return [low, low]
    if math.isfinite(high - low):
        step = (high - low) / MAX_BINS
        edges = [low + i * step for i in range(MAX_BINS)] + [high]
    else:  # a span beyond the largest float (-1e308 to 1e308): interpolate instead
        edges = [low * (1 - i / MAX_BINS) + high * (i / MAX_BINS)
                 for i in range(MAX_BINS)] + [high]
    for i in range(1, len(edges)):  # increasing whatever the rounding did
        edges[i] = min(max(edges[i], edges[i - 1]), high)
    return edges


def numeric_display_at(name: str, edges: Sequence[float],
                       baseline_cdf_inner: Sequence[float] | None,
                       current_cdf_inner: Sequence[float] | None,
                       baseline_quantiles: Sequence[float], current_quantiles: Sequence[float],
                       **common: Any) -> FeatureDisplay:
    """:func:`numeric_display` from values computed elsewhere (e.g. vectorised): ``edges``
    from :func:`display_edges`, each window's CDF at ``edges[1:-1]`` (None for a window
    without values: its shares are all 0) and its values at QUANTILE_LEVELS (left out
    unless all finite)."""

    def shares(inner_values: Sequence[float] | None) -> tuple[float, ...]:
        if inner_values is None:
            return (0.0,) * (len(edges) - 1)
        inner = [min(1.0, max(0.0, float(v))) if v == v else 0.0 for v in inner_values]
        cumulative = [0.0, *inner, 1.0]
        for i in range(1, len(cumulative)):  # a CDF never decreases
            if cumulative[i] < cumulative[i - 1]:
                cumulative[i] = cumulative[i - 1]
        return tuple(b - a for a, b in itertools.pairwise(cumulative))

    quantiles = {"baseline": tuple(float(v) for v in baseline_quantiles),
                 "current": tuple(float(v) for v in current_quantiles)}
    return FeatureDisplay(name=name, kind=NUMERIC, edges=tuple(float(e) for e in edges),
                          baseline=shares(baseline_cdf_inner),
                          current=shares(current_cdf_inner),
                          quantiles={k: v for k, v in quantiles.items()
                                     if len(v) == len(QUANTILE_LEVELS)
                                     and all(math.isfinite(x) for x in v)},
                          **common)


def binned_cdf(points: Sequence[float], counts: Sequence[float]
               ) -> tuple[Cdf, Quantile]:
    """CDF and quantile function of counts on the intervals between ``points``
    (``len(points) == len(counts) + 1``, non-decreasing), each interval's mass spread
    evenly over it: what the scheduled engine's fine bins give."""
    total = float(sum(counts))
    cumulative = [0.0]
    for c in counts:
        cumulative.append(cumulative[-1] + c)

    def cdf(x: float) -> float:
        if total <= 0 or x < points[0]:
            return 0.0
        if x >= points[-1]:
            return 1.0
        i = bisect.bisect_right(points, x) - 1
        width = points[i + 1] - points[i]
        inside = counts[i] * ((x - points[i]) / width if width > 0 else 1.0)
        return (cumulative[i] + inside) / total

    def quantile(level: float) -> float:
        if total <= 0:
            return math.nan
        target = level * total
        i = min(max(bisect.bisect_left(cumulative, target) - 1, 0), len(counts) - 1)
        mass = counts[i]
        fraction = (target - cumulative[i]) / mass if mass > 0 else 0.0
        return points[i] + min(1.0, max(0.0, fraction)) * (points[i + 1] - points[i])

    return cdf, quantile


def categorical_display(name: str, baseline_counts: Mapping[str, float],
                        current_counts: Mapping[str, float], **common: Any) -> FeatureDisplay:
    """The TOP_CATEGORIES categories with the largest share in either window, then up to
    MAX_UNSEEN categories absent from the baseline; the rest pooled into ``other``."""
    n_b = float(sum(baseline_counts.values()))
    n_c = float(sum(current_counts.values()))

    def share(count: float, total: float) -> float:
        return count / total if total > 0 else 0.0

    names = set(baseline_counts) | set(current_counts)
    by_size = sorted(names, key=lambda c: (-max(share(baseline_counts.get(c, 0), n_b),
                                                 share(current_counts.get(c, 0), n_c)), c))
    shown = by_size[:TOP_CATEGORIES]
    unseen = [c for c in by_size[TOP_CATEGORIES:] if not baseline_counts.get(c)]
    shown += unseen[:MAX_UNSEEN]
    rest = [c for c in names if c not in set(shown)]
    categories = tuple(CategoryShare(
        name=c[:MAX_NAME_CHARS], baseline=share(baseline_counts.get(c, 0), n_b),
        current=share(current_counts.get(c, 0), n_c), unseen=not baseline_counts.get(c))
        for c in shown)
    return FeatureDisplay(
        name=name, kind=CATEGORICAL, categories=categories,
        other_baseline=share(sum(baseline_counts.get(c, 0) for c in rest), n_b),
        other_current=share(sum(current_counts.get(c, 0) for c in rest), n_c),
        other_count=len(rest), **common)


def missing_share(missing: int, present: int) -> float | None:
    total = missing + present
    return missing / total if total else None


# --- validation helpers ----------------------------------------------------------------

def verdict_rank(verdict: str) -> int:
    """A verdict's place in ``VERDICTS``, the most severe first; an unknown one last."""
    return VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)


def _round(value: Any) -> float | None:
    """The record's rounding (6 significant digits, None when undefined), for any value."""
    return figure(value) if isinstance(value, (int, float)) else None


def _round_all(values: Sequence[Any], digits: int = 6) -> list[float | None]:
    """``[_round(v) for v in values]`` (to ``digits`` significant digits), about twice as
    fast on plain numbers (a service answer rounds some 35,000 of them for 256 columns)."""
    spec = f".{digits}g"
    try:  # v - v == 0 exactly for finite numbers (NaN and ±Inf give NaN)
        return [float(format(v, spec)) if v - v == 0 and not isinstance(v, bool) else None
                for v in values]
    except (TypeError, ValueError):
        return [_round(v) for v in values]


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DisplayError(f"{what} is not an object")
    return value


def _list(value: Any, limit: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DisplayError(f"{what} is not a list")
    if len(value) > limit:
        raise DisplayError(f"{what}: more than {limit} items")
    return value


def _text(value: Any, limit: int, what: str) -> str:
    if not isinstance(value, str):
        raise DisplayError(f"{what} is not text")
    if len(value) > limit:
        raise DisplayError(f"{what} longer than {limit} characters")
    return value


def _choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise DisplayError(f"{what} {str(value)[:40]!r} is not one of {', '.join(allowed)}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise DisplayError(f"{what} is not a finite number")
    return float(value)


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _share(value: Any, what: str) -> float:
    number = _number(value, what)
    if not -1e-6 <= number <= 1 + 1e-6:
        raise DisplayError(f"{what} {number} is not a share in [0, 1]")
    return min(1.0, max(0.0, number))


def _optional_share(value: Any, what: str) -> float | None:
    return None if value is None else _share(value, what)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DisplayError(f"{what} is not a count")
    return value
