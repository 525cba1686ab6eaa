"""Per-feature aggregates of both windows, computed in DuckDB: only these leave the database.

Two kinds of scan, each batched to stay within half of the DuckDB memory limit. First
each window's quantiles for every numeric feature, from a reproducible hash sample
(EDGE_SAMPLE_ROWS historical rows, CURRENT_EDGE_SAMPLE_ROWS current ones; a sorted list
of the sample indexed like numpy's ``inverted_cdf``: bounded memory and time whatever
the window size; ``approx_quantile`` over the whole windows measured 4x slower here):
the PSI bin edges and quartiles from the historical window, the fine KS bin edges from
both. Then one scan per window and batch counts every feature into the fine bins with
``histogram(x, edges)`` (a binary search per value; the edges come from a temporary
table), with min, max and standard deviation, and counts categories with
``histogram(x)``. The PSI edges are a subset of the fine edges, so PSI, KL and JS counts
are sums of fine bins: exact counts over the (nearly equal-frequency) PSI bins. Where
ties are heavy (few distinct edges) a second histogram of ``-x`` gives the mass sitting
exactly on each edge, which makes KS exact on discrete data. The Python side is plain
Python (no numpy: see stat_guard/counts.py).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import duckdb

from stat_guard.scheduled.connection import Session, is_lock_conflict
from stat_guard.scheduled.windows import CURRENT, HISTORICAL, Source, WindowPlan

NUMERIC = "numeric"
# Edges only need to cut the windows into nearly equal-mass bins: the counts that the
# statistics use are exact. 32,768 sampled rows put each 1/1000 fine bin within about
# 17% of its mass and each decile within 0.3 percentage points; sorting the sample is
# most of an edge scan (65,536 rows: KS bound 0.0012 instead of 0.0014 on the benchmark's
# 200,000-row windows, 12% more time for the whole run).
EDGE_SAMPLE_ROWS = 32_768
# The current window adds its percentiles: a sample of 8,192 rows places them within
# about 0.2 percentage points, and halves the edges the count scans search.
CURRENT_EDGE_BINS = 100
CURRENT_EDGE_SAMPLE_ROWS = 8_192
_HASH_SPAN = 2**64 - 1
EDGE_SAMPLE = {HISTORICAL: EDGE_SAMPLE_ROWS, CURRENT: CURRENT_EDGE_SAMPLE_ROWS}
# Memory as DuckDB accounts it, measured on 20 double columns. An edge scan holds each
# feature's sample as a list, then a sorted copy of it: about six times its 8 bytes a
# value (8 features ran out of memory under a 24 MB limit). A count scan pins column
# blocks (256 KiB each, a few per column), its casts and histogram state: 16 features
# ran out of memory under a 16 MB limit, 12 did not.
EDGE_BYTES_PER_VALUE = 8 * 6
COUNT_SCAN_BYTES_PER_FEATURE = 640 * 1024
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # NUMERIC or CATEGORICAL
    expr: str  # SQL expression over the source relation (a quoted column)


@dataclass
class WindowCounts:
    """One feature in one window."""

    values: int = 0  # finite numbers, or non-NULL categories
    nulls: int = 0
    nonfinite: int = 0  # NaN and ±Inf
    minimum: float = math.nan
    maximum: float = math.nan
    psi_counts: list[float] | None = None
    fine_counts: list[float] | None = None
    fine_at_edges: list[float] | None = None  # values equal to each fine edge
    categories: dict[str, int] = field(default_factory=dict)


@dataclass
class FeatureAggregate:
    spec: FeatureSpec
    psi_edges: list[float] = field(default_factory=list)  # sorted, distinct
    fine_edges: list[float] = field(default_factory=list)  # sorted, distinct
    stddev: float = math.nan  # historical, finite values
    iqr: float = math.nan
    tie_heavy: bool = False  # few distinct edges: also count the mass exactly on each edge
    windows: dict[str, WindowCounts] = field(default_factory=dict)


@dataclass
class SourceAggregates:
    features: dict[str, FeatureAggregate]
    errors: dict[str, str]
    sampled_rows: dict[str, int]
    extras: dict[str, dict[str, Any]]  # window → extra aggregate → value


def quantile_grid(psi_bins: int, ks_bins: int
                  ) -> tuple[list[float], list[int], list[int], tuple[int, int]]:
    """The quantile levels to fetch, and where the PSI, fine and quartile levels sit in it."""
    psi = [i / psi_bins for i in range(1, psi_bins)]
    fine = [i / ks_bins for i in range(1, ks_bins)]
    levels = sorted(set(psi) | set(fine) | {0.25, 0.75})
    index = {q: i for i, q in enumerate(levels)}
    return (levels, [index[q] for q in psi], [index[q] for q in fine],
            (index[0.25], index[0.75]))


def memory_limit_bytes(limit: str) -> int:
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?i?b?)\s*", limit.lower())
    if not match:
        return 512 * 2**20
    unit = match.group(2).rstrip("b").rstrip("i")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit]
    return int(float(match.group(1)) * scale)


def aggregate_source(session: Session, source: Source, plan: WindowPlan,
                     features: Sequence[FeatureSpec], psi_bins: int, ks_bins: int,
                     memory_limit: str, extras: dict[str, str] | None = None,
                     memory_limit_max: str | None = None) -> SourceAggregates:
    """Edges from the historical window, then bin and category counts of both windows."""
    extras = extras or {}
    errors: dict[str, str] = {}
    aggregates = {f.name: FeatureAggregate(f) for f in features}
    params = {**source.params, **plan.params}
    numeric = [f for f in features if f.kind == NUMERIC]

    budget = memory_limit_bytes(memory_limit) // 2
    larger = None
    if memory_limit_max and memory_limit_bytes(memory_limit_max) > budget * 2:
        def larger(run: Callable[[], None]) -> None:
            with session.memory_limit(memory_limit_max, restore=memory_limit):
                run()
    # Batches keep every scan within half the memory limit; the current window's small
    # edge sample lets one scan take many more features than the historical one.
    levels = {HISTORICAL: quantile_grid(psi_bins, ks_bins)[0],
              CURRENT: [i / min(ks_bins, CURRENT_EDGE_BINS)
                        for i in range(1, min(ks_bins, CURRENT_EDGE_BINS))]}
    picked: dict[str, dict[str, list[Any] | None]] = {HISTORICAL: {}, CURRENT: {}}
    for window in (HISTORICAL, CURRENT):
        pending = [f for f in numeric if f.name not in errors]
        for group in _batches(pending, budget, EDGE_SAMPLE[window] * EDGE_BYTES_PER_VALUE):
            _isolating(group, errors, lambda part, window=window: _quantile_scan(
                session, source, plan, params, window, levels[window], part, picked[window]),
                larger)
    for spec in numeric:
        if spec.name not in errors:
            _set_edges(aggregates[spec.name], picked[HISTORICAL].get(spec.name),
                       picked[CURRENT].get(spec.name), psi_bins, ks_bins)

    scored = [f for f in features if f.name not in errors]
    results: dict[str, Any] = {"sampled": {}, "extras": {}}
    for group in _batches(scored, budget, COUNT_SCAN_BYTES_PER_FEATURE):
        _isolating(group, errors, lambda part: _count_scan(
            session, source, plan, params, part, aggregates, extras, results), larger)
    if not results["sampled"]:  # every feature failed: still count the windows
        _count_scan(session, source, plan, params, [], aggregates, extras, results)
    for name in errors:
        aggregates.pop(name, None)
    return SourceAggregates(aggregates, errors, results["sampled"], results["extras"])


def _batches(features: list[FeatureSpec], budget: int, per_feature: int
             ) -> list[list[FeatureSpec]]:
    size = max(1, budget // per_feature)
    return [features[i:i + size] for i in range(0, len(features), size)]


def _isolating(group: list[FeatureSpec], errors: dict[str, str],
               scan: Callable[[list[FeatureSpec]], None],
               larger: Callable[[Callable[[], None]], None] | None = None) -> None:
    """Run a scan over a group of features; on a query error, bisect to the culprit(s).

    A single feature that ran out of memory runs once more through ``larger`` (under the
    larger memory limit) before it gets its error entry.
    """
    if not group:
        return
    try:
        scan(group)
    except duckdb.Error as error:
        if _fatal(error):
            raise
        if len(group) == 1:
            if larger is not None and isinstance(error, duckdb.OutOfMemoryException):
                try:
                    larger(lambda: scan(group))
                    return
                except duckdb.Error as again:
                    if _fatal(again):
                        raise
                    error = again
            errors[group[0].name] = "query failed: " + str(error).splitlines()[0][:300]
            return
        middle = len(group) // 2
        _isolating(group[:middle], errors, scan, larger)
        _isolating(group[middle:], errors, scan, larger)


def _fatal(error: duckdb.Error) -> bool:
    """Errors that end the run (retried later as a whole), not one feature's."""
    return is_lock_conflict(error) or isinstance(error, duckdb.InterruptException)


