"""Benchmark the pg_stat_guard aggregate against sum(), the tdigest extension and exact percentiles.

Builds a 10-million-row lognormal table inside PostgreSQL, then times, serially and with
two parallel workers, in interleaved repetitions:

    sum(value)                     the floor: the cheapest aggregate over the same scan
    tdigest_agg(value)             ours, default compression
    peer.tdigest(value, 100)       tvondra's tdigest extension (installed in schema "peer")
    percentile_cont(0.5)           exact median (sorts every row)

It reports each time as a ratio to sum(value), the serialized digest sizes, and the maximum
absolute rank (CDF) error of both digests against the exact distribution over 1,000 grid
points plus q = 0.001 and 0.999.  The last line printed is one JSON object with every figure.

Usage:  python bench/bench_extension.py [--rows 10000000] [--reps 5] [--dsn ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import psycopg

TABLE = "psg_bench_values"
PEER_SCHEMA = "peer"
PEER_COMPRESSION = 100
SWEEP = (100, 150, 200, 300)


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_extensions(conn: psycopg.Connection) -> str:
    """Create ours and the peer; return the schema that holds the peer's functions."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_guard")
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'tdigest'").fetchone()
    if row is None:
        # Both extensions define a type named tdigest: the peer gets a schema of its own.
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PEER_SCHEMA}")
        conn.execute(f"CREATE EXTENSION tdigest SCHEMA {PEER_SCHEMA}")
        return PEER_SCHEMA
    return row[0]


def ensure_table(conn: psycopg.Connection, rows: int) -> None:
    have = conn.execute(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c "
        "WHERE c.relname = %s AND c.relkind = 'r'", [TABLE]).fetchone()
    tag = f"lognormal mu=4 sigma=0.5 rows={rows} seed=0.42"
    if have is not None and have[0] == tag:
        log(f"table {TABLE} already holds {rows:,} rows")
        return
    log(f"building {TABLE}: {rows:,} lognormal(4, 0.5) rows (Box-Muller) ...")
    start = time.perf_counter()
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute("SELECT setseed(0.42)")
    conn.execute(
        f"CREATE TABLE {TABLE} AS SELECT exp(4.0 + 0.5 * sqrt(-2.0 * ln(1.0 - random())) "
        f"* cos(2.0 * pi() * random()))::float8 AS value FROM generate_series(1, %s)", [rows])
    conn.execute(f"VACUUM ANALYZE {TABLE}")
    conn.execute(f"COMMENT ON TABLE {TABLE} IS '{tag}'")
    log(f"  built in {time.perf_counter() - start:.1f} s")


def load_sorted_column(conn: psycopg.Connection) -> np.ndarray:
    """All values, sorted, through COPY BINARY (14 bytes per row after a 19-byte header)."""
    chunks = []
    with conn.cursor().copy(f"COPY {TABLE} (value) TO STDOUT (FORMAT binary)") as copy:
        for chunk in copy:
            chunks.append(bytes(chunk))
    raw = b"".join(chunks)
    body = raw[19:-2]  # header; trailer is int16 -1
    rows = np.frombuffer(body, dtype=np.dtype([("n", ">i2"), ("len", ">i4"), ("v", ">f8")]))
    assert np.all(rows["n"] == 1) and np.all(rows["len"] == 8)
    return np.sort(rows["v"].astype(np.float64))


def timed(conn: psycopg.Connection, sql: str) -> float:
    start = time.perf_counter()
    conn.execute(sql).fetchall()
    return time.perf_counter() - start


def plan_is_parallel(conn: psycopg.Connection, sql: str) -> bool:
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql).fetchall())
    return "Gather" in plan and "Partial Aggregate" in plan


