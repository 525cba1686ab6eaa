"""On-demand latency with and without a heavy drift run on the drift worker.

Real processes: a drift worker (``-Q drift -c 1``, niceness 19 and SCHED_IDLE, one
DuckDB thread) running scheduled drift over 1M rows per model; an on-demand worker
(``-Q ondemand -c 1``) calling ``perform_drift_analysis`` with the installed
pg_stat_guard extension through the real verdict service. The extension runs in a
private throw-away cluster, since its function URL is a server-wide setting. Redis
database 14 is broker and stream.

Idle and loaded phases are interleaved; a sample counts as "under load" only if a drift
run held its model lock when the task was sent and when its result came back. Latency is
send -> result, as a caller sees it. Target: p99 under load <= 1.25 x p99 idle. The last
line is one JSON object.

    python bench/bench_fleet.py [--rounds 5] [--samples 40] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REDIS_DB = 14


def _write_config(workdir: Path) -> Path:
    path = workdir / "App.yaml"
    path.write_text(f"""
redis: {{db: {REDIS_DB}}}
duckdb: {{path: {workdir / "bench.duckdb"}, threads: 1, memory_limit: 16MB}}
limits: {{unacked_restore_interval_s: 1, unacked_restore_throttle: 1}}
ondemand: {{statement_timeout_ms: 5000}}
""")
    return path


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=40, help="on-demand tasks per phase")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per demo model")
    parser.add_argument("--ondemand-pool", default="threads", choices=("threads", "prefork"),
                        help="pool of the on-demand worker (make worker-ondemand: threads)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    config_path = _write_config(workdir)
    os.environ["STAT_GUARD_CONFIG"] = str(config_path)

    import psycopg

    from demo.duckdb_data import generate_demo_data
    from tests.fleet.private_postgres import private_postgres
    from tests.http_server import verdict_service
    from workers.celery_app import app, config
    from workers.redis_client import redis_client
    from workers.routing import RUN_MODEL_DRIFT, RUN_ONDEMAND_ANALYSIS

    client = redis_client()
    client.flushdb()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    demo = generate_demo_data(config.duckdb.path, rows_per_model=args.rows)
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    print(f"demo DuckDB: {args.rows:,} rows per model, {len(demo.production_models)} "
          f"production models, generated in {time.perf_counter() - started:.1f} s")

    schema = f"psg_bench_{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen] = []
    # A private cluster: the extension's function URL is server-wide, and the shared
    # server's may be in use by someone else.
    with verdict_service() as url, private_postgres(f"{url}/api/drift") as postgres, \
            psycopg.connect(postgres.dsn, autocommit=True) as conn:
        try:
            table = _events_table(conn, schema)
            env = {**os.environ, "STAT_GUARD_CONFIG": str(config_path),
                   "STAT_GUARD_POSTGRES_PORT": str(postgres.port),
                   "STAT_GUARD_POSTGRES_DATABASE": postgres.database}
            # As in production (make worker-drift): the whole drift worker under nice 19.
            for queue, pool, prefix in (("drift", "prefork", ["nice", "-n", "19"]),
                                        ("ondemand", args.ondemand_pool, [])):
                log = open(workdir / f"{queue}.log", "wb")
                processes.append(subprocess.Popen(
                    [*prefix, sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                     "-Q", queue, "-P", pool, "-c", "1", "-n", f"{queue}-bench@%h",
                     "-l", "warning", "--without-gossip", "--without-mingle",
                     "--without-heartbeat"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
            _wait_workers(app, 2)
            kwargs = {"window": "15 minutes", "source": table, "time_column": "created_at",
                      "value_columns": ["amount", "latency"], "model": "bench"}

            def locked() -> bool:
                return any(True for _ in client.scan_iter("stat_guard:lock:model:*", 10))

            inside_ms: dict[bool, list[float]] = {False: [], True: []}

            def sample() -> tuple[float, bool]:
                busy_before = locked()
                began = time.perf_counter()
                outcome = app.send_task(RUN_ONDEMAND_ANALYSIS, kwargs=kwargs).get(timeout=30)
                elapsed = (time.perf_counter() - began) * 1e3
                busy = busy_before and locked()
                inside_ms[busy].append(outcome["analysis_ms"])
                return elapsed, busy

            for _ in range(10):  # warm both workers' connections
                sample()
            for samples in inside_ms.values():
                samples.clear()
            idle: list[float] = []
            loaded: list[float] = []
            drift_runs = 0
            drift_seconds: list[float] = []
            for round_number in range(args.rounds):
                idle += [ms for ms, busy in (sample() for _ in range(args.samples))
                         if not busy]
                runs = [app.send_task(RUN_MODEL_DRIFT,
                                      args=(m, f"{m}@bench-{round_number}-{uuid.uuid4().hex}"))
                        for m in demo.production_models]
                deadline = time.monotonic() + 30
                while not locked() and time.monotonic() < deadline:
                    time.sleep(0.01)
                taken = 0
                while taken < args.samples and not all(r.ready() for r in runs):
                    ms, busy = sample()
                    if busy:
                        loaded.append(ms)
                        taken += 1
                for run in runs:
                    outcome = run.get(timeout=300)
                    drift_runs += outcome["status"] == "published"
                    drift_seconds.append(float(outcome.get("duration_s", 0.0)))
        finally:
            for process in processes:
                _stop(process)
            client.flushdb()
            shutil.rmtree(workdir, ignore_errors=True)

    idle_p50, idle_p90, idle_p99 = (statistics.median(idle), _percentile(idle, 90),
                                    _percentile(idle, 99))
    load_p50, load_p90, load_p99 = (statistics.median(loaded), _percentile(loaded, 90),
                                    _percentile(loaded, 99))
    ratio = load_p99 / idle_p99
    print(f"on-demand task latency (send -> result), {len(idle)} idle and {len(loaded)} "
          f"loaded samples over {args.rounds} interleaved rounds")
    print(f"  idle:       p50 {idle_p50:7.2f} ms   p90 {idle_p90:7.2f} ms   "
          f"p99 {idle_p99:7.2f} ms")
    print(f"  under load: p50 {load_p50:7.2f} ms   p90 {load_p90:7.2f} ms   "
          f"p99 {load_p99:7.2f} ms "
          f"({drift_runs} drift runs, median {statistics.median(drift_seconds):.1f} s each)")
    print(f"  of which the analysis in PostgreSQL + function: p50 idle "
          f"{statistics.median(inside_ms[False]):.2f} ms, under load "
          f"{statistics.median(inside_ms[True]):.2f} ms")
    print(f"  p99 ratio under load / idle: {ratio:.3f} (target <= 1.25: "
          f"{'met' if ratio <= 1.25 else 'NOT met'})")
    print(f"  on-demand worker pool: {args.ondemand_pool}")
    print(json.dumps({"bench": "fleet", "rows_per_model": args.rows,
                      "ondemand_pool": args.ondemand_pool,
                      "idle_samples": len(idle), "loaded_samples": len(loaded),
                      "idle_p50_ms": round(idle_p50, 3), "idle_p90_ms": round(idle_p90, 3),
                      "idle_p99_ms": round(idle_p99, 3),
                      "load_p50_ms": round(load_p50, 3), "load_p90_ms": round(load_p90, 3),
                      "load_p99_ms": round(load_p99, 3),
                      "analysis_p50_idle_ms": round(statistics.median(inside_ms[False]), 3),
                      "analysis_p50_load_ms": round(statistics.median(inside_ms[True]), 3),
                      "p99_ratio": round(ratio, 3), "target_ratio": 1.25,
                      "met": ratio <= 1.25, "drift_runs": drift_runs,
                      "loadavg_1m_before": round(load_before, 2)}))


def _events_table(conn: Any, schema: str) -> str:
    from psycopg import sql

    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    table = sql.Identifier(schema, "events")
    conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, created_at timestamptz "
                         "NOT NULL, amount float8, latency float8)").format(table))
    conn.execute(sql.SQL("CREATE INDEX ON {} (created_at)").format(table))
    normal = "sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"
    conn.execute(sql.SQL(
        "INSERT INTO {} (created_at, amount, latency) SELECT now() - interval '6 days' + g * "
        "(interval '6 days' - interval '1 hour') / 20000, 100 + 15 * " + normal + ", 50 + 5 * "
        + normal + " FROM generate_series(0, 19999) g").format(table))
    conn.execute(sql.SQL(
        "INSERT INTO {} (created_at, amount, latency) SELECT now() - interval '10 minutes' + g * "
        "interval '590 seconds' / 3000, 110 + 15 * " + normal + ", 50 + 5 * " + normal
        + " FROM generate_series(0, 2999) g").format(table))
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    return f"{schema}.events"


def _wait_workers(app: Any, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise RuntimeError("workers did not start")


def _stop(process: subprocess.Popen) -> None:
    import signal

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


if __name__ == "__main__":
    main()
