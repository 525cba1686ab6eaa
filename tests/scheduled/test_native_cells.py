"""The engine's DuckDB cell aggregate (stat_guard/scheduled/native/stat_guard_cells.c).

It must give exactly the cells of the GROUP BY it replaces, and never crash DuckDB (the
drift worker's process) whatever it is given.
"""

from __future__ import annotations

import dataclasses
import math
import random
import struct

import duckdb
import numpy as np
import pytest

from stat_guard.scheduled import connection as connection_module
from stat_guard.scheduled.config import DriftRunConfig
from stat_guard.scheduled.engine import run_model_drift

NATIVE = connection_module.NATIVE_CELLS
pytestmark = pytest.mark.skipif(
    not NATIVE.exists(), reason=f"{NATIVE} not built (scripts/build_duckdb_cells.py)")

HEADER = struct.Struct("<qqq")
CELL = struct.Struct("<dqdd")


def _columns(rows: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    recent = np.arange(rows) >= int(rows * 0.95)
    normal = rng.normal(size=rows) + 0.3 * recent
    cauchy = rng.standard_cauchy(size=rows)
    ties = np.round(rng.exponential(3.0, size=rows))
    huge = rng.normal(size=rows) * 1e300
    gaps: list = list(rng.normal(50.0, 5.0, size=rows))
    for i in range(0, rows, 97):
        gaps[i] = None
    for i, special in zip(range(13, rows, 131), [math.nan, math.inf, -math.inf] * rows,
                          strict=False):
        gaps[i] = special
    spike = np.where(rng.random(rows) < 0.3, 7.25, rng.normal(7.25, 1e-9, size=rows))
    return {"normal": list(normal), "cauchy": list(cauchy), "ties": list(ties),
            "huge": list(huge), "gaps": gaps, "spike": list(spike),
            "constant": [3.0] * rows}


def _statements(monkeypatch) -> list[str]:
    seen: list[str] = []
    fetchall = connection_module.Session.fetchall

    def recording(self, sql, params=None, width=None):  # the real statement still runs
        seen.append(sql)
        return fetchall(self, sql, params, width)

    monkeypatch.setattr(connection_module.Session, "fetchall", recording)
    return seen


def test_native_cells_give_the_group_by_results(make_model, monkeypatch) -> None:
    # 50,000 rows: 10,000 / 2,500-row windows, above the by-value limit, so the grid is used.
    columns = _columns(50_000, seed=11)
    path = make_model(columns, list(columns))
    seen = _statements(monkeypatch)
    native = run_model_drift(path, "m", "native")
    assert any("stat_guard_cells(" in sql for sql in seen), "the aggregate was not used"
    seen.clear()
    grouped = run_model_drift(path, "m", "grouped",
                              config=DriftRunConfig(native_cells=False))
    assert not any("stat_guard_cells(" in sql for sql in seen)
    assert set(native.features) == set(columns)
    for name in columns:
        a = dataclasses.asdict(native.features[name])
        b = dataclasses.asdict(grouped.features[name])
        for key in a:
            if isinstance(a[key], float) and math.isnan(a[key]):
                assert isinstance(b[key], float) and math.isnan(b[key]), (name, key)
            else:
                assert a[key] == b[key], (name, key, a[key], b[key])
    assert native.verdict == grouped.verdict
    assert native.features["normal"].verdict != "ok"  # the 0.3σ shift is found either way


def test_an_extension_that_does_not_load_leaves_the_group_by(make_model, monkeypatch,
                                                              tmp_path, caplog) -> None:
    columns = _columns(50_000, seed=12)
    path = make_model({"normal": columns["normal"]}, ["normal"])
    expected = run_model_drift(path, "m", "before")
    broken = tmp_path / "broken.duckdb_extension"
    broken.write_bytes(b"not a shared library" * 64)
    monkeypatch.setattr(connection_module, "NATIVE_CELLS", broken)
    seen = _statements(monkeypatch)
    result = run_model_drift(path, "m", "after")
    assert not any("stat_guard_cells(" in sql for sql in seen)
    assert result.features["normal"].ks_statistic == expected.features["normal"].ks_statistic
    assert result.features["normal"].psi == expected.features["normal"].psi
    assert "counting cells with GROUP BY" in caplog.text


@pytest.fixture
def native_connection():
    connection = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": "1"})
    connection.execute(f"LOAD '{NATIVE}'")
    yield connection
    connection.close()


def _bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _grids(*grids: tuple[float, float, float]) -> str:
    return " ".join(str(_bits(value)) for grid in grids for value in grid)


def _key(x: float, origin: float, width: float, half: float) -> float:
    d = x * 0.5 - origin
    return float(math.ceil(d / (abs(d) + width) * half))


def _parts(blob: bytes, columns: int) -> list[tuple[int, int, int, list[tuple]]]:
    """The answer's parts: (nulls, nonfinite, cells, [(key, n, min, max), …]) a column."""
    parts, offset = [], 0
    for _ in range(columns):
        nulls, nonfinite, count = HEADER.unpack_from(blob, offset)
        offset += HEADER.size
        cells = list(CELL.iter_unpack(blob[offset:offset + max(count, 0) * CELL.size]))
        assert len(cells) == max(count, 0)
        offset += max(count, 0) * CELL.size
        parts.append((nulls, nonfinite, count, cells))
    assert offset == len(blob)
    return parts


def _check(part: tuple, xs: list, origin: float, width: float, half: float) -> None:
    nulls, nonfinite, count, cells = part
    usable = (math.isfinite(origin) and math.isfinite(width) and width > 0
              and 0.5 <= half <= 65536)
    if not usable:
        assert count == -1 and not cells
        return
    finite = [x for x in xs if x is not None and math.isfinite(x)]
    assert nulls == sum(1 for x in xs if x is None)
    assert nonfinite == len(xs) - nulls - len(finite)
    assert sum(n for _, n, _, _ in cells) == len(finite)
    keys = [k for k, _, _, _ in cells]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    expected: dict[float, list] = {}
    for x in finite:
        cell = expected.setdefault(_key(x, origin, width, half), [0, math.inf, -math.inf])
        cell[0] += 1
        cell[1] = min(cell[1], x)
        cell[2] = max(cell[2], x)
    assert {k: [n, lo, hi] for k, n, lo, hi in cells} == expected


def test_the_aggregate_counts_exactly_and_never_crashes(native_connection) -> None:
    """Random columns (special doubles among them) on random grids, usable or not, one to
    three columns a call: every column's cells equal a recount in Python."""
    rng = random.Random(5)
    specials = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -5e-324, 1.7976931348623157e308,
                -1.7976931348623157e308, 1e-300, 2.0 ** 53, None]
    params = [0.0, 1.0, -1.0, 0.5, 1e300, -1e300, math.nan, math.inf, -math.inf, 5e-324, 1e-300]
    halves = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 1070.5, 4096.0, 65536.0, 65536.5, 1e9, -3.0,
              math.nan, math.inf]

    def value() -> float | None:
        if rng.random() < 0.2:
            return rng.choice(specials)
        return rng.choice([rng.gauss(0, 1), rng.uniform(-1e6, 1e6), rng.lognormvariate(0, 5)])

    for _ in range(300):
        size = rng.choice([0, 1, 2, 17, 2048, 2049, 5000])
        columns = rng.choice([1, 1, 2, 3])
        data = [[value() for _ in range(size)] for _ in range(columns)]
        grids = [(rng.choice(params) if rng.random() < 0.5 else rng.gauss(0, 10),
                  rng.choice(params) if rng.random() < 0.5 else rng.uniform(0, 10),
                  rng.choice(halves)) for _ in range(columns)]
        names = ", ".join(f"x{c}" for c in range(columns))
        unnested = ", ".join(f"unnest($x{c}::DOUBLE[]) AS x{c}" for c in range(columns))
        [(blob,)] = native_connection.execute(
            f"SELECT stat_guard_cells($g, {names}) FROM (SELECT {unnested})",
            {"g": _grids(*grids), **{f"x{c}": data[c] for c in range(columns)}}).fetchall()
        parts = _parts(blob, columns)
        for c in range(columns):
            if size == 0:  # no row: nothing counted, whatever the grid
                assert parts[c] == (0, 0, 0, [])
            else:
                _check(parts[c], data[c], *grids[c])