def rank_errors(cdf_at_grid: np.ndarray, quantiles_at_grid: np.ndarray | None,
                grid_x: np.ndarray, grid_q: np.ndarray, values: np.ndarray) -> dict:
    n = values.size
    exact_cdf = np.searchsorted(values, grid_x, side="right") / n
    out = {"max_cdf_rank_error": float(np.max(np.abs(cdf_at_grid - exact_cdf)))}
    if quantiles_at_grid is not None:
        got_rank = np.searchsorted(values, quantiles_at_grid, side="right") / n
        out["max_quantile_rank_error"] = float(np.max(np.abs(got_rank - grid_q)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default=os.environ.get(
        "PSG_TEST_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"))
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    conn = psycopg.connect(args.dsn, autocommit=True)
    # No server-side prepared statements: a cached plan would ignore the worker setting.
    conn.prepare_threshold = None
    peer = ensure_extensions(conn)
    ensure_table(conn, args.rows)
    version = conn.execute("SHOW server_version").fetchone()[0]
    default_compression = conn.execute(
        "SELECT tdigest_compression(tdigest_agg(1.0::float8))").fetchone()[0]

    queries = {
        "sum": f"SELECT sum(value) FROM {TABLE}",
        "tdigest_agg": f"SELECT tdigest_agg(value) IS NOT NULL FROM {TABLE}",
        "peer_tdigest": f"SELECT {peer}.tdigest(value, {PEER_COMPRESSION}) IS NOT NULL "
                        f"FROM {TABLE}",
        "percentile_cont": f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) "
                           f"FROM {TABLE}",
    }
    modes = {"serial": 0, "parallel": 2}

    conn.execute("SET max_parallel_workers_per_gather = 2")
    for name in ("sum", "tdigest_agg", "peer_tdigest"):
        log(f"plan with 2 workers for {name}: "
            f"{'parallel' if plan_is_parallel(conn, queries[name]) else 'SERIAL'}")

    log(f"warming up (PostgreSQL {version}, {args.reps} interleaved repetitions) ...")
    conn.execute("SET max_parallel_workers_per_gather = 0")
    timed(conn, queries["sum"])
    times: dict[str, dict[str, list[float]]] = {m: {q: [] for q in queries} for m in modes}
    for rep in range(args.reps):
        for mode, workers in modes.items():
            conn.execute(f"SET max_parallel_workers_per_gather = {workers}")
            for name, sql in queries.items():
                times[mode][name].append(timed(conn, sql))
        log(f"  repetition {rep + 1}/{args.reps}: " + ", ".join(
            f"{m}/{q} {times[m][q][-1]:.3f}s" for m in modes for q in ("sum", "tdigest_agg")))

    median = {m: {q: statistics.median(v) for q, v in times[m].items()} for m in modes}
    best = {m: {q: min(v) for q, v in times[m].items()} for m in modes}
    ratio = {m: {q: median[m][q] / median[m]["sum"] for q in queries} for m in modes}
    speedup = {q: median["serial"][q] / median["parallel"][q] for q in queries}

    log("accuracy: loading the sorted column for exact ranks ...")
    values = load_sorted_column(conn)
    grid_q = np.concatenate([(np.arange(1000) + 0.5) / 1000.0, [0.001, 0.999]])
    grid_x = np.quantile(values, grid_q, method="inverted_cdf")

    conn.execute("SET max_parallel_workers_per_gather = 0")
    accuracy: dict[str, dict] = {}
    ours_sql = (f"SELECT length(tdigest_send(d)), tdigest_centroid_count(d), "
                f"tdigest_cdf(d, %s::float8[]), tdigest_quantile(d, %s::float8[]) "
                f"FROM (SELECT tdigest_agg(value{{}}) AS d FROM {TABLE}) s")
    for label, extra in [("tdigest_agg", "")] + [(f"tdigest_agg_{c}", f", {c}") for c in SWEEP]:
        size, centroids, cdf, qs = conn.execute(
            ours_sql.format(extra), [grid_x.tolist(), grid_q.tolist()]).fetchone()
        accuracy[label] = {"bytes": size, "centroids": centroids,
                           **rank_errors(np.array(cdf), np.array(qs), grid_x, grid_q, values)}
    conn.execute("SET max_parallel_workers_per_gather = 2")
    size, cdf = conn.execute(
        f"SELECT length(tdigest_send(d)), tdigest_cdf(d, %s::float8[]) "
        f"FROM (SELECT tdigest_agg(value) AS d FROM {TABLE}) s", [grid_x.tolist()]).fetchone()
    accuracy["tdigest_agg_parallel"] = {
        "bytes": size, **rank_errors(np.array(cdf), None, grid_x, grid_q, values)}
    for mode, workers in modes.items():
        conn.execute(f"SET max_parallel_workers_per_gather = {workers}")
        size, cdf, qs = conn.execute(
            f"WITH p AS MATERIALIZED (SELECT {peer}.tdigest(value, {PEER_COMPRESSION}) AS d "
            f"FROM {TABLE}) "
            f"SELECT (SELECT length({peer}.tdigest_send(d)) FROM p), "
            f"(SELECT {peer}.tdigest_percentile_of(d, %s::float8[]) FROM p), "
            f"(SELECT {peer}.tdigest_percentile(d, %s::float8[]) FROM p)",
            [grid_x.tolist(), grid_q.tolist()]).fetchone()
        label = "peer_tdigest" if mode == "serial" else "peer_tdigest_parallel"
        accuracy[label] = {"bytes": size,
                           **rank_errors(np.array(cdf), np.array(qs), grid_x, grid_q, values)}

    log("")
    log(f"{'query':<18}{'serial s':>10}{'x sum':>8}{'parallel s':>12}{'x sum':>8}"
        f"{'speedup':>9}")
    for q in queries:
        log(f"{q:<18}{median['serial'][q]:>10.3f}{ratio['serial'][q]:>8.2f}"
            f"{median['parallel'][q]:>12.3f}{ratio['parallel'][q]:>8.2f}{speedup[q]:>9.2f}")
    log("")
    log(f"{'digest':<24}{'bytes':>7}{'centroids':>11}{'max cdf rank err':>18}"
        f"{'max quantile rank err':>23}")
    for label, a in accuracy.items():
        qerr = a.get("max_quantile_rank_error")
        log(f"{label:<24}{a['bytes']:>7}{a.get('centroids', ''):>11}"
            f"{a['max_cdf_rank_error']:>18.6f}{'' if qerr is None else f'{qerr:.6f}':>23}")

    ours, theirs = accuracy["tdigest_agg"], accuracy["peer_tdigest"]
    checks = {
        "serial_tdigest_agg_within_1_5x_sum": ratio["serial"]["tdigest_agg"] <= 1.5,
        "at_least_2x_faster_than_peer":
            median["serial"]["peer_tdigest"] / median["serial"]["tdigest_agg"] >= 2.0,
        "rank_error_no_worse_than_peer_at_no_larger_size":
            ours["max_cdf_rank_error"] <= theirs["max_cdf_rank_error"]
            and ours["bytes"] <= theirs["bytes"],
        "parallel_speedup_at_least_80pct_of_sum":
            speedup["tdigest_agg"] >= 0.8 * speedup["sum"],
    }
    log("")
    for name, ok in checks.items():
        log(f"{'PASS' if ok else 'FAIL'}  {name}")

    result = {
        "benchmark": "bench_extension",
        "server_version": version,
        "rows": args.rows,
        "reps": args.reps,
        "distribution": "lognormal(mu=4, sigma=0.5)",
        "default_compression": default_compression,
        "peer_compression": PEER_COMPRESSION,
        "median_seconds": median,
        "best_seconds": best,
        "ratio_to_sum": ratio,
        "parallel_speedup": speedup,
        "speed_vs_peer_serial": median["serial"]["peer_tdigest"] / median["serial"]["tdigest_agg"],
        "accuracy": accuracy,
        "checks": checks,
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