def _constant_lists(session: Session, table: str, lists: Sequence[Sequence[float]]) -> None:
    """Put lists of numbers (bin edges) in a temporary table, list i in the row i = i.

    As statement parameters, twenty lists of a thousand edges cost 0.15-0.2 s of binding
    per statement (each ``$param`` converted and bound again); a temporary table (allowed
    on a read-only connection, private to it) is filled once for both windows' scans.
    """
    session.execute(f"CREATE OR REPLACE TEMP TABLE {table} (i INTEGER, v DOUBLE[])")
    if lists:
        session.connection.executemany(
            f"INSERT INTO {table} VALUES (?, ?)",
            [(i, [float(x) for x in values]) for i, values in enumerate(lists)])


def _as_double(spec: FeatureSpec) -> str:
    return f"CAST({spec.expr} AS DOUBLE)"


def _finite_column(i: int) -> str:
    """Alias of feature i's finite value (NULL otherwise) inside the scans' subquery."""
    return f'"__stat_guard_v{i}"'


def _raw_column(i: int) -> str:
    return f'"__stat_guard_r{i}"'


def _edge_thresholds(plan: WindowPlan) -> dict[str, int]:
    """Hash thresholds of each window's edge sample, nested in the row cap's sample: the
    same hash, a lower threshold (two seeds of DuckDB's hash are not independent)."""
    sampled = {HISTORICAL: plan.historical.sampled_rows, CURRENT: plan.current.sampled_rows}
    thresholds = {}
    for name, rows in sampled.items():
        ceiling = int(plan.params.get(f"{name}_threshold", _HASH_SPAN))
        thresholds[name] = min(ceiling, int(ceiling * (EDGE_SAMPLE[name] / max(rows, 1))))
    return thresholds


