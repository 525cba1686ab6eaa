"""Window selection in SQL: timestamp quantiles cut a table's rows into the two windows.

The cuts are the time column's exact order statistics at 50%, 70% and 95% (numpy's
``inverted_cdf``), found in memory that does not grow with the table (``ranked_values``):
a guess from a Bernoulli sample, exact counts on either side of it, and a bounded top-N
between the guess and the cut. No sort of the table, no row numbers, no column held in
memory. The windows become plain range predicates on the time column that DuckDB's zone
maps can skip row groups with. A window over the row cap keeps the rows whose
``hash(key, seed)`` is at most that hash's order statistic at the cap: exactly the cap
(barring hash collisions), the same rows for the same seed, and independent of physical
row order.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from stat_guard.scheduled.config import WindowConfig
from stat_guard.scheduled.connection import Session

HISTORICAL = "historical"
CURRENT = "current"
# Rows sampled to guess an order statistic: the guess lands within about ±1% of the
# rows around it, whatever the table's size.
GUESS_SAMPLE_ROWS = 100_000
# At most this many rows between a guess and the cut: select the cut exactly with a top-N
# (a heap of at most half of them).
EXACT_SELECTION_ROWS = 200_000
_MAX_ROUNDS = 6
# DuckDB's hash() is a UBIGINT spread evenly over this range (for distinct keys).
HASH_RANGE = (0, 2**64 - 1)


@dataclass(frozen=True)
class Source:
    """Rows to compare: a relation, a filter on it, its time column and a sampling key."""

    relation: str  # quoted table name
    where: str  # SQL condition over the relation (parameters in ``params``)
    params: dict[str, Any]
    ts: str  # quoted time column
    key: str  # SQL expression hashed for sampling
    rowid: bool = False  # the relation is a table (it has a rowid to sample by)


@dataclass(frozen=True)
class WindowBounds:
    """One window: its share of the time-ordered rows, its first and last timestamps."""

    name: str
    start_fraction: float
    end_fraction: float
    start: dt.datetime | None  # first timestamp in the window
    end: dt.datetime | None  # last timestamp in the window
    rows: int  # rows in the window
    sampled_rows: int  # rows compared (rows, or about max_rows_per_window when sampled)
    sample_method: str  # "all rows" or "hash(key, seed) <= quantile at cap/rows"


@dataclass(frozen=True)
class WindowPlan:
    total_rows: int
    historical: WindowBounds
    current: WindowBounds
    historical_sql: str  # predicate selecting the (sampled) historical rows
    current_sql: str
    params: dict[str, Any] = field(default_factory=dict)


def plan_windows(session: Session, source: Source, windows: WindowConfig) -> WindowPlan:
    """Three short SQL passes over the time column (and the key when sampling)."""
    ts, base = source.ts, f"({source.where}) AND {source.ts} IS NOT NULL"
    cuts = [windows.historical_start, windows.historical_end, 1.0 - windows.current_fraction]
    [(total,)] = session.fetchall(f"SELECT count(*) FROM {source.relation} WHERE {base}",
                                  source.params)
    if total == 0:
        empty = {HISTORICAL: (windows.historical_start, windows.historical_end),
                 CURRENT: (1.0 - windows.current_fraction, 1.0)}
        bounds = {name: WindowBounds(name, lo, hi, None, None, 0, 0, "all rows")
                  for name, (lo, hi) in empty.items()}
        return WindowPlan(0, bounds[HISTORICAL], bounds[CURRENT], "FALSE", "FALSE")
    quantiles = ranked_values(session, source.relation, base, source.params, ts, total,
                              [inverted_cdf_rank(q, total) for q in cuts], windows.seed,
                              pushdown=True, rowid=source.rowid)

    params: dict[str, Any] = {"h_hi": quantiles[1], "c_lo": quantiles[2]}
    historical = f"{ts} <= $h_hi"
    if windows.historical_start > 0:
        historical = f"{ts} > $h_lo AND {historical}"
        params["h_lo"] = quantiles[0]
    current = f"{ts} > $c_lo"

    # One branch per window, each a plain range on the time column that DuckDB pushes
    # into the scan (zone maps skip the rest): a third of one pass with FILTER aggregates.
    by_window = dict((row[0], row[1:]) for row in session.fetchall(
        f"SELECT 0, count(*), min({ts}), max({ts}) FROM {source.relation} "
        f"WHERE ({base}) AND {historical} UNION ALL "
        f"SELECT 1, count(*), min({ts}), max({ts}) FROM {source.relation} "
        f"WHERE ({base}) AND {current}", {**source.params, **params}))
    counted = (*by_window[0], *by_window[1])
    rows = {HISTORICAL: counted[0], CURRENT: counted[3]}
    cap = windows.max_rows_per_window
    predicates = {HISTORICAL: historical, CURRENT: current}
    methods = {HISTORICAL: "all rows", CURRENT: "all rows"}
    oversized = [name for name in (HISTORICAL, CURRENT) if rows[name] > cap]
    if oversized:
        hashed = f"hash({source.key}, $seed)"
        params["seed"] = windows.seed
        for name in oversized:
            [threshold] = ranked_values(
                session, source.relation, f"({base}) AND {predicates[name]}",
                {**source.params, **params}, hashed, rows[name], [cap], windows.seed,
                uniform=HASH_RANGE, rowid=source.rowid)
            params[f"{name}_threshold"] = threshold
            predicates[name] = f"{predicates[name]} AND {hashed} <= ${name}_threshold"
            methods[name] = (f"hash(key, seed={windows.seed}) <= its quantile at "
                             f"{cap}/{rows[name]}")

    historical_bounds = WindowBounds(HISTORICAL, windows.historical_start,
                                     windows.historical_end, counted[1], counted[2],
                                     rows[HISTORICAL], min(rows[HISTORICAL], cap),
                                     methods[HISTORICAL])
    current_bounds = WindowBounds(CURRENT, 1.0 - windows.current_fraction, 1.0, counted[4],
                                  counted[5], rows[CURRENT], min(rows[CURRENT], cap),
                                  methods[CURRENT])
    return WindowPlan(total, historical_bounds, current_bounds,
                      f"({base}) AND {predicates[HISTORICAL]}",
                      f"({base}) AND {predicates[CURRENT]}", params)


def inverted_cdf_rank(q: float, rows: int) -> int:
    """The 1-based rank of numpy's ``inverted_cdf`` quantile q (and DuckDB's
    ``quantile_disc``) among ``rows`` values: ⌈q·rows⌉, at least 1."""
    return min(max(math.ceil(q * rows), 1), rows)


def ranked_values(session: Session, relation: str, condition: str, params: dict[str, Any],
                  expr: str, rows: int, ranks: list[int], seed: int,
                  pushdown: bool = False, uniform: tuple[int, int] | None = None,
                  rowid: bool = False) -> list[Any]:
    """The values of ``expr`` at the given 1-based ranks among the ``rows`` rows meeting
    ``condition``: exact order statistics, in memory bounded by the constants above.

    Each rank lives in an interval of values (open at both ends, unbounded at first) whose
    row count and the count below it are known. A round guesses the value at the rank
    from a Bernoulli sample of the interval and counts the rows below and at the guess:
    either the guess is the answer (ties included) or the interval shrinks to one side
    of it, by a factor of about √GUESS_SAMPLE_ROWS. Once an interval holds at most
    EXACT_SELECTION_ROWS rows, a top-N from its nearer end selects the value. The first
    round is shared: one sample and one count pass serve every rank. With ``pushdown``
    (``expr`` a plain column) each count is its own UNION ALL branch whose range on the
    column DuckDB pushes into the scan: 12 ms instead of 33 ms for six guesses over 2M
    rows; a computed ``expr`` (a hash) is computed once a row and counted with
    ``count_if`` in one pass (a FILTER aggregate a guess computed it once a guess: 22
    against 8–12 ms over 2M rows).
    The branches count disjoint ranges (below the first guess, at it, between it and the
    next, …), so together they read the column once, where a count below each guess
    read it from its start (9 against 32 ms for six guesses over 10M rows in a run).

    With ``rowid`` (the relation is a table) a round's sample is the rows whose
    ``hash(rowid, seed)`` falls under the sampled fraction of its range: a Bernoulli
    sample as well, at half its cost (28 against 64 ms over 10M rows, where a random
    number a row is the most of it).

    With ``uniform`` (the integer range ``expr`` is spread evenly over, as a hash of
    distinct keys is), the first round guesses without a sample: the rank's share of that
    range, the spread that of the rank among all ``rows`` (a few thousand rows at 2M,
    straight to the top-N). Keys repeated over many rows make the guess miss; the sampled
    rounds then go on from the interval its counts left.
    """
    intervals = [_Interval(None, None, 0, rows) for _ in ranks]
    answers: list[Any] = [None] * len(ranks)
    pending = list(range(len(ranks)))
    for round_ in range(_MAX_ROUNDS):
        large = [i for i in pending if intervals[i].rows > EXACT_SELECTION_ROWS]
        if not large:
            break
        groups: dict[tuple[Any, Any], list[int]] = {}
        for i in large:
            groups.setdefault((intervals[i].lo, intervals[i].hi), []).append(i)
        for members in groups.values():
            interval = intervals[members[0]]
            where, bound = interval.predicate(condition, expr, params)
            # Two guesses per rank, about 4 standard errors of the sample quantile either
            # side of it: the rank almost always falls between them.
            prior = uniform if round_ == 0 else None
            sampled = interval.rows if prior else min(interval.rows, GUESS_SAMPLE_ROWS)
            levels = []
            for i in members:
                p = (ranks[i] - interval.below) / interval.rows
                spread = 4.0 * math.sqrt(p * (1.0 - p) / sampled) + 2.0 / sampled
                levels += [max(p - spread, 0.0), min(p + spread, 1.0)]
            if prior:
                low, high = prior
                guesses = [low + round(level * (high - low)) for level in levels]
            else:
                fraction = min(1.0, GUESS_SAMPLE_ROWS / interval.rows)
                if rowid:
                    sample = (f"SELECT {expr} AS v FROM {relation} WHERE {where} AND "
                              f"hash(rowid, $sample_seed) <= $sample_cut")
                    bound.update(sample_seed=int(seed) + round_,
                                 sample_cut=round(fraction * HASH_RANGE[1]))
                else:
                    sample = (f"SELECT {expr} AS v FROM {relation} WHERE {where} USING SAMPLE "
                              f"{100.0 * fraction!r}% (bernoulli, {int(seed) + round_})")
                [(guesses,)] = session.fetchall(
                    f"SELECT quantile_disc(v, $levels) FROM ({sample})",
                    {**bound, "levels": levels})
            if guesses is None:
                continue  # an empty sample: the top-N below takes the interval as it is
            guessed = {**bound, **{f"g{j}": g for j, g in enumerate(guesses)}}
            if pushdown:
                counted = _counts_by_ranges(session, relation, where, expr, guesses, bound)
            else:
                counts = ", ".join(f"count_if(v < $g{j}), count_if(v <= $g{j})"
                                   for j in range(len(guesses)))
                [counted] = session.fetchall(
                    f"SELECT {counts} FROM (SELECT {expr} AS v FROM {relation} "
                    f"WHERE {where})", guessed)
            for j, i in enumerate(members):
                low, high = guesses[2 * j], guesses[2 * j + 1]
                below_low, upto_low, below_high, upto_high = counted[4 * j:4 * j + 4]
                local = ranks[i] - interval.below
                if below_low < local <= upto_low:
                    answers[i] = low
                elif below_high < local <= upto_high:
                    answers[i] = high
                elif local <= below_low:
                    intervals[i] = _Interval(interval.lo, low, interval.below, below_low)
                elif local <= below_high:
                    intervals[i] = _Interval(low, high, interval.below + upto_low,
                                             below_high - upto_low)
                else:
                    intervals[i] = _Interval(high, interval.hi, interval.below + upto_high,
                                             interval.rows - upto_high)
                if answers[i] is not None:
                    pending.remove(i)
    for i in pending:
        interval = intervals[i]
        where, bound = interval.predicate(condition, expr, params)
        local = ranks[i] - interval.below
        if local <= interval.rows - local + 1:
            order, offset = "ASC", local - 1
        else:
            order, offset = "DESC", interval.rows - local
        [(answers[i],)] = session.fetchall(
            f"SELECT {expr} AS v FROM {relation} WHERE {where} ORDER BY v {order} "
            f"LIMIT 1 OFFSET {int(offset)}", bound)
    return answers


def _counts_by_ranges(session: Session, relation: str, where: str, expr: str,
                      guesses: list[Any], bound: dict[str, Any]) -> list[int]:
    """For each guess g, the rows below it and the rows up to it (``expr < g``,
    ``expr <= g``) among the rows meeting ``where``, from one count per disjoint range
    between the distinct guesses: each a range DuckDB pushes into the scan."""
    values = sorted(set(guesses))
    ranges = [f"{expr} < $v0"]
    for k, _ in enumerate(values):
        ranges.append(f"{expr} = $v{k}")
        if k + 1 < len(values):
            ranges.append(f"{expr} > $v{k} AND {expr} < $v{k + 1}")
    branches = " UNION ALL ".join(
        f"SELECT {r} AS r, count(*) FROM {relation} WHERE {where} AND {condition}"
        for r, condition in enumerate(ranges))
    counts = dict(session.fetchall(branches, {**bound, **{f"v{k}": v
                                                          for k, v in enumerate(values)}}))
    # Range 2k holds the rows between values[k - 1] and values[k]; 2k + 1 those at values[k].
    running = list(accumulate(counts[r] for r in range(len(ranges))))
    below_and_upto = {v: (running[2 * k], running[2 * k + 1]) for k, v in enumerate(values)}
    return [n for g in guesses for n in below_and_upto[g]]


@dataclass(frozen=True)
class _Interval:
    """Values strictly between lo and hi (None: unbounded); ``below`` rows lie under it."""

    lo: Any
    hi: Any
    below: int
    rows: int

    def predicate(self, condition: str, expr: str, params: dict[str, Any]
                  ) -> tuple[str, dict[str, Any]]:
        where, bound = f"({condition})", dict(params)
        if self.lo is not None:
            where += f" AND {expr} > $interval_lo"
            bound["interval_lo"] = self.lo
        if self.hi is not None:
            where += f" AND {expr} < $interval_hi"
            bound["interval_hi"] = self.hi
        return where, bound
