"""Load numpy values into a PostgreSQL table fast (binary COPY), and the families of the
accuracy sweep (docs/statistics.md)."""

from __future__ import annotations

import numpy as np
import psycopg

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_ROW = np.dtype([("fields", ">i2"), ("length", ">i4"), ("value", ">f8")])


def load_values(pg: psycopg.Connection, table: str, values: np.ndarray) -> None:
    """(Re)create ``table (v float8)`` holding ``values`` in order."""
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(f"CREATE TABLE {table} (v float8)")
    rows = np.empty(values.size, dtype=_ROW)
    rows["fields"], rows["length"], rows["value"] = 1, 8, values
    with pg.cursor().copy(f"COPY {table} (v) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(_COPY_HEADER + rows.tobytes() + b"\xff\xff")
    pg.execute(f"ANALYZE {table}")


def family(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n values of one family of the sweep."""
    if name == "normal":
        return rng.normal(0.0, 1.0, n)
    if name == "lognormal(0,2)":
        return rng.lognormal(0.0, 2.0, n)
    if name == "mirrored lognormal":
        return -rng.lognormal(0.0, 2.0, n)
    if name == "40% zeros + gamma":
        return np.where(rng.random(n) < 0.4, 0.0, rng.gamma(0.5, 2.0, n))
    if name == "poisson(4)":
        return rng.poisson(4.0, n).astype(float)
    if name == "1e9 + N(0,1)":
        return 1e9 + rng.normal(0.0, 1.0, n)
    if name == "1e-9·N(0,1)":
        return 1e-9 * rng.normal(0.0, 1.0, n)
    if name == "bimodal":
        return np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 1.0, n))
    if name == "bimodal, deep valley":
        return np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 1.0, n))
    if name == "uniform":
        return rng.uniform(0.0, 1.0, n)
    if name == "constant":
        return np.full(n, 7.25)
    if name == "cauchy":
        return rng.standard_cauchy(n)
    if name == "pareto(1.5)":
        return rng.pareto(1.5, n)
    if name == "exponential":
        return rng.exponential(1.0, n)
    raise ValueError(name)


FAMILIES = ["normal", "lognormal(0,2)", "mirrored lognormal", "40% zeros + gamma",
            "poisson(4)", "1e9 + N(0,1)", "1e-9·N(0,1)", "bimodal", "bimodal, deep valley",
            "uniform", "constant", "cauchy", "pareto(1.5)", "exponential"]

# Exact quantiles at (i + 1/2)/1000 and 0.001, 0.999: where the CDF error is measured.
GRID_Q = np.concatenate([(np.arange(1000) + 0.5) / 1000.0, [0.001, 0.999]])


def max_cdf_error(cdf_at: np.ndarray, ordered: np.ndarray) -> float:
    """Largest |cdf(x) - exact rank| over the grid of exact quantiles of sorted values."""
    grid = np.quantile(ordered, GRID_Q, method="inverted_cdf")
    exact = np.searchsorted(ordered, grid, side="right") / ordered.size
    return float(np.max(np.abs(np.asarray(cdf_at(grid)) - exact)))