def _quantile_scan(session: Session, source: Source, plan: WindowPlan,
                   params: dict[str, Any], window: str, levels: list[float],
                   group: list[FeatureSpec], picked: dict[str, list[Any] | None]) -> None:
    """The window's sample quantiles at ``levels`` for a batch of numeric features.

    One scan with a plain range on the time column, which DuckDB pushes into the scan
    (zone maps skip the row groups outside it; an OR of the two windows' ranges is not
    pushed down and reads the whole table).
    """
    projected, inner = [], []
    for i, spec in enumerate(group):
        x, v = _as_double(spec), _finite_column(i)
        projected.append(f"CASE WHEN isfinite({x}) THEN {x} END AS {v}")
        # A sorted list of the sample indexed at ceil(q·n) (numpy's inverted_cdf): on a
        # 65k-row sample this was 6x faster than quantile_disc with 1,000 levels.
        inner.append(f"list_sort(list({v}) FILTER (WHERE {v} IS NOT NULL)) AS s{i}")
    # The levels are named once (a list parameter is bound again at every mention): one
    # list per level, holding every feature's value at it.
    at_level = ", ".join(f"s{i}[greatest(ceil(q * len(s{i}))::BIGINT, 1)]"
                         for i in range(len(group)))
    predicate = plan.historical_sql if window == HISTORICAL else plan.current_sql
    [(by_level,)] = session.fetchall(
        f"WITH windowed AS (SELECT {', '.join(projected)} FROM {source.relation} "
        f"WHERE ({predicate}) AND hash({source.key}, $edge_seed) <= $edge_threshold), "
        f"sketched AS (SELECT {', '.join(inner)} FROM windowed) "
        f"SELECT list_transform($levels, lambda q: [{at_level}]) FROM sketched",
        {**params, "levels": levels, "edge_seed": plan.params.get("seed", 0),
         "edge_threshold": _edge_thresholds(plan)[window]})
    for i, spec in enumerate(group):
        values = [level[i] for level in by_level] if by_level else None
        picked[spec.name] = None if not values or values[0] is None else values