def test_grids_it_cannot_read_give_null(native_connection) -> None:
    good = _grids((0.0, 1.0, 8.0))
    for grids in [None, "", "1 2", good + " 5", good + " x", "a b c", f"{good[:-1]}\x00",
                  "99999999999999999999 1 2", "1.5 2 3", good.replace(" ", ",")]:
        [(blob,)] = native_connection.execute(
            "SELECT stat_guard_cells($g, x) FROM (SELECT unnest([1.0, 2.0]::DOUBLE[]) AS x)",
            {"g": grids}).fetchall()
        assert blob is None, grids
    [(blob,)] = native_connection.execute(
        "SELECT stat_guard_cells($g, x) FROM (SELECT unnest([1.0, 2.0]::DOUBLE[]) AS x)",
        {"g": f"  {good}  "}).fetchall()
    assert _parts(blob, 1)[0][:3] == (0, 0, 2)


def test_arguments_that_change_or_are_null_give_null(native_connection) -> None:
    one, other = _grids((0.0, 1.0, 8.0)), _grids((1.0, 1.0, 8.0))
    rows = native_connection.execute(
        f"SELECT stat_guard_cells(CASE WHEN x > 100 THEN '{other}' ELSE '{one}' END, x), "
        f"stat_guard_cells(CASE WHEN x > 100 THEN NULL ELSE '{one}' END, x), "
        f"stat_guard_cells('{one}', x) "
        "FROM range(300) t(i), LATERAL (SELECT i::DOUBLE AS x)").fetchall()
    [(changing, null_grids, fine)] = rows
    assert changing is None and null_grids is None and fine is not None
    # Grouped: one state a group, each its own grid.
    grouped = native_connection.execute(
        "SELECT g, stat_guard_cells(CASE g WHEN 0 THEN $g0 WHEN 1 THEN $g1 ELSE $g2 END, x) "
        "FROM (SELECT i % 3 AS g, i::DOUBLE * 0.37::DOUBLE AS x FROM range(10000) t(i)) "
        "GROUP BY g ORDER BY g",
        {f"g{g}": _grids((float(g), 1.0, 64.0)) for g in range(3)}).fetchall()
    for g, blob in grouped:
        xs = [i * 0.37 for i in range(10000) if i % 3 == g]
        _check(_parts(blob, 1)[0], xs, float(g), 1.0, 64.0)


