"""Scheduled drift over DuckDB: the SQL-aggregate engine against pulling rows out.

One model, 20 numeric features (two with a 0.5σ mean shift in the newest 5%), at 1M and
10M rows. Variants, each in its own subprocess so peak memory is the child's VmHWM (peak
resident set: Python heap, numpy, pandas and DuckDB's native memory together). Each child
runs its variant ``--rounds`` times (3) and reports the median run's time and CPU seconds
(user + system of the whole process, every thread, during the run), and the first run's
time apart: a drift worker is a long-lived process, and the first run in a new process
also pays for loading code (DuckDB's operators, the aggregate's library) once.

- floor:     the scan floor: SELECT count(*), sum(f00), …, sum(f19) over exactly the rows
             the engine compares (its window plan, row caps included; 1 DuckDB thread,
             16 MB), one statement per window; its time is these two statements only,
             and every variant is also given as a ratio to it;
- engine:    stat_guard.scheduled.engine.run_model_drift (1 DuckDB thread, 16 MB limit, windows
             capped at 500,000 rows, every statistic, written back to DuckDB);
- naive:     the same windows pulled whole into numpy (fetchnumpy), scipy ks_2samp and
             numpy decile histograms for PSI;
- evidently: the windows pulled into pandas and Evidently's DataDriftPreset, on the full
             windows where it fits and on a 500,000-row reservoir sample per window above.

Bytes pulled out of DuckDB: the engine counts every result set it fetches; the others
sum the nbytes of the arrays / data frames they fetched. Usage:

    .venv/bin/python bench/bench_scheduled_drift.py [--rows 1000000 10000000]
        [--variants floor engine naive evidently] [--no-evidently] [--models 100]

``--models N`` adds a fleet case: N models sharing the one feature table (each with the
same 20 features), in one process, as a drift worker would: one after another with
``run_model_drift``, and as batches with ``run_models_drift``, grouped as the hourly
schedule groups them (``production_model_groups``, at most ``drift.batch_max_models`` a
batch); each with total CPU seconds, wall time and peak memory (each in its own child),
and the ratio between them.
"""

from __future__ import annotations

import argparse
import json
import math
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


def run_floor(db_path: str) -> dict:
    """Sums of every feature over the engine's own windows: the cost of one scan (the two
    statements only; the plan that gives their windows is not timed)."""
    from stat_guard.scheduled.config import DriftRunConfig
    from stat_guard.scheduled.connection import open_duckdb
    from stat_guard.scheduled.windows import Source, plan_windows

    config = DriftRunConfig()
    with open_duckdb(db_path, config, read_only=True) as session:
        source = Source(relation="features_bench", where="TRUE", params={}, ts="ts",
                        key="entity_id")
        plan = plan_windows(session, source, config.windows)
        sums = ", ".join(f"sum({name})" for name in FEATURES)
        started, cpu = time.perf_counter(), _cpu_s()
        rows = [session.fetchall(f"SELECT count(*), {sums} FROM features_bench "
                                 f"WHERE {predicate}", plan.params)[0][0]
                for predicate in (plan.historical_sql, plan.current_sql)]
        return {"bytes_fetched": 8 * 21 * 2, "found": [], "rows_compared": rows,
                "work_s": time.perf_counter() - started, "run_cpu_s": _cpu_s() - cpu}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_engine(db_path: str) -> dict:
    from stat_guard.scheduled.engine import run_model_drift

    started, cpu = time.perf_counter(), _cpu_s()
    result = run_model_drift(db_path, "bench", f"bench-{time.time_ns()}")
    work_s, run_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    found = sorted(n for n, f in result.features.items() if f.verdict in {"warning", "drift"})
    return {"bytes_fetched": result.bytes_fetched, "found": found,
            "rows_compared": [result.historical_window.sampled_rows,
                              result.current_window.sampled_rows],
            "read_lock_s": round(result.read_lock_s, 3),
            "write_lock_s": round(result.write_lock_s, 3),
            "ks_error_bound": result.ks_error_bound, "work_s": work_s,
            "run_cpu_s": run_cpu_s}


def run_naive(db_path: str) -> dict:
    import duckdb
    import numpy as np
    from scipy import stats as ss

    from stat_guard import counts

    started, cpu = time.perf_counter(), _cpu_s()
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
            "rows_compared": [len(historical[FEATURES[0]]), len(current[FEATURES[0]])],
            "work_s": time.perf_counter() - started, "run_cpu_s": _cpu_s() - cpu}


def run_evidently(db_path: str) -> dict:
    import duckdb
    from evidently import Report
    from evidently.presets import DataDriftPreset

    started, cpu = time.perf_counter(), _cpu_s()
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
            "rows_compared": [len(reference), len(current)],
            "work_s": time.perf_counter() - started, "run_cpu_s": _cpu_s() - cpu}