def _set_edges(aggregate: FeatureAggregate, quantiles: list[Any] | None,
               current_quantiles: list[Any] | None, psi_bins: int, ks_bins: int) -> None:
    """PSI and fine edges from the historical quantiles and the current percentiles."""
    if quantiles is None:
        return  # no finite historical value: nothing to bin
    _, psi_at, fine_at, quartiles_at = quantile_grid(psi_bins, ks_bins)
    q = [float(v) for v in quantiles]
    aggregate.psi_edges = sorted({q[j] for j in psi_at})
    # Fine edges from the historical window's quantiles (every fine bin holds about
    # 1/ks_bins of it) and the current window's percentiles (no bin holds more than
    # about 1/100 of the current window, however far it moved: the KS and
    # Wasserstein error bounds stay small under drift too).
    fine = {q[j] for j in fine_at}
    fine.update(float(v) for v in current_quantiles or ())
    # The PSI edges are fine edges too, so PSI counts are sums of fine bins.
    aggregate.fine_edges = sorted(fine.union(aggregate.psi_edges))
    aggregate.tie_heavy = len(aggregate.fine_edges) < len(fine_at) // 2
    aggregate.iqr = float(q[quartiles_at[1]] - q[quartiles_at[0]])


def _count_scan(session: Session, source: Source, plan: WindowPlan, params: dict[str, Any],
                group: list[FeatureSpec], aggregates: dict[str, FeatureAggregate],
                extras: dict[str, str], results: dict[str, Any]) -> None:
    projected = ["*"] if extras else ["1 AS __stat_guard_one"]
    selects = ["count(*)"]
    edge_lists: list[list[float]] = []

    def edges_sql(edges: list[float]) -> str:
        edge_lists.append(edges)
        return f"(SELECT v FROM __stat_guard_edges WHERE i = {len(edge_lists) - 1})"

    layout: list[tuple[FeatureSpec, bool]] = []
    for i, spec in enumerate(group):
        raw, v = _raw_column(i), _finite_column(i)
        if spec.kind == NUMERIC:
            x = _as_double(spec)
            projected += [f"{x} AS {raw}", f"CASE WHEN isfinite({x}) THEN {x} END AS {v}"]
            selects += [f"count({v})", f"count(*) - count({raw})", f"count({raw}) - count({v})",
                        f"min({v})", f"max({v})", f"stddev_samp({v})"]
            aggregate = aggregates[spec.name]
            binned = len(aggregate.psi_edges) > 0
            if binned:
                edges = aggregate.fine_edges
                # map_values: counts in boundary order, then the overflow bucket if any.
                selects.append(f"map_values(histogram({v}, {edges_sql(edges)}))")
                if aggregate.tie_heavy:
                    # histogram(-x, -edges) counts [e_i, e_i+1): with (e_i, e_i+1] it gives
                    # the mass sitting exactly on each edge (ties, discrete values).
                    negated = edges_sql([-e for e in reversed(edges)])
                    selects.append(f"map_values(histogram(-{v}, {negated}))")
            layout.append((spec, binned))
        else:
            projected.append(f"CAST({spec.expr} AS VARCHAR) AS {v}")
            selects += [f"count({v})", f"count(*) - count({v})", f"histogram({v})"]
            layout.append((spec, False))
    selects += list(extras.values())
    _constant_lists(session, "__stat_guard_edges", edge_lists)
    # One plain (ungrouped) aggregate scan per window: faster than grouping both windows.
    by_window = {}
    for window, predicate in ((HISTORICAL, plan.historical_sql), (CURRENT, plan.current_sql)):
        [row] = session.fetchall(
            f"WITH windowed AS (SELECT {', '.join(projected)} FROM {source.relation} "
            f"WHERE {predicate}) SELECT {', '.join(selects)} FROM windowed", params)
        by_window[window] = row if row[0] else None
    for window in (HISTORICAL, CURRENT):
        values = by_window.get(window)
        results["sampled"][window] = values[0] if values else 0
        if extras:
            tail = values[len(values) - len(extras):] if values else [None] * len(extras)
            results["extras"][window] = dict(zip(extras, tail, strict=True))
        position = 1
        for spec, binned in layout:
            counts = WindowCounts()
            aggregate = aggregates[spec.name]
            if spec.kind == NUMERIC:
                width = 6 + (1 + aggregate.tie_heavy if binned else 0)
                cells = (values[position:position + width] if values
                         else [0, 0, 0, None, None, None])
                counts.values, counts.nulls, counts.nonfinite = (int(c) for c in cells[:3])
                counts.minimum = _float(cells[3])
                counts.maximum = _float(cells[4])
                if window == HISTORICAL:
                    aggregate.stddev = _float(cells[5])
                if binned:
                    counts.fine_counts = _bin_counts(cells[6] if values else None,
                                                     aggregate.fine_edges)
                    counts.psi_counts = _coarsen(counts.fine_counts, aggregate.fine_edges,
                                                 aggregate.psi_edges)
                    negated = cells[7] if values and aggregate.tie_heavy else None
                    counts.fine_at_edges = _at_edges(negated, aggregate.fine_edges,
                                                     counts.fine_counts)
            else:
                width = 3
                cells = values[position:position + width] if values else [0, 0, None]
                counts.values, counts.nulls = int(cells[0]), int(cells[1])
                counts.categories = {str(k): int(v) for k, v in (cells[2] or {}).items()}
            position += width
            aggregate.windows[window] = counts


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _at_edges(negated: list[int] | None, edges: list[float],
              fine_counts: list[float]) -> list[float]:
    """Values equal to each edge: #(x <= e) − #(x < e), from the two histograms."""
    if not negated:
        return [0.0] * len(edges)
    # Buckets of −x over −e_last … −e_1 hold x in [e_last, +inf), …, [e_1, e_2).
    at_or_above = list(accumulate(_bin_counts(negated, edges)[:len(edges)]))[::-1]
    total = math.fsum(fine_counts)
    up_to = list(accumulate(fine_counts))  # #(x <= e_j)
    return [max(up_to[j] - (total - at_or_above[j]), 0.0) for j in range(len(edges))]


def _coarsen(fine_counts: list[float], fine_edges: list[float],
             coarse_edges: list[float]) -> list[float]:
    """Counts of the coarse bins (−inf, c1], …, (c_last, +inf) from fine bins whose edges
    include every coarse edge."""
    coarse = [0.0] * (len(coarse_edges) + 1)
    # Fine bin j ends at fine_edges[j]; it belongs to the first coarse bin whose edge is >= it.
    for j, count in enumerate(fine_counts):
        owner = (bisect.bisect_left(coarse_edges, fine_edges[j]) if j < len(fine_edges)
                 else len(coarse_edges))  # the overflow bin
        coarse[owner] += count
    return coarse


def _bin_counts(values: list[int] | None, edges: list[float]) -> list[float]:
    """Counts of bins (−inf, e1], …, (e_last, +inf) from DuckDB's histogram counts."""
    counts = [0.0] * (len(edges) + 1)
    for j, value in enumerate((values or [])[:len(edges) + 1]):
        counts[j] = float(value)
    return counts
