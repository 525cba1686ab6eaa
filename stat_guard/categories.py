"""Category counts of categorical features, and how both drift paths pool them.

The scheduled engine counts every category of a window in DuckDB; the on-demand path gets
bounded count tables from PostgreSQL (:class:`CategoryCounts`, the envelope's ``PSGC``
entries, docs/wire-format.md §3.2): a window's most frequent categories exactly, the rest
as one pooled count. Both score over :func:`pool_categories`, with the statistics of
``stat_guard.counts.categorical_drift`` and the rules of ``stat_guard.verdict``.

Plain Python, no numpy: the DuckDB engine imports this module.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

# Named categories per column and window: the extension's pg_stat_guard.max_categories
# default (PSG_DEFAULT_MAX_CATEGORIES) and the scheduled engine's max_categories.
DEFAULT_MAX_CATEGORIES = 200
# Text values longer than this (bytes) are named by a shortened form (category_key); the
# extension's PSG_CATEGORY_SHORTEN_BYTES and PSG_CATEGORY_PREFIX_CHARS.
SHORTEN_ABOVE_BYTES = 256
SHORTENED_PREFIX_CHARS = 48
OTHER_CATEGORY = "(other)"  # historical categories beyond the kept ones
UNSEEN_CATEGORY = "(unseen)"  # current categories the historical window never had
MAX_UNSEEN_LISTED = 20
# Bins of the on-demand alignment that no category can be named (a category is never NUL):
# values outside the baseline's named categories, and new values the current table pooled.
BASELINE_REST = "\x00rest"
UNNAMED_UNSEEN = "\x00unseen"
_U64_MAX = 2**64 - 1


def category_key(value: str) -> str:
    """The name the extension gives a text value: the value itself up to
    SHORTEN_ABOVE_BYTES bytes of UTF-8; a longer one its first SHORTENED_PREFIX_CHARS
    characters, ``...`` and the MD5 (hex) of the whole value, so long values stay apart."""
    encoded = value.encode("utf-8")
    if len(encoded) <= SHORTEN_ABOVE_BYTES:
        return value
    return value[:SHORTENED_PREFIX_CHARS] + "..." + hashlib.md5(encoded).hexdigest()


def canonical_order(category: tuple[str, int]) -> tuple[int, bytes]:
    """The order of a count table: most frequent first, ties by the name's UTF-8 bytes."""
    return -category[1], category[0].encode("utf-8")


@dataclass(frozen=True)
class CategoryCounts:
    """One column's categories in one window: ``categories`` (name, count) pairs in
    canonical order, every count at least 1; ``other_count`` values in ``other_distinct``
    further categories pooled; ``missing`` NULLs."""

    categories: tuple[tuple[str, int], ...] = ()
    other_count: int = 0
    other_distinct: int = 0
    missing: int = 0

    def __post_init__(self) -> None:
        for name, count in self.categories:
            if not isinstance(name, str) or "\x00" in name:
                raise ValueError(f"category {name!r} must be a string without NUL")
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"category {name!r} has count {count!r}, not >= 1")
        keys = [canonical_order(c) for c in self.categories]
        if any(a >= b for a, b in pairwise(keys)):
            raise ValueError("categories must be distinct and in canonical order")
        for field in ("other_count", "other_distinct", "missing"):
            value = getattr(self, field)
            if not isinstance(value, int) or not 0 <= value <= _U64_MAX:
                raise ValueError(f"{field} must be an integer in 0..2^64-1")
        if self.other_distinct > self.other_count or (
                (self.other_count == 0) != (self.other_distinct == 0)):
            raise ValueError("other_distinct must be 0 exactly when other_count is, "
                             "and at most other_count")
        if sum(count for _, count in self.categories) + self.other_count \
                + self.missing > _U64_MAX:
            raise ValueError("the counts sum beyond 2^64-1")

    @classmethod
    def of(cls, counts: Mapping[str, int], other_count: int = 0, other_distinct: int = 0,
           missing: int = 0) -> CategoryCounts:
        """From a mapping in any order; zero counts are left out."""
        named = sorted(((name, int(n)) for name, n in counts.items() if n), key=canonical_order)
        return cls(tuple(named), other_count, other_distinct, missing)

    @classmethod
    def bounded(cls, counts: Mapping[str, int], max_categories: int,
                listed: Iterable[str] = (), missing: int = 0) -> CategoryCounts:
        """A complete count mapping bounded as the extension bounds a window: every
        ``listed`` category exactly, the ``max_categories`` most frequent others (ties by
        bytes), the rest pooled."""
        listed = set(listed)
        named = {c: n for c, n in counts.items() if c in listed and n}
        others = sorted(((c, n) for c, n in counts.items() if c not in listed and n),
                        key=canonical_order)
        named.update(others[:max_categories])
        rest = others[max_categories:]
        return cls.of(named, sum(n for _, n in rest), len(rest), missing)

    @classmethod
    def from_values(cls, values: Iterable[str | None], max_categories: int,
                    listed: Iterable[str] = ()) -> CategoryCounts:
        """Raw values (None is missing) named by :func:`category_key` and bounded."""
        tally: Counter[str] = Counter()
        missing = 0
        for value in values:
            if value is None:
                missing += 1
            else:
                tally[category_key(value)] += 1
        return cls.bounded(tally, max_categories, listed, missing)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.categories)

    @property
    def total(self) -> int:
        """Values that are not missing."""
        return sum(count for _, count in self.categories) + self.other_count

    @property
    def distinct(self) -> int:
        """Distinct categories among the values that are not missing."""
        return len(self.categories) + self.other_distinct

    @property
    def pooled(self) -> bool:
        """Whether some categories are only counted together (``other_count``)."""
        return self.other_count > 0