def _drift_detected(metric: dict) -> bool:
    """Evidently 0.7: a per-column ValueDrift metric whose value is past its threshold."""
    config = metric.get("config", {})
    value = metric.get("value")
    threshold = config.get("threshold")
    if not isinstance(value, int | float) or threshold is None:
        return False
    method = str(config.get("method", ""))
    return value < threshold if "p_value" in method else value >= threshold


def run_models(db_path: str) -> dict:
    """N models on the one feature table, run one after another in this process."""
    from stat_guard.scheduled.engine import run_model_drift

    models = _model_names(db_path)
    started, cpu = time.perf_counter(), _cpu_s()
    found: set[str] = set()
    for model in models:
        _flagged(run_model_drift(db_path, model, f"fleet-{time.time_ns()}"), found)
    return _fleet_figures(found, len(models), started, cpu)


def _flagged(result, found: set[str]) -> None:
    """Add the run's drifted features to ``found`` (the result itself is not kept)."""
    found.update(n for n, f in result.features.items() if f.verdict in {"warning", "drift"})


def _fleet_figures(found: set[str], runs: int, started: float, cpu: float, **extra) -> dict:
    """What the many-models cases print: features found, runs, wall and CPU seconds."""
    wall = round(time.perf_counter() - started, 3)
    return {"bytes_fetched": 0, "found": sorted(found), "rows_compared": [runs, 0],
            **extra, "runs_wall_s": wall, "work_s": wall,
            "runs_cpu_s": round(_cpu_s() - cpu, 3)}


def run_batches(db_path: str) -> dict:
    """The same N models as batches, grouped as the hourly schedule groups them."""
    from stat_guard.scheduled.engine import (
        ModelDriftResult,
        production_model_groups,
        run_models_drift,
    )
    from workers.config import DriftConfig

    started, cpu = time.perf_counter(), _cpu_s()
    fleet = set(_model_names(db_path))
    groups = [[m for m in group if m in fleet] for group in production_model_groups(
        db_path, status="staging", max_models=DriftConfig().batch_max_models)]
    groups = [group for group in groups if group]
    found: set[str] = set()
    for group in groups:
        stamp = time.time_ns()
        for result in run_models_drift(db_path, [(m, f"fleet-{stamp}-{m}") for m in group]):
            if not isinstance(result, ModelDriftResult):
                raise result
            _flagged(result, found)
    return _fleet_figures(found, sum(len(group) for group in groups), started, cpu,
                          batches=[len(group) for group in groups])


def _model_names(db_path: str) -> list[str]:
    import duckdb

    connection = duckdb.connect(db_path, read_only=True)
    try:
        return [r[0] for r in connection.execute(
            "SELECT name FROM model_metadata WHERE name LIKE 'fleet%' ORDER BY name").fetchall()]
    finally:
        connection.close()


def add_models(db_path: str, count: int) -> None:
    import duckdb

    connection = duckdb.connect(db_path)
    try:
        connection.executemany(
            "INSERT INTO model_metadata (name, status, features, categorical_features, "
            "feature_table) VALUES (?, 'staging', ?, [], 'features_bench')",
            [(f"fleet{i:03d}", FEATURES) for i in range(count)])
        connection.execute("CHECKPOINT")
    finally:
        connection.close()


VARIANTS = {"floor": run_floor, "engine": run_engine, "naive": run_naive,
            "evidently": run_evidently, "models": run_models, "batches": run_batches}
FLEET_VARIANTS = ("models", "batches")