def _values(blob: bytes, columns: int) -> list[list[float]]:
    out, offset = [], 0
    for _ in range(columns):
        [count] = struct.unpack_from("<q", blob, offset)
        out.append(list(struct.unpack_from(f"<{count}d", blob, offset + 8)))
        offset += 8 + 8 * count
    assert offset == len(blob)
    return out


def test_first_rows_come_back_finite_and_sorted(native_connection) -> None:
    """stat_guard_values: each column's finite values, sorted; NULL, NaN and ±Inf left
    out; an empty input gives empty columns; grouped use keeps the groups apart."""
    rng = random.Random(9)
    specials = [math.nan, math.inf, -math.inf, None, -0.0, 5e-324, 1.7976931348623157e308]
    for _ in range(60):
        size = rng.choice([0, 1, 7, 2048, 2049, 6000])
        columns = rng.choice([1, 2, 5])
        data = [[rng.choice(specials) if rng.random() < 0.2 else rng.gauss(0, 1e3)
                 for _ in range(size)] for _ in range(columns)]
        names = ", ".join(f"x{c}" for c in range(columns))
        unnested = ", ".join(f"unnest($x{c}::DOUBLE[]) AS x{c}" for c in range(columns))
        [(blob,)] = native_connection.execute(
            f"SELECT stat_guard_values({names}) FROM (SELECT {unnested})",
            {f"x{c}": data[c] for c in range(columns)}).fetchall()
        got = _values(blob, columns)
        for c in range(columns):
            expected = sorted(x for x in data[c] if x is not None and math.isfinite(x))
            assert got[c] == expected
    grouped = native_connection.execute(
        "SELECT g, stat_guard_values(x) FROM (SELECT i % 3 AS g, (i * 7 % 101)::DOUBLE AS x "
        "FROM range(5000) t(i)) GROUP BY g ORDER BY g").fetchall()
    for g, blob in grouped:
        assert _values(blob, 1)[0] == sorted(float(i * 7 % 101) for i in range(5000)
                                             if i % 3 == g)


