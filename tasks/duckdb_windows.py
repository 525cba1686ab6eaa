"""Window selection in SQL: timestamp quantiles cut a table's rows into the two windows.

``quantile_disc`` of the time column at 50%, 70% and 95% is one selection pass over a
single column (no sort of the table, no row numbers), and the windows become plain range
predicates on the time column that DuckDB's zone maps can skip row groups with. A window
over the row cap keeps the rows whose ``hash(key, seed)`` is at most the hash quantile at
cap / rows: exactly the cap (barring hash collisions), the same rows for the same seed,
and independent of physical row order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tasks.duckdb_access import Session
from tasks.duckdb_config import WindowConfig

HISTORICAL = "historical"
CURRENT = "current"


@dataclass(frozen=True)
class Source:
    """Rows to compare: a relation, a filter on it, its time column and a sampling key."""

    relation: str  # quoted table name
    where: str  # SQL condition over the relation (parameters in ``params``)
    params: dict[str, Any]
    ts: str  # quoted time column
    key: str  # SQL expression hashed for sampling


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
    total, quantiles = session.fetchall(
        f"SELECT count(*), quantile_disc({ts}, $cuts) FROM {source.relation} WHERE {base}",
        {**source.params, "cuts": cuts})[0]
    if total == 0:
        empty = {HISTORICAL: (windows.historical_start, windows.historical_end),
                 CURRENT: (1.0 - windows.current_fraction, 1.0)}
        bounds = {name: WindowBounds(name, lo, hi, None, None, 0, 0, "all rows")
                  for name, (lo, hi) in empty.items()}
        return WindowPlan(0, bounds[HISTORICAL], bounds[CURRENT], "FALSE", "FALSE")

    params: dict[str, Any] = {"h_hi": quantiles[1], "c_lo": quantiles[2]}
    historical = f"{ts} <= $h_hi"
    if windows.historical_start > 0:
        historical = f"{ts} > $h_lo AND {historical}"
        params["h_lo"] = quantiles[0]
    current = f"{ts} > $c_lo"

    counted = session.fetchall(
        f"SELECT count(*) FILTER (WHERE {historical}), min({ts}) FILTER (WHERE {historical}), "
        f"max({ts}) FILTER (WHERE {historical}), count(*) FILTER (WHERE {current}), "
        f"min({ts}) FILTER (WHERE {current}), max({ts}) FILTER (WHERE {current}) "
        f"FROM {source.relation} WHERE {base}", {**source.params, **params})[0]
    rows = {HISTORICAL: counted[0], CURRENT: counted[3]}
    cap = windows.max_rows_per_window
    predicates = {HISTORICAL: historical, CURRENT: current}
    methods = {HISTORICAL: "all rows", CURRENT: "all rows"}
    oversized = [name for name in (HISTORICAL, CURRENT) if rows[name] > cap]
    if oversized:
        hashed = f"hash({source.key}, $seed)"
        params["seed"] = windows.seed
        # (cap - 0.5) / rows keeps ceil(p · rows) at exactly cap despite rounding.
        selects = ", ".join(
            f"quantile_disc({hashed}, {(cap - 0.5) / rows[name]!r}) "
            f"FILTER (WHERE {predicates[name]})" for name in oversized)
        thresholds = session.fetchall(
            f"SELECT {selects} FROM {source.relation} WHERE {base}",
            {**source.params, **params})[0]
        for name, threshold in zip(oversized, thresholds, strict=True):
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