def child(variant: str, db_path: str, rounds: int) -> None:
    """The variant ``rounds`` times in this process (the fleet cases once): its median
    work and CPU seconds a run, and the first run's apart (it also pays for loading code
    a long-lived worker loads once)."""
    started = time.perf_counter()
    runs = [VARIANTS[variant](db_path)
            for _ in range(1 if variant in FLEET_VARIANTS else rounds)]
    figures = runs[len(runs) // 2] if len(runs) % 2 else runs[-1]
    if variant not in FLEET_VARIANTS:
        works = sorted(run["work_s"] for run in runs)
        cpus = sorted(run["run_cpu_s"] for run in runs)
        figures.update(work_s=round(works[len(works) // 2], 4),
                       run_cpu_s=round(cpus[len(cpus) // 2], 4),
                       first_s=round(runs[0]["work_s"], 4), rounds=len(runs))
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


def measure(variant: str, db_path: str, rounds: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.run([sys.executable, __file__, "--variant", variant, "--db", db_path,
                              "--rounds", str(rounds)],
                             capture_output=True, text=True, timeout=7200, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        return {"error": process.stderr.strip().splitlines()[-1][:300]}
    figures = json.loads(process.stdout.strip().splitlines()[-1])
    # The child's own CPU seconds, imports and interpreter start included.
    figures["cpu_s"] = round(after.ru_utime + after.ru_stime
                             - before.ru_utime - before.ru_stime, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--variants", nargs="+",
                        default=["floor", "engine", "naive", "evidently"],
                        choices=[v for v in VARIANTS if v not in FLEET_VARIANTS])
    parser.add_argument("--no-evidently", action="store_true",
                        help="leave Evidently out (the slowest variant by far)")
    parser.add_argument("--models", type=int, default=0,
                        help="also run N models sharing the feature table, in one process")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each variant in its process (the median is reported)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant == "generate":
        print(generate(args.db, args.rows[0]))
        return
    if args.variant:
        child(args.variant, args.db, max(1, args.rounds))
        return
    variants = [v for v in args.variants if not (args.no_evidently and v == "evidently")]
    if "floor" not in variants:
        variants.insert(0, "floor")
    if args.models:
        variants += FLEET_VARIANTS

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as workdir:
        for rows in args.rows:
            db_path = os.path.join(workdir, f"bench_{rows}.duckdb")
            # Generated in a child too, so this process stays small.
            generation_s = float(subprocess.run(
                [sys.executable, __file__, "--variant", "generate", "--db", db_path,
                 "--rows", str(rows)], capture_output=True, text=True, check=True,
                cwd=ROOT).stdout.strip().splitlines()[-1])
            if args.models:
                add_models(db_path, args.models)
            figures = {"generate_s": round(generation_s, 2)}
            for variant in variants:
                figures[variant] = measure(variant, db_path, max(1, args.rounds))
            results[rows] = figures
            os.remove(db_path)

    print(f"\nScheduled drift, one model, 20 numeric features (drift injected in "
          f"{', '.join(DRIFTED)}), historical 50–70% vs current newest 5%; x floor = wall "
          "time / the floor's two sum statements over the same rows")
    print(f"wall s: the whole child ({args.rounds} runs, imports included); work s: the median "
          "run (the engine: run_model_drift, both phases; the floor: its two statements); "
          "first s: the first run in a new process; CPU s: the median run's")
    header = (f"{'rows':>11} {'variant':>10} {'wall s':>8} {'work s':>8} {'first s':>8} "
              f"{'x floor':>8} {'CPU s':>7} "
              f"{'peak MB':>8} {'MB pulled':>10} {'rows compared (hist/cur)':>25}  found")
    print(header)
    print("-" * len(header))
    summary = {}
    for rows, figures in results.items():
        floor = figures.get("floor", {}).get("work_s")
        for variant in variants:
            f = figures[variant]
            if "error" in f:
                print(f"{rows:>11,} {variant:>10}  failed: {f['error']}")
                continue
            if variant in FLEET_VARIANTS:
                continue
            ratio = f"{f['work_s'] / floor:8.1f}" if floor else f"{'-':>8}"
            compared = "/".join(f"{n:,}" for n in f["rows_compared"])
            print(f"{rows:>11,} {variant:>10} {f['wall_s']:>8.2f} {f['work_s']:>8.3f} "
                  f"{f['first_s']:>8.3f} {ratio} {f['run_cpu_s']:>7.2f} "
                  f"{f['peak_rss_mb']:>8.0f} {f['bytes_fetched'] / 1e6:>10.2f} "
                  f"{compared:>25}  {','.join(f['found'])}")
        labels = {"models": "one after another (run_model_drift)",
                  "batches": "as batches (run_models_drift)"}
        for variant in FLEET_VARIANTS:
            fleet = figures.get(variant, {})
            if "runs_cpu_s" not in fleet:
                continue
            runs = fleet["rows_compared"][0]
            batches = (f", batches of {'+'.join(map(str, fleet['batches']))}"
                       if "batches" in fleet else "")
            print(f"{rows:>11,} {f'{runs} models':>10} {fleet['runs_wall_s']:>8.2f} "
                  f"{fleet['runs_wall_s'] / (runs * floor) if floor else math.nan:8.1f} "
                  f"{fleet['runs_cpu_s']:>7.2f} {fleet['peak_rss_mb']:>8.0f}  "
                  f"({labels[variant]}{batches}; wall s, x floor·N, CPU s of the runs only, "
                  f"peak MB; {fleet['runs_cpu_s'] / runs:.3f} CPU s a model)")
        one, batched = figures.get("models", {}), figures.get("batches", {})
        if "runs_cpu_s" in one and "runs_cpu_s" in batched:
            print(f"{'':>11} {'(ratio':>10} one after another / batches: CPU s "
                  f"{one['runs_cpu_s'] / batched['runs_cpu_s']:.1f}x, wall s "
                  f"{one['runs_wall_s'] / batched['runs_wall_s']:.1f}x, peak MB "
                  f"{one['peak_rss_mb']:.0f} / {batched['peak_rss_mb']:.0f})")
        print(f"{'':>11} {'(generate':>10} {figures['generate_s']:>8.2f} s in DuckDB SQL)")
        summary[rows] = {variant: round(figures[variant]["work_s"] / floor, 2)
                         for variant in variants
                         if floor and variant not in FLEET_VARIANTS
                         and "work_s" in figures.get(variant, {})}
    print(json.dumps({"benchmark": "scheduled_drift", "results": results,
                      "ratio_to_floor": summary}, default=str))


if __name__ == "__main__":
    main()
