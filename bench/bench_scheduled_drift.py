"""Scheduled drift over DuckDB: the SQL-aggregate engine against pulling rows out.

One model, 20 numeric features (two with a 0.5σ mean shift in the newest 5%), at 1M and
10M rows. Variants, each in its own subprocess so peak memory is the child's VmHWM (peak
resident set: Python heap, numpy, pandas and DuckDB's native memory together):

- engine:    stat_guard.scheduled.engine.run_model_drift (1 DuckDB thread, 16 MB limit, windows
             capped at 500,000 rows, every statistic, written back to DuckDB);
- naive:     the same windows pulled whole into numpy (fetchnumpy), scipy ks_2samp and
             numpy decile histograms for PSI;
- evidently: the windows pulled into pandas and Evidently's DataDriftPreset, on the full
             windows where it fits and on a 500,000-row reservoir sample per window above.

Bytes pulled out of DuckDB: the engine counts every result set it fetches; the others
sum the nbytes of the arrays / data frames they fetched. Usage:

    .venv/bin/python bench/bench_scheduled_drift.py [--rows 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = [f"f{i:02d}" for i in range(20)]
DRIFTED = ("f03", "f11")
EVIDENTLY_FULL_LIMIT = 500_000  # rows per window Evidently gets in full; above, a sample


def generate(db_path: str, rows: int) -> float:
    """20 numeric features, rows spread over 90 days, a 0.5σ shift in two of them."""
    import duckdb

    started = time.perf_counter()
    columns = []
    for i, name in enumerate(FEATURES):
        shift = "CASE WHEN recent THEN 0.5 ELSE 0 END" if name in DRIFTED else "0"
        spread = 1 + i % 5
        gauss = "sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"
        columns.append(f"{i * 10} + {spread} * ({gauss} + {shift}) AS {name}")
    step_us = 90 * 86_400_000_000 // rows
    connection = duckdb.connect(db_path, config={"threads": 2})
    try:
        from stat_guard.scheduled.connection import Session
        from stat_guard.scheduled.schema import apply_schema

        apply_schema(Session(connection))
        connection.execute(
            f"CREATE TABLE features_bench AS SELECT i AS entity_id, "
            f"TIMESTAMP '2025-01-01' + to_microseconds(i * {step_us}) AS ts, "
            f"{', '.join(columns)} FROM (SELECT i, i >= {int(rows * 0.95)} AS recent "
            f"FROM range({rows}) r(i))")
        connection.execute(
            "INSERT INTO model_metadata (name, status, features, categorical_features, "
            "feature_table) VALUES ('bench', 'production', $f, [], 'features_bench')",
            {"f": FEATURES})
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    return time.perf_counter() - started


def _window_bounds(connection):
    _, cuts = connection.execute(
        "SELECT count(*), quantile_disc(ts, [0.5, 0.7, 0.95]) FROM features_bench").fetchone()
    return cuts


def run_engine(db_path: str) -> dict:
    from stat_guard.scheduled.engine import run_model_drift

    result = run_model_drift(db_path, "bench", f"bench-{time.time_ns()}")
    found = sorted(n for n, f in result.features.items() if f.verdict in {"warning", "drift"})
    return {"bytes_fetched": result.bytes_fetched, "found": found,
            "rows_compared": [result.historical_window.sampled_rows,
                              result.current_window.sampled_rows],
            "read_lock_s": round(result.read_lock_s, 3),
            "write_lock_s": round(result.write_lock_s, 3),
            "ks_error_bound": result.ks_error_bound}


def run_naive(db_path: str) -> dict:
    import duckdb
    import numpy as np
    from scipy import stats as ss

    from stat_guard import counts

    connection = duckdb.connect(db_path, read_only=True)
    try:
        h_lo, h_hi, c_lo = _window_bounds(connection)
        select = ", ".join(FEATURES)
        historical = connection.execute(
            f"SELECT {select} FROM features_bench WHERE ts > ? AND ts <= ?",
            [h_lo, h_hi]).fetchnumpy()
        current = connection.execute(
            f"SELECT {select} FROM features_bench WHERE ts > ?", [c_lo]).fetchnumpy()
    finally:
        connection.close()
    fetched = sum(v.nbytes for v in historical.values()) + sum(v.nbytes for v in current.values())
    found = []
    for name in FEATURES:
        b, c = np.asarray(historical[name], float), np.asarray(current[name], float)
        ks = ss.ks_2samp(b, c)
        edges = np.quantile(b, np.arange(1, 10) / 10, method="inverted_cdf")
        counts_b = np.histogram(b, np.concatenate(([-np.inf], edges, [np.inf])))[0]
        counts_c = np.histogram(c, np.concatenate(([-np.inf], edges, [np.inf])))[0]
        psi = counts.psi_from_counts(counts_b, counts_c)
        if psi >= 0.1 or (ks.pvalue < 0.05 and ks.statistic > 0.1):
            found.append(name)
    return {"bytes_fetched": int(fetched), "found": found,
            "rows_compared": [len(historical[FEATURES[0]]), len(current[FEATURES[0]])]}


def run_evidently(db_path: str) -> dict:
    import duckdb
    from evidently import Report
    from evidently.presets import DataDriftPreset

    connection = duckdb.connect(db_path, read_only=True)
    try:
        h_lo, h_hi, c_lo = _window_bounds(connection)
        select = ", ".join(FEATURES)
        sample = f"USING SAMPLE reservoir({EVIDENTLY_FULL_LIMIT} ROWS) REPEATABLE (1)"
        reference = connection.execute(
            f"SELECT {select} FROM (SELECT * FROM features_bench WHERE ts > ? AND ts <= ?) "
            f"{sample}", [h_lo, h_hi]).df()
        current = connection.execute(
            f"SELECT {select} FROM (SELECT * FROM features_bench WHERE ts > ?) {sample}",
            [c_lo]).df()
    finally:
        connection.close()
    fetched = int(reference.memory_usage(index=False).sum()
                  + current.memory_usage(index=False).sum())
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    payload = snapshot.dict()
    found = sorted({metric["config"]["column"] for metric in payload.get("metrics", [])
                    if metric.get("config", {}).get("column") in FEATURES
                    and _drift_detected(metric)})
    return {"bytes_fetched": fetched, "found": found,
            "rows_compared": [len(reference), len(current)]}


def _drift_detected(metric: dict) -> bool:
    """Evidently 0.7: a per-column ValueDrift metric whose value is past its threshold."""
    config = metric.get("config", {})
    value = metric.get("value")
    threshold = config.get("threshold")
    if not isinstance(value, int | float) or threshold is None:
        return False
    method = str(config.get("method", ""))
    return value < threshold if "p_value" in method else value >= threshold


VARIANTS = {"engine": run_engine, "naive": run_naive, "evidently": run_evidently}


def child(variant: str, db_path: str) -> None:
    started = time.perf_counter()
    figures = VARIANTS[variant](db_path)
    figures["wall_s"] = round(time.perf_counter() - started, 3)
    figures["peak_rss_mb"] = round(_peak_rss_kb() / 1024, 1)
    print(json.dumps(figures))


def _peak_rss_kb() -> int:
    """VmHWM: this process's peak resident set (ru_maxrss would carry the parent's
    high-water mark across fork and exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(variant: str, db_path: str) -> dict:
    process = subprocess.run([sys.executable, __file__, "--variant", variant, "--db", db_path],
                             capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if process.returncode != 0:
        return {"error": process.stderr.strip().splitlines()[-1][:300]}
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant == "generate":
        print(generate(args.db, args.rows[0]))
        return
    if args.variant:
        child(args.variant, args.db)
        return

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as workdir:
        for rows in args.rows:
            db_path = os.path.join(workdir, f"bench_{rows}.duckdb")
            # Generated in a child too, so this process stays small.
            generation_s = float(subprocess.run(
                [sys.executable, __file__, "--variant", "generate", "--db", db_path,
                 "--rows", str(rows)], capture_output=True, text=True, check=True,
                cwd=ROOT).stdout.strip().splitlines()[-1])
            figures = {"generate_s": round(generation_s, 2)}
            for variant in args.variants:
                figures[variant] = measure(variant, db_path)
            results[rows] = figures
            os.remove(db_path)

    print(f"\nScheduled drift, one model, 20 numeric features (drift injected in "
          f"{', '.join(DRIFTED)}), historical 50–70% vs current newest 5%")
    header = f"{'rows':>11} {'variant':>10} {'wall s':>8} {'peak MB':>8} {'MB pulled':>10} " \
             f"{'rows compared (hist/cur)':>25}  found"
    print(header)
    print("-" * len(header))
    for rows, figures in results.items():
        for variant in args.variants:
            f = figures[variant]
            if "error" in f:
                print(f"{rows:>11,} {variant:>10}  failed: {f['error']}")
                continue
            compared = "/".join(f"{n:,}" for n in f["rows_compared"])
            print(f"{rows:>11,} {variant:>10} {f['wall_s']:>8.2f} {f['peak_rss_mb']:>8.0f} "
                  f"{f['bytes_fetched'] / 1e6:>10.2f} {compared:>25}  {','.join(f['found'])}")
        print(f"{'':>11} {'(generate':>10} {figures['generate_s']:>8.2f} s in DuckDB SQL)")
    summary = {}
    for rows, figures in results.items():
        engine, evidently = figures.get("engine", {}), figures.get("evidently", {})
        if "wall_s" in engine and "wall_s" in evidently:
            summary[rows] = {
                "speedup_vs_evidently": round(evidently["wall_s"] / engine["wall_s"], 1),
                "memory_fraction_of_evidently": round(
                    engine["peak_rss_mb"] / evidently["peak_rss_mb"], 3)}
    print(json.dumps({"benchmark": "scheduled_drift", "results": results,
                      "summary": summary}, default=str))


if __name__ == "__main__":
    main()