def _answer(parts: list[tuple[int, int, list[tuple]] | None]) -> bytes:
    """A stat_guard_cells answer: per column (nulls, nonfinite, cells) or None (refused)."""
    out = b""
    for part in parts:
        if part is None:
            out += HEADER.pack(0, 0, -1)
            continue
        nulls, nonfinite, cells = part
        out += HEADER.pack(nulls, nonfinite, len(cells))
        out += b"".join(CELL.pack(*cell) for cell in cells)
    return out


def test_merging_two_answers_equals_the_python_merge(native_connection) -> None:
    """stat_guard_merge joins two windows' answers exactly as _merge_windows joins the
    GROUP BY's rows, overlapping cells (a key that stepped back) included; a refused
    column stays refused; malformed answers give NULL, never a crash."""
    from stat_guard.scheduled.aggregates import (
        CURRENT,
        HISTORICAL,
        NATIVE_BOTH,
        NATIVE_MERGED,
        WindowCells,
        _merge_windows,
    )

    rng = random.Random(13)

    def window_cells() -> list[tuple]:
        cells, value = [], rng.uniform(-5, 5)
        for key in sorted(rng.sample(range(-300, 300), rng.randint(0, 40))):
            lo = value + rng.choice([rng.random(), -rng.random() * 0.5])  # may overlap
            hi = lo + rng.random() * rng.choice([0, 1])
            value = hi
            cells.append((float(key), rng.randint(1, 9), lo, hi))
        return cells

    for _ in range(300):
        columns = rng.randint(1, 4)
        parts = [[(rng.randint(0, 3), rng.randint(0, 3), window_cells())
                  if rng.random() > 0.1 else None for _ in range(columns)] for _ in range(2)]
        [(blob,)] = native_connection.execute(
            "SELECT stat_guard_merge($h, $c)",
            {"h": _answer(parts[0]), "c": _answer(parts[1])}).fetchall()
        offset = 0
        for h, c in zip(*parts, strict=True):
            h_nulls, h_nonfinite, c_nulls, c_nonfinite, count = NATIVE_MERGED.unpack_from(
                blob, offset)
            offset += NATIVE_MERGED.size
            if h is None or c is None:
                assert count == -1
                continue
            got = [list(cell) for cell in NATIVE_BOTH.iter_unpack(
                blob[offset:offset + count * NATIVE_BOTH.size])]
            offset += count * NATIVE_BOTH.size
            expected, side = _merge_windows({HISTORICAL: WindowCells(h[2], h[0], h[1]),
                                             CURRENT: WindowCells(c[2], c[0], c[1])})
            assert got == expected
            assert side == {HISTORICAL: (h_nulls, h_nonfinite), CURRENT: (c_nulls, c_nonfinite)}
        assert offset == len(blob)
    good = _answer([(0, 0, [(1.0, 2, 0.5, 0.7)])])
    for historical, current in [(None, good), (good, None), (good[:-1], good), (good, b""),
                                (good + good, good), (HEADER.pack(0, 0, -2), good),
                                (HEADER.pack(0, 0, 2**62) + good[24:], good),
                                (bytes(rng.randrange(256) for _ in range(61)), good)]:
        [(blob,)] = native_connection.execute("SELECT stat_guard_merge($h, $c)",
                                              {"h": historical, "c": current}).fetchall()
        assert blob is None
    for _ in range(500):  # random bytes either side: an answer or NULL, never a crash
        noise = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 24, 56, 88, 200])))
                 for _ in range(2)]
        native_connection.execute("SELECT stat_guard_merge($h, $c)",
                                  {"h": noise[0], "c": noise[1]}).fetchall()
