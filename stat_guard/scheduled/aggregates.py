"""Per-feature aggregates of both windows, computed in DuckDB: only these leave the database.

Numeric features are counted in cells of a grid whose key is an arithmetic, monotone
function of the value, so each cell is an interval of values and one GROUP BY per
feature and window counts them (DuckDB's hash aggregate: 10–20 ns a value, where
``histogram(x, edges)`` over a thousand sample-quantile edges cost 125–150 ns, a binary
search per value). Per cell the GROUP BY returns count, min and max; NULL, NaN and ±Inf
fall in cells of their own.

1. The grid comes from each window's first rows (a LIMIT: a row group or two): the key
   ``ceil(d / (|d| + width) · half)``, ``d = x/2 − centre``, an even grid of a bounded
   ratio, dense around the historical median and ever wider towards the tails, every
   finite value on it; ``half`` so that the densest cell holds about 1/ks_bins of a
   window (less for small windows, whose counts are noisier).
2. One statement per window and batch of features: a UNION ALL of the features' GROUP BYs,
   each with the window's time range pushed into its scan.
3. Cells still holding more than REFINE_FACTOR/ks_bins of a window over more than one
   distinct value are counted again on finer, even grids over their values (atoms seen
   in the first rows get cells of their own); at most REFINE_ROUNDS rounds.
4. In Python, neighbouring cells become fine bins of at most 1/ks_bins of each window,
   each bin's right edge the largest value in it: exact counts over (−inf, e1], …,
   (e_last, +inf). A window's single-valued cell (an atom) puts its value on an edge with
   its count as the mass there, which makes KS exact on discrete data. The PSI edges are
   the historical deciles snapped up to a fine edge, so PSI, KL and JS counts are sums of
   fine bins. The historical standard deviation comes from the cells' midranges.

Categories are counted with ``histogram(CAST(x AS VARCHAR))`` in one plain aggregate per
window (with the extra aggregates, e.g. the events' performance). The Python side is
plain Python (no numpy: see stat_guard/counts.py).
"""

from __future__ import annotations

import bisect
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

import duckdb

from stat_guard.scheduled.connection import Session, is_lock_conflict
from stat_guard.scheduled.windows import CURRENT, HISTORICAL, Source, WindowPlan

NUMERIC = "numeric"
# The samples only place each feature's grid (its central range and how fine it is where
# the values are densest); the counts are exact whatever they give.
EDGE_SAMPLE_ROWS = 4_096
CURRENT_EDGE_SAMPLE_ROWS = 4_096
EDGE_SAMPLE = {HISTORICAL: EDGE_SAMPLE_ROWS, CURRENT: CURRENT_EDGE_SAMPLE_ROWS}
TRIAL_CELLS = 64  # density of the samples measured over this many cells of the range
MIN_CELLS = 32
MAX_CELLS = 8_192
# A cell holding more than this many times 1/ks_bins of a window, over more than one
# distinct value, is counted again on a finer grid (at most REFINE_ROUNDS times).
REFINE_FACTOR = 1.5
REFINE_ROUNDS = 2
REFINE_GAP = 3
MAX_SPANS = 4
MAX_ATOMS = 8
# Memory as DuckDB accounts it. A sample scan holds each feature's sample as a list
# (about six times its 8 bytes a value: 8 features of 65,536 rows ran out of memory
# under a 24 MB limit). A cell scan holds one hash table of at most a few thousand
# groups per feature; a category scan pins column blocks (256 KiB each, a few per
# column) and its histogram state (16 features ran out of memory under 16 MB, 12 did not).
EDGE_BYTES_PER_VALUE = 8 * 6
CELL_SCAN_BYTES_PER_FEATURE = 256 * 1024
CELL_BATCH_FEATURES = 4
# Small windows have fewer cells than the grid (at most one a row): more features share a
# statement, about CELL_BATCH_CELLS cells (and rows) at a time, at most
# MAX_BATCH_FEATURES (each pins a column block: 256 KiB).
CELL_BATCH_CELLS = 16_384
MAX_BATCH_FEATURES = 32
# A window of at most this many rows counts a batch's first grids in one GROUP BY
# (feature, key) over the features' values unnested: each GROUP BY costs about 1.7 ms
# however few its rows, so 64 of them took 128 ms over 1,500 rows, one of 64 features
# 46 ms (at 1M rows, the 50,000-row current window so: about 3% of the run). Larger
# windows keep a GROUP BY per feature (unnested: 1.30 against 1.19 CPU s at 10M rows).
UNNEST_MAX_ROWS = 65_536
# Windows of at most this many rows are counted by value (a cell per distinct value): no
# more cells than the grid would give them, none ever refined, KS exact.
EXACT_MAX_ROWS = 8_192
COUNT_SCAN_BYTES_PER_FEATURE = 640 * 1024
# With the native library (stat_guard/scheduled/native/stat_guard_cells.c) one statement
# counts the first grids of this many features in both windows: one scan of each window
# where the GROUP BYs scan it once a feature. Its state is 24 bytes a cell (at most
# MAX_CELLS + 1 cells, under 200 kB a feature, outside DuckDB's memory limit).
NATIVE_BATCH_FEATURES = 20
NATIVE_MAX_COLUMNS = 64  # the most columns one call takes
# stat_guard_merge's answer, a column: NULLs and NaN/±Inf of each window, cells (-1: its
# grid was refused), then per cell count, min, max of the historical and current window.
NATIVE_MERGED = struct.Struct("<qqqqq")
NATIVE_BOTH = struct.Struct("<qddqdd")
NATIVE_BITS = struct.Struct("<q")
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
    windows: dict[str, WindowCounts] = field(default_factory=dict)