def align_tables(baseline: CategoryCounts, current: CategoryCounts
                 ) -> tuple[dict[str, int], dict[str, int]]:
    """Bins whose counts are exact on both sides, from two bounded tables.

    The current table counts every category the baseline names (absent means 0), so each
    of those is a bin. When the baseline pooled some categories, nothing tells whether a
    category it does not name is new: all of those share one bin (``BASELINE_REST``), the
    baseline's pooled count against the current window's values outside the baseline's
    names. When the baseline named all its categories, everything else in the current
    window is new: named ones keep their names, the current table's pooled ones share
    ``UNNAMED_UNSEEN``.
    """
    named = baseline.counts
    current_counts = current.counts
    historical = dict(named)
    recent = {name: current_counts.get(name, 0) for name in named}
    outside = {name: n for name, n in current_counts.items() if name not in named}
    if baseline.pooled:
        historical[BASELINE_REST] = baseline.other_count
        recent[BASELINE_REST] = sum(outside.values()) + current.other_count
    else:
        recent.update(outside)
        if current.other_count:
            recent[UNNAMED_UNSEEN] = current.other_count
    return historical, recent


def is_named(category: str) -> bool:
    """False for the bins of :func:`align_tables` that pool unnamed categories."""
    return not category.startswith("\x00")


def pool_categories(historical: Mapping[str, int], current: Mapping[str, int],
                    max_categories: int) -> tuple[dict[str, int], dict[str, int]]:
    """Keep counts bounded without hiding what is new: beyond ``max_categories`` distinct
    values, the most frequent historical categories are kept, the other historical ones
    pooled into ``(other)``, and every current category the historical window never had
    pooled into ``(unseen)`` of its own, so a wholesale change of categories still shows as
    mass moving into a bin the baseline lacks. A real category of either name keeps its
    own bin: the pooled bins then take a name no category has."""
    names = set(historical) | set(current)
    if len(names) <= max_categories:
        return dict(historical), dict(current)
    ranked = sorted(historical, key=lambda c: (-historical[c], c))
    kept = set(ranked[:max_categories - 2])
    other_label = _free_label(OTHER_CATEGORY, names)
    unseen_label = _free_label(UNSEEN_CATEGORY, names | {other_label})

    def pooled(category_counts: Mapping[str, int]) -> dict[str, int]:
        out = {c: n for c, n in category_counts.items() if c in kept}
        out[other_label] = sum(n for c, n in category_counts.items()
                               if c not in kept and c in historical)
        out[unseen_label] = sum(n for c, n in category_counts.items()
                                if c not in historical)
        return out

    return pooled(historical), pooled(current)


def _free_label(label: str, taken: set[str]) -> str:
    while label in taken:
        label += "'"
    return label


def unseen_categories(historical: Mapping[str, int], current: Mapping[str, int]
                      ) -> tuple[tuple[str, ...], float]:
    """The current window's categories the historical window never had (the most frequent
    first, at most MAX_UNSEEN_LISTED), and their share of the current window."""
    unseen = sorted((c for c in current if c not in historical and current[c] > 0),
                    key=lambda c: (-current[c], c))
    total = sum(current.values())
    share = sum(current[c] for c in unseen) / total if total else math.nan
    return tuple(unseen[:MAX_UNSEEN_LISTED]), share