@dataclass
class SourceAggregates:
    features: dict[str, FeatureAggregate]
    errors: dict[str, str]
    sampled_rows: dict[str, int]
    extras: dict[str, dict[str, Any]]  # window → extra aggregate → value


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
    """Cells of every numeric feature in both windows, then category counts."""
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

    def isolated(specs: list[FeatureSpec], per_feature: int,
                 scan: Callable[[list[FeatureSpec]], None]) -> None:
        pending = [f for f in specs if f.name not in errors]
        for group in _batches(pending, budget, per_feature):
            _isolating(group, errors, scan, larger)

    window_rows = {HISTORICAL: plan.historical.sampled_rows,
                   CURRENT: plan.current.sampled_rows}
    exact = max(window_rows.values()) <= EXACT_MAX_ROWS
    # 1. The first rows of each window place each feature's grid (no grid when small
    # windows are counted by value).
    samples: dict[str, dict[str, list[float]]] = {HISTORICAL: {}, CURRENT: {}}
    for window in (HISTORICAL, CURRENT) if not exact else ():
        sample_rows = max(1, min(EDGE_SAMPLE[window], window_rows[window]))
        isolated(numeric, sample_rows * EDGE_BYTES_PER_VALUE,
                 lambda part, window=window: _sample_scan(
                     session, source, plan, params, window, part, samples[window]))
    target = 1.0 / max(ks_bins, 1)
    sizes = [n for n in (plan.historical.sampled_rows, plan.current.sampled_rows) if n > 0]
    fine = _grid_target(target, min(sizes, default=0))
    spans = {f.name: [Span(0.0, 1.0, exact=True) if exact else
                      _first_span(samples[HISTORICAL].get(f.name, []),
                                  samples[CURRENT].get(f.name, []), fine)]
             for f in numeric}
    # 2. One GROUP BY per feature and window over the whole grid; then, for the few
    # features where a cell holds too much of a window, finer grids over those cells.
    # A few features at a time: their cells (thousands each, as Python objects) are
    # turned into bins before the next features' are fetched.
    pending = [f for f in numeric if f.name not in errors]
    rows = max(1, window_rows[HISTORICAL] + window_rows[CURRENT])
    batch = min(max(CELL_BATCH_FEATURES, CELL_BATCH_CELLS // rows), MAX_BATCH_FEATURES)
    if session.native_cells and not exact:
        batch = max(batch, NATIVE_BATCH_FEATURES)  # one scan a window for all of them
    unnest = frozenset(w for w, n in window_rows.items() if n <= UNNEST_MAX_ROWS)
    for start in range(0, len(pending), batch):
        chunk = pending[start:start + batch]
        cells: dict[str, list[Cell]] = {}
        sides: dict[str, dict[str, tuple[int, int]]] = {}
        todo = chunk
        for _ in range(1 + REFINE_ROUNDS):
            found: dict[str, list[Scanned]] = {}
            isolated(todo, CELL_SCAN_BYTES_PER_FEATURE, lambda part, found=found: _cell_scan(
                session, source, plan, params, part, spans, found, unnest))
            again: dict[str, list[Span]] = {}
            for spec in todo:
                if spec.name in errors:
                    continue
                # Later spans first, so the earlier ones' indices still hold.
                pairs = sorted(zip(spans[spec.name], found.pop(spec.name, []), strict=True),
                               key=lambda pair: -1 if pair[0].index is None else pair[0].index,
                               reverse=True)
                for span, groups in pairs:
                    merged = _merge_windows(groups)
                    if merged is None:  # cannot happen: every finite value has a finite key
                        errors[spec.name] = "a finite value fell outside its grid"
                        break
                    if span.index is None:
                        cells[spec.name], sides[spec.name] = merged
                    else:
                        old = cells[spec.name]
                        cells[spec.name] = (old[:span.index] + merged[0]
                                            + old[span.index + span.length:])
                if spec.name in errors:
                    continue
                refined = _refinement(cells[spec.name], samples, spec.name, target)
                if refined:
                    again[spec.name] = refined
                else:  # done: its bins now, so only the refined features' cells wait
                    _set_bins(aggregates[spec.name], cells.pop(spec.name), sides[spec.name],
                              psi_bins, target)
            spans.update(again)
            todo = [f for f in chunk if f.name in again and f.name not in errors]
            if not todo:
                break
        for spec in chunk:  # still heavy after the last round: binned as they are
            if spec.name not in errors and spec.name in cells:
                _set_bins(aggregates[spec.name], cells.pop(spec.name), sides[spec.name],
                          psi_bins, target)
    # Every counted numeric feature gives the same window sizes: take them from one.
    counted = next((aggregates[f.name].windows for f in numeric
                    if f.name not in errors and aggregates[f.name].windows), None)
    sampled_rows = {} if counted is None else {
        w: counted[w].values + counted[w].nulls + counted[w].nonfinite
        for w in (HISTORICAL, CURRENT)}

    # 3. Categories, window sizes and the extra aggregates: one plain aggregate a window.
    categorical = [f for f in features if f.kind != NUMERIC and f.name not in errors]
    results: dict[str, Any] = {"sampled": {}, "extras": {}}
    if categorical or extras or not sampled_rows:
        isolated(categorical, COUNT_SCAN_BYTES_PER_FEATURE, lambda part: _count_scan(
            session, source, plan, params, part, aggregates, extras, results))
        if not results["sampled"]:  # every feature failed: still count the windows
            _count_scan(session, source, plan, params, [], aggregates, extras, results)
    else:
        results["sampled"] = sampled_rows
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


def _as_double(spec: FeatureSpec) -> str:
    return f"CAST({spec.expr} AS DOUBLE)"


def _finite_column(i: int) -> str:
    """Alias of feature i's finite value (NULL otherwise) inside the scans' subquery."""
    return f'"__stat_guard_v{i}"'


@dataclass(frozen=True)
class Span:
    """One grid of a feature's cells, its key monotone in x (so each cell is an interval
    of values), over the values in [low, high] (every value when low is None).

    With ``half`` > 0 the key is ceil(d / (|d| + width) · half), d = x/2 − center: an even
    grid of u = d / (|d| + width) over (−1, 1), dense near the centre and ever wider
    towards the tails, every finite value on it (halving x keeps d finite). Otherwise
    ceil((x/2 − origin) · scale): an even grid in x. Each atom v gets a cell of its own.
    ``index``/``length``: the cells of the previous grid that this one replaces.
    """

    origin: float
    scale: float
    low: float | None = None
    high: float | None = None
    atoms: tuple[float, ...] = ()
    half: float = 0.0
    index: int | None = None
    length: int = 0
    exact: bool = False  # the key is x itself: a cell per distinct value

    @property
    def whole_ratio_grid(self) -> bool:
        """A first grid (_first_span): the ratio key over every value, no atoms."""
        return bool(self.half) and self.low is None and not self.atoms and not self.exact


# A cell: [n, min, max] of the historical window, then of the current window.
Cell = list


def _sample_scan(session: Session, source: Source, plan: WindowPlan,
                 params: dict[str, Any], window: str, group: list[FeatureSpec],
                 picked: dict[str, list[float]]) -> None:
    """The window's first rows (in the table's order; DuckDB preserves insertion order,
    so the same rows every time) for a batch of features: their finite values, sorted.

    They only place each feature's grid, so they need not be a random sample; a LIMIT
    stops the scan after a row group or two (a hash sample of the whole window read it
    all: about as long as one scan of every feature).
    """
    predicate = plan.historical_sql if window == HISTORICAL else plan.current_sql
    if session.native_cells:
        # stat_guard_values: each column's finite values, sorted, as packed doubles (a
        # list() aggregate's elements become Python objects one by one: 10 times slower).
        columns = ", ".join(f"{_as_double(spec)} AS {_finite_column(i)}"
                            for i, spec in enumerate(group))
        values = ", ".join(_finite_column(i) for i in range(len(group)))
        [(blob,)] = session.fetchall(
            f"SELECT stat_guard_values({values}) FROM (SELECT {columns} "
            f"FROM {source.relation} WHERE {predicate} LIMIT {EDGE_SAMPLE[window]})",
            params, width=0)
        if blob is not None:
            session.bytes_fetched += len(blob)
            offset = 0
            for spec in group:
                [count] = NATIVE_BITS.unpack_from(blob, offset)
                picked[spec.name] = list(struct.unpack_from(f"<{count}d", blob, offset + 8))
                offset += 8 + 8 * count
            if offset != len(blob):
                raise ValueError("stat_guard_values answered a malformed blob")
            return
    projected, lists = [], []
    for i, spec in enumerate(group):
        x, v = _as_double(spec), _finite_column(i)
        projected.append(f"CASE WHEN isfinite({x}) THEN {x} END AS {v}")
        lists.append(f"list({v}) FILTER (WHERE {v} IS NOT NULL)")
    [row] = session.fetchall(
        f"SELECT {', '.join(lists)} FROM (SELECT {', '.join(projected)} "
        f"FROM {source.relation} WHERE {predicate} LIMIT {EDGE_SAMPLE[window]})",
        params, width=len(group) * EDGE_SAMPLE[window])
    for i, spec in enumerate(group):
        picked[spec.name] = sorted(row[i] or ())  # DOUBLE: Python floats already


def _grid_target(target: float, rows: int) -> float:
    """The cell mass to aim the grid at, so that a cell expected to hold m = target · rows
    values stays under about 1.35 m at three standard deviations of its count: finer
    cells for small windows (m = 5: 0.45 of target), ``target`` from m ≈ 60 up."""
    m = target * rows
    if m <= 0:
        return target
    root = (-3.0 + math.sqrt(9.0 + 5.4 * m)) / 2.0
    return target * min(1.0, root * root / m)


def _first_span(historical: list[float], current: list[float], target: float) -> Span:
    """The ratio grid centred on the historical sample's median with its spread as width,
    its cells about ``target`` of a window where the samples are densest on it. For a
    normal feature that is about 1,900 cells (an even grid in x needs about 2,300 between
    the 0.2% and 99.8% points and gives the tails hundreds more), and every value, however
    far out, lands on it."""
    base = historical or current
    if not base:
        return Span(0.0, 1.0, half=float(MIN_CELLS))
    center = base[len(base) // 2] / 2
    quartiles = base[len(base) // 4] / 2, base[(3 * len(base)) // 4] / 2
    width = (quartiles[1] - quartiles[0]) / 1.349  # the standard deviation of a normal
    if not width > 0:
        width = (base[-1] / 2 - base[0] / 2) / 6 or max(1.0, abs(center)) * 2 ** -20
    # The trial cells' ends in x: u = d / (|d| + width) solved for d.
    ends = []
    for j in range(1, TRIAL_CELLS):
        u = 2 * j / TRIAL_CELLS - 1
        ends.append(2 * (center + u * width / (1 - abs(u))))
    densest = 0.0
    for sample in (historical, current):
        if sample:
            at = [0, *(bisect.bisect_right(sample, e) for e in ends), len(sample)]
            densest = max(densest, max(b - a for a, b in pairwise(at)) / len(sample))
    cells = min(max(math.ceil(TRIAL_CELLS * densest / target), MIN_CELLS), MAX_CELLS)
    return Span(center, width, half=cells / 2)


def _literal(value: float) -> str:
    return f"CAST('{value!r}' AS DOUBLE)"  # repr round-trips the double exactly


def _ratio_key(origin_sql: str, scale_sql: str, half_sql: str) -> str:
    """The ratio grid's key of x: ceil(d / (|d| + scale) · half), d = x/2 − origin (see
    Span), from SQL for its constants (literals, or columns beside x)."""
    d = f"(x * 0.5 - {origin_sql})"
    return f"ceil({d} / (abs({d}) + {scale_sql}) * {half_sql})"


def _key_sql(span: Span) -> str:
    if span.exact:
        return "x"
    if span.half:
        key = _ratio_key(_literal(span.origin), _literal(span.scale), _literal(span.half))
    else:
        key = f"ceil((x * 0.5 - {_literal(span.origin)}) * {_literal(span.scale)})"
    if span.atoms:
        # Values below an atom keep their cell, the atom gets a cell of its own, values
        # above it move up a fraction: still monotone in x, the atom alone in its cell.
        steps = " + ".join(f"CASE WHEN x > {_literal(v)} THEN 2 WHEN x = {_literal(v)} "
                           "THEN 1 ELSE 0 END" for v in span.atoms)
        key = f"{key} + ({steps}) / {2 * len(span.atoms) + 1}.0"
    return key


def _cell_scan(session: Session, source: Source, plan: WindowPlan, params: dict[str, Any],
               group: list[FeatureSpec], spans: dict[str, list[Span]],
               found: dict[str, list[Scanned]],
               unnest: frozenset[str] = frozenset()) -> None:
    """Per window, one UNION ALL of a GROUP BY per feature over the feature's grid:
    count, min and max of every cell (NULL, NaN and ±Inf fall in cells of their own).

    Each GROUP BY's predicate is a plain range on the time column, which DuckDB pushes
    into the scan (an OR of the two windows' ranges is not pushed down and reads the
    whole table); twenty narrow scans cost about as much as one scan of all the columns.
    Joining the windows' cells in SQL (GROUP BY f, k ... ORDER BY) cost more than here.
    """
    pairs = [(spec, span) for spec in group for span in spans[spec.name]]
    scanned: list[Scanned] = [{} for _ in pairs]
    if session.native_cells:
        # First grids through the native library; what it cannot count (a refinement's
        # bounded or atom-keyed grid, a refused grid, a NULL answer) goes on to the
        # GROUP BYs below.
        left = _native_cell_scan(session, source, plan, params, pairs, scanned)
        if not left:
            _hand_over(group, pairs, scanned, found)
            return
    else:
        left = list(range(len(pairs)))
    # Small windows, first grids: one GROUP BY (feature, key) over the values unnested,
    # the grids' constants unnested beside them (_ratio_key, as in _key_sql).
    exact = all(span.exact for _, span in pairs)
    unnestable = len(pairs) > 1 and (exact or all(
        span.whole_ratio_grid for _, span in pairs))
    everything = len(left) == len(pairs)
    for window, predicate in ((HISTORICAL, plan.historical_sql), (CURRENT, plan.current_sql)):
        if unnestable and everything and window in unnest:
            def listed(values: Sequence[str]) -> str:
                return f"[{', '.join(values)}]"

            columns = [f"unnest({listed([_as_double(spec) for spec, _ in pairs])}) AS x",
                       f"unnest(range({len(pairs)})) AS f"]
            key = "x"
            if not exact:
                key = _ratio_key("o", "w", "h")
                columns += [
                    f"unnest({listed([_literal(span.origin) for _, span in pairs])}) AS o",
                    f"unnest({listed([_literal(span.scale) for _, span in pairs])}) AS w",
                    f"unnest({listed([_literal(span.half) for _, span in pairs])}) AS h"]
            sql = (f"SELECT f, {key} AS k, count(*) AS n, min(x) AS lo, max(x) AS hi "
                   f"FROM (SELECT {', '.join(columns)} FROM {source.relation} "
                   f"WHERE {predicate}) GROUP BY f, k")
        else:
            parts = []
            for j in left:
                spec, span = pairs[j]
                if window in scanned[j]:
                    continue
                within = ("" if span.low is None else
                          f" WHERE x >= {_literal(span.low)} AND x <= {_literal(span.high)}")
                parts.append(
                    f"SELECT {j} AS f, {_key_sql(span)} AS k, count(*) AS n, min(x) AS lo, "
                    f"max(x) AS hi FROM (SELECT {_as_double(spec)} AS x "
                    f"FROM {source.relation} WHERE {predicate}){within} GROUP BY k")
            if not parts:
                continue
            sql = " UNION ALL ".join(parts)
        rows = session.fetchall(sql, params, width=5)
        by_feature: dict[int, list[tuple]] = {j: [] for j in left}
        for row in rows:  # (f, k, n, lo, hi)
            by_feature[row[0]].append(row)
        for j in left:
            scanned[j].setdefault(window, _window_cells(by_feature[j]))
    _hand_over(group, pairs, scanned, found)


def _hand_over(group: list[FeatureSpec], pairs: list[tuple[FeatureSpec, Span]],
               scanned: list[Scanned], found: dict[str, list[Scanned]]) -> None:
    for spec in group:
        found[spec.name] = [scanned[j] for j, (owner, _) in enumerate(pairs) if owner is spec]


def _native_cell_scan(session: Session, source: Source, plan: WindowPlan,
                      params: dict[str, Any], pairs: list[tuple[FeatureSpec, Span]],
                      scanned: list[Scanned]) -> list[int]:
    """The first grids' cells of both windows from the native library, in one statement:
    per window one ungrouped ``stat_guard_cells`` over every feature (up to
    NATIVE_MAX_COLUMNS a call), a scalar subquery each (each window's range pushed into
    its own scan), and ``stat_guard_merge`` joining the two answers into the engine's
    cells. Fills ``scanned`` and returns the pairs it left to the GROUP BYs."""
    native = [j for j, (_, span) in enumerate(pairs) if span.whole_ratio_grid]
    if not native:
        return list(range(len(pairs)))
    calls = []
    for start in range(0, len(native), NATIVE_MAX_COLUMNS):
        part = native[start:start + NATIVE_MAX_COLUMNS]
        grids = " ".join(str(_bits(value)) for j in part
                         for value in (pairs[j][1].origin, pairs[j][1].scale, pairs[j][1].half))
        cells = (f"stat_guard_cells('{grids}', "
                 f"{', '.join(_as_double(pairs[j][0]) for j in part)})")
        windows = ", ".join(f"(SELECT {cells} FROM {source.relation} WHERE {predicate})"
                            for predicate in (plan.historical_sql, plan.current_sql))
        calls.append((part, f"stat_guard_merge({windows})"))
    [row] = session.fetchall(f"SELECT {', '.join(sql for _, sql in calls)}", params, width=0)
    for (part, _), blob in zip(calls, row, strict=True):
        if blob is None:  # an argument it would not take: the GROUP BYs count them
            continue
        session.bytes_fetched += len(blob)
        view, offset = memoryview(blob), 0
        for j in part:
            h_nulls, h_nonfinite, c_nulls, c_nonfinite, count = NATIVE_MERGED.unpack_from(
                view, offset)
            offset += NATIVE_MERGED.size
            if count < 0:  # a grid it refused: the GROUP BYs count this feature
                continue
            end = offset + count * NATIVE_BOTH.size
            scanned[j] = BothWindows(view[offset:end], {HISTORICAL: (h_nulls, h_nonfinite),
                                                        CURRENT: (c_nulls, c_nonfinite)})
            offset = end
        if offset != len(blob):
            raise ValueError("stat_guard_merge answered a malformed blob")
    return [j for j in range(len(pairs)) if not isinstance(scanned[j], BothWindows)]


@dataclass(frozen=True)
class BothWindows:
    """A feature's cells of both windows as stat_guard_merge gives them (joined, in key
    order; unpacked only when used: a batch's cells as Python objects took 14 MB) and
    each window's NULL and NaN/±Inf counts."""

    packed: memoryview
    side: dict[str, tuple[int, int]]

    def cells(self) -> list[Cell]:
        return [list(cell) for cell in NATIVE_BOTH.iter_unpack(self.packed)]


def _bits(value: float) -> int:
    """A double's IEEE-754 bits as a signed 64-bit integer (stat_guard_cells' grids)."""
    return NATIVE_BITS.unpack(struct.pack("<d", value))[0]


@dataclass(frozen=True)
class WindowCells:
    """One feature's cells in one window from a GROUP BY: (key, n, min, max) in key
    order, one a key, and the NULL and NaN/±Inf counts."""

    cells: list[tuple[float, int, float, float]]
    nulls: int
    nonfinite: int


# What a scan leaves for a feature's grid: each window's cells, or both already joined.
Scanned = dict[str, WindowCells | None] | BothWindows


def _window_cells(rows: list[tuple]) -> WindowCells | None:
    """A GROUP BY's rows (feature, key, count, min, max) as WindowCells; None when a finite
    value fell in a non-finite key (the grid overflowed)."""
    inf = math.inf
    finite: dict[float, tuple[int, float, float]] = {}
    nulls = nonfinite = 0
    for _, k, n, lo, hi in rows:
        if k is None:
            nulls += n
        elif not -inf < k < inf:  # NaN or ±Inf values
            if math.isfinite(lo) or math.isfinite(hi):
                return None
            nonfinite += n
        elif k in finite:  # -0.0 and 0.0 came as two groups: one cell
            old = finite[k]
            finite[k] = (old[0] + n, min(old[1], lo), max(old[2], hi))
        else:
            finite[k] = (n, lo, hi)
    return WindowCells([(k, *finite[k]) for k in sorted(finite)], nulls, nonfinite)


def _merge_windows(groups: Scanned) -> tuple[list[Cell], dict[str, tuple[int, int]]] | None:
    """Both windows' cells as one list in key order ([n, min, max] per window), and each
    window's NULL and NaN/Inf counts; None when a window's grid overflowed."""
    if isinstance(groups, BothWindows):  # joined by stat_guard_merge already
        return groups.cells(), groups.side
    inf = math.inf
    empty = WindowCells([], 0, 0)
    historical, current = (groups.get(w, empty) for w in (HISTORICAL, CURRENT))
    if historical is None or current is None:
        return None
    side = {HISTORICAL: (historical.nulls, historical.nonfinite),
            CURRENT: (current.nulls, current.nonfinite)}
    cells: list[Cell] = []
    reach = -inf  # the largest value so far
    h_cells, c_cells = historical.cells, current.cells
    h_count, c_count = len(h_cells), len(c_cells)
    i = j = 0
    while i < h_count or j < c_count:
        h_key = h_cells[i][0] if i < h_count else inf
        c_key = c_cells[j][0] if j < c_count else inf
        if h_key < c_key:
            _, h_n, h_lo, h_hi = h_cells[i]
            c_n, c_lo, c_hi = 0, inf, -inf
            i += 1
        elif c_key < h_key:
            h_n, h_lo, h_hi = 0, inf, -inf
            _, c_n, c_lo, c_hi = c_cells[j]
            j += 1
        else:
            _, h_n, h_lo, h_hi = h_cells[i]
            _, c_n, c_lo, c_hi = c_cells[j]
            i += 1
            j += 1
        if h_lo <= reach or c_lo <= reach:
            # Rounding let a key step back by one unit between two neighbouring values:
            # the two cells overlap, so they are counted as one.
            previous = cells[-1]
            previous[0] += h_n
            previous[1] = min(previous[1], h_lo)
            previous[2] = max(previous[2], h_hi)
            previous[3] += c_n
            previous[4] = min(previous[4], c_lo)
            previous[5] = max(previous[5], c_hi)
        else:
            cells.append([h_n, h_lo, h_hi, c_n, c_lo, c_hi])
        if h_hi > reach:
            reach = h_hi
        if c_hi > reach:
            reach = c_hi
    return cells, side


def _refinement(cells: list[Cell], samples: dict[str, dict[str, list[float]]], name: str,
                target: float) -> list[Span]:
    """Finer grids over the runs of cells that hold more than REFINE_FACTOR × ``target``
    of a window across more than one distinct value (at most MAX_SPANS runs, the heaviest;
    neighbours up to REFINE_GAP cells apart share a run). Each run's grid is even in x over
    its values; atoms of the samples (values seen more than once) in it get cells of their
    own."""
    totals = (sum(c[0] for c in cells), sum(c[3] for c in cells))
    limits = (REFINE_FACTOR * target * totals[0], REFINE_FACTOR * target * totals[1])
    heavy = [i for i, c in enumerate(cells)
             if (c[0] > 1 and c[0] > limits[0] and c[1] < c[2])
             or (c[3] > 1 and c[3] > limits[1] and c[4] < c[5])]
    if not heavy:
        return []
    runs: list[list[int]] = [[heavy[0], heavy[0]]]
    for i in heavy[1:]:
        if i - runs[-1][1] <= REFINE_GAP:
            runs[-1][1] = i
        else:
            runs.append([i, i])

    def mass(run: list[int]) -> float:
        return max(sum(c[3 * w] for c in cells[run[0]:run[1] + 1]) / totals[w]
                   if totals[w] else 0.0 for w in (0, 1))

    chosen = sorted(sorted(runs, key=mass, reverse=True)[:MAX_SPANS])
    spans = []
    for first, last in chosen:
        low = min(cells[first][1], cells[first][4])
        high = max(cells[last][2], cells[last][5])
        count = min(max(math.ceil(mass([first, last]) / target * 2), MIN_CELLS), MAX_CELLS)
        seen: dict[float, int] = {}
        for window in (HISTORICAL, CURRENT):
            for x in samples[window].get(name, ()):
                if low <= x <= high:
                    seen[x] = seen.get(x, 0) + 1
        atoms = sorted(sorted((v for v, n in seen.items() if n > 1), key=seen.__getitem__,
                              reverse=True)[:MAX_ATOMS])
        scale = count / (high / 2 - low / 2)
        spans.append(Span(low / 2, scale if math.isfinite(scale) else 1.0, low, high,
                          tuple(atoms), index=first, length=last - first + 1))
    return spans


def _set_bins(aggregate: FeatureAggregate, cells: list[Cell],
              side: dict[str, tuple[int, int]], psi_bins: int, target: float) -> None:
    """Fine bins, their on-edge counts, the PSI bins and the spread, from the cells.

    Each cell is an interval of values; a window's values in it lie between its min and
    max. A bin's right edge is a cell's largest value (or, inside a cell, a window's max
    or the value just below a window's atom, where that splits neither window's values),
    so every bin count is exact. Neighbouring cells of distinct values are joined into
    one bin while it holds at most ``target`` of each window. Where both windows' counts
    of values equal to an edge are known (an atom, or none there) they are given;
    otherwise 0 for both, which ks_from_binned_counts reads as unknown.
    """
    totals = (sum([c[0] for c in cells]), sum([c[3] for c in cells]))
    caps = (target * totals[0], target * totals[1])
    edges: list[float] = []
    counts: tuple[list[float], list[float]] = ([], [])
    at: tuple[list[float], list[float]] = ([], [])
    run_h = run_c = 0  # the open bin's counts, ending at run_end
    run_end: float | None = None
    cap_h, cap_c = caps
    # The common bin's end, appended in the loop itself (a few thousand a feature).
    add_edge, add_h, add_c = edges.append, counts[0].append, counts[1].append
    add_at_h, add_at_c = at[0].append, at[1].append

    def close(edge: float, first: float, second: float, on_first: float = 0.0,
              on_second: float = 0.0) -> None:
        add_edge(edge)
        add_h(float(first))
        add_c(float(second))
        add_at_h(on_first)
        add_at_c(on_second)

    for n_h, lo_h, hi_h, n_c, lo_c, hi_c in cells:
        if (not n_c or lo_c < hi_c) and (not n_h or lo_h < hi_h) and (
                not n_h or not n_c or (lo_c <= hi_h and lo_h <= hi_c)):
            # Distinct values, one window or both over the same stretch: one bin's end.
            if run_end is not None and (run_h + n_h > cap_h or run_c + n_c > cap_c):
                add_edge(run_end)
                add_h(float(run_h))
                add_c(float(run_c))
                add_at_h(0.0)
                add_at_c(0.0)
                run_h = run_c = 0
            run_h += n_h
            run_c += n_c
            run_end = hi_h if not n_c or (n_h and hi_h > hi_c) else hi_c
            continue
        if run_end is not None:
            close(run_end, run_h, run_c)
            run_h = run_c = 0
            run_end = None
        last = edges[-1] if edges else -math.inf
        if ((not n_h or lo_h == hi_h) and (not n_c or lo_c == hi_c)
                and (not n_h or not n_c or lo_h == lo_c)):
            # One value v in every window present (the common case of small windows,
            # counted by value): an empty bin up to just below v, then v with its mass on
            # the edge, as the general case below gives.
            v = lo_h if n_h else lo_c
            below = math.nextafter(v, -math.inf)
            if below > last:
                close(below, 0.0, 0.0)
            if v > last:
                close(v, n_h, n_c, float(n_h), float(n_c))
            continue
        present = [(n, lo, hi, w) for w, (n, lo, hi) in enumerate(
            ((n_h, lo_h, hi_h), (n_c, lo_c, hi_c))) if n]
        candidates = {hi for _, _, hi, _ in present}
        candidates.update(math.nextafter(lo, -math.inf) for _, lo, hi, _ in present
                          if lo == hi)
        valid = sorted(e for e in candidates if e > last and all(
            hi <= e or lo > e for _, lo, hi, _ in present))
        for e in valid:
            share, on_edge, known = [0.0, 0.0], [0.0, 0.0], True
            for n, lo, hi, w in present:
                if last < lo and hi <= e:
                    share[w] = float(n)
                    if hi == e:
                        if lo == hi:
                            on_edge[w] = float(n)
                        else:
                            known = False
            if not known:
                on_edge = [0.0, 0.0]
            close(e, share[0], share[1], on_edge[0], on_edge[1])
            last = e
    if run_end is not None:
        close(run_end, run_h, run_c)
    for w in (0, 1):
        counts[w].append(0.0)  # (last edge, +inf): nothing beyond the largest value
    aggregate.fine_edges = edges
    if totals[0] > 0:
        cumulative = list(accumulate(counts[0]))

        def quantiles(denominator: int, numerators: Sequence[int]) -> list[float]:
            # The smallest edge e with F(e) >= q: numpy's inverted_cdf where edges are
            # values, otherwise the end of the bin holding the quantile.
            scaled = [c * denominator for c in cumulative]
            return [edges[bisect.bisect_left(scaled, i * totals[0])] for i in numerators]

        aggregate.psi_edges = sorted(set(quantiles(psi_bins, range(1, psi_bins))))
        first, third = quantiles(4, (1, 3))
        aggregate.iqr = third - first
        aggregate.stddev = _cell_stddev(cells)
    for w, window in enumerate((HISTORICAL, CURRENT)):
        window_counts = WindowCounts()
        window_counts.values = totals[w]
        window_counts.nulls, window_counts.nonfinite = side.get(window, (0, 0))
        # Cells are in value order and never overlap (_merge_windows joins those that
        # would): the window's extremes are in its first and last cells.
        present = [0, len(cells) - 1]
        if not (cells and cells[0][3 * w] and cells[-1][3 * w]):
            present = [i for i, c in enumerate(cells) if c[3 * w]]
        if present:
            window_counts.minimum = cells[present[0]][3 * w + 1]
            window_counts.maximum = cells[present[-1]][3 * w + 2]
        if aggregate.psi_edges:
            window_counts.fine_counts = counts[w]
            window_counts.fine_at_edges = at[w]
            window_counts.psi_counts = _coarsen(counts[w], edges, aggregate.psi_edges)
        aggregate.windows[window] = window_counts


def _cell_stddev(cells: list[Cell]) -> float:
    """The historical standard deviation with each value at its cell's midrange (exact
    for cells of one value): within half the widest cell's range of the exact one.
    Computed on values scaled into [−1, 1], so values near the largest double do not
    overflow (the result may be inf)."""
    weights = [c[0] for c in cells if c[0]]
    middles = [c[1] / 2 + c[2] / 2 for c in cells if c[0]]
    n = sum(weights)
    if n < 2:
        return math.nan
    big = max(max(middles), -min(middles))
    if big == 0:
        return 0.0
    scaled = [m / big for m in middles]
    mean = math.fsum([w * m for w, m in zip(weights, scaled, strict=True)]) / n
    variance = math.fsum([w * (m - mean) ** 2
                          for w, m in zip(weights, scaled, strict=True)]) / (n - 1)
    return big * math.sqrt(variance)


def _count_scan(session: Session, source: Source, plan: WindowPlan, params: dict[str, Any],
                group: list[FeatureSpec], aggregates: dict[str, FeatureAggregate],
                extras: dict[str, str], results: dict[str, Any]) -> None:
    """Rows, category counts and the extra aggregates: one plain aggregate per window."""
    projected = ["*"] if extras else ["1 AS __stat_guard_one"]
    selects = ["count(*)"]
    for i, spec in enumerate(group):
        v = _finite_column(i)
        projected.append(f"CAST({spec.expr} AS VARCHAR) AS {v}")
        selects += [f"count({v})", f"count(*) - count({v})", f"histogram({v})"]
    selects += list(extras.values())
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
        for i, spec in enumerate(group):
            counts = WindowCounts()
            cells = values[1 + 3 * i:4 + 3 * i] if values else [0, 0, None]
            counts.values, counts.nulls = int(cells[0]), int(cells[1])
            counts.categories = {str(k): int(v) for k, v in (cells[2] or {}).items()}
            aggregates[spec.name].windows[window] = counts


def _coarsen(fine_counts: list[float], fine_edges: list[float],
             coarse_edges: list[float]) -> list[float]:
    """Counts of the coarse bins (−inf, c1], …, (c_last, +inf) from fine bins whose edges
    include every coarse edge."""
    # Fine bin j ends at fine_edges[j]; it belongs to the first coarse bin whose edge is >= it:
    # coarse bin i holds the fine bins up to the last edge <= coarse_edges[i].
    coarse, start = [], 0
    for edge in coarse_edges:
        end = bisect.bisect_right(fine_edges, edge, start)
        coarse.append(float(sum(fine_counts[start:end])))
        start = end
    coarse.append(float(sum(fine_counts[start:])))  # the overflow bin
    return coarse


