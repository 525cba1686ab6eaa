"""The whole story, end to end, on this machine's PostgreSQL and Redis.

1. DuckDB demo data: three production models, some features drifted on purpose.
2. The fleet starts: the verdict function (uvicorn), a drift worker, an on-demand and
   reactions worker, beat (as the scheduler), Flower, the metrics exporter and the drift
   pages.
3. PostgreSQL: a demo table, a captured baseline; rows stream in; drift is injected; the
   local 3σ signal fires and the on-demand analysis answers from inside PostgreSQL.
4. Beat starts the scheduled run: the drifted features are found in DuckDB, results go to
   the Redis Stream, reactions flag the models.
5. A summary table, where to look, and every started process stopped (also on Ctrl-C).

Everything it creates lives in ``.demo/``, Redis database 7 (key prefix
``stat_guard_demo``) and the PostgreSQL database ``stat_guard_demo``; the server's
``pg_stat_guard.function_url`` is set for the demo and restored afterwards. PostgreSQL is
the one the libpq variables name (default 127.0.0.1:5432, user postgres), Redis the one
of Global_Configs/App.example.yaml (127.0.0.1:6379) unless STAT_GUARD_REDIS_HOST/PORT say
otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stat_guard.result_record import ResultRecord

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
REDIS_DB = 7
PREFIX = "stat_guard_demo"
DATABASE = "stat_guard_demo"
FLOWER_AUTH = "demo:demo"
PAGES_AUTH = "demo:demo"
STREAM = f"{PREFIX}:results"
ONDEMAND_WINDOW = "3 seconds"
ONDEMAND_DELAY_S = 3


def say(message: str) -> None:
    print(f"\033[1m==>\033[0m {message}", flush=True)


def detail(message: str) -> None:
    print(f"    {message}", flush=True)


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Fleet:
    """Child processes, each in its own process group, stopped in reverse order."""

    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(WORK / f"{name}.log", "wb")
        process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        detail(f"started {name} (pid {process.pid}, log .demo/{name}.log)")
        return process

    def check(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; "
                                   f"see .demo/{name}.log")

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                detail(f"{name} killed")
        self.processes.clear()


def wait_for(what: str, check: Any, timeout: float, fleet: Fleet | None = None,
             every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if fleet:
            fleet.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def basic_auth_header(auth: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP basic authentication for ``user:password``."""
    import base64

    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def http_ok(url: str, auth: str | None = None) -> bool:
    request = urllib.request.Request(url, headers=basic_auth_header(auth) if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# ---- PostgreSQL --------------------------------------------------------------------


def admin_connect(database: str = "postgres"):
    import psycopg

    return psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"),
                           port=int(os.environ.get("PGPORT", "5432")),
                           user=os.environ.get("PGUSER", "postgres"), dbname=database,
                           autocommit=True)


def prepare_postgres(function_url: str) -> str | None:
    """Demo database, table and baseline; returns the previous function URL to restore."""
    with admin_connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with admin_connect(DATABASE) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_guard CASCADE")
        conn.execute("CREATE EXTENSION pg_stat_guard")
        conn.execute("LOAD 'pg_stat_guard'")
        previous = conn.execute(
            "SELECT setting FROM pg_settings WHERE name = 'pg_stat_guard.function_url'"
        ).fetchone()
        conn.execute("ALTER SYSTEM SET pg_stat_guard.function_url = %s"
                     .replace("%s", "'" + function_url.replace("'", "''") + "'"))
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP SCHEMA IF EXISTS demo CASCADE")
        conn.execute("CREATE SCHEMA demo")
        conn.execute("CREATE TABLE demo.payments (id bigserial PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, amount float8, latency_ms float8)")
        # A week of history, then a baseline of it.
        conn.execute(
            "INSERT INTO demo.payments (created_at, amount, latency_ms) "
            "SELECT now() - interval '7 days' + (i * interval '7 days' / 200000) "
            "         - interval '30 minutes', "
            "       50 + 12 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()), "
            "       20 + 5 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()) "
            "FROM generate_series(1, 200000) AS i")
        conn.execute("CREATE INDEX ON demo.payments (created_at)")
        conn.execute("ANALYZE demo.payments")
        stored = conn.execute(
            "SELECT capture_baseline('demo.payments', 'created_at', "
            "ARRAY['amount', 'latency_ms'], now() - interval '7 days 1 hour', "
            "now() - interval '30 minutes')").fetchone()[0]
        detail(f"demo.payments: 200,000 rows of history, baselines stored for {stored} columns")
        wait_for("the function URL to reach new sessions", lambda: _url_visible(function_url),
                 timeout=10)
    return previous[0] if previous else None


def _url_visible(url: str) -> bool:
    with admin_connect(DATABASE) as conn:
        conn.execute("LOAD 'pg_stat_guard'")
        return conn.execute("SELECT current_setting('pg_stat_guard.function_url')"
                            ).fetchone()[0] == url


def restore_postgres(previous_url: str | None) -> None:
    with admin_connect(DATABASE) as conn:
        conn.execute("LOAD 'pg_stat_guard'")
        if previous_url:
            conn.execute("ALTER SYSTEM SET pg_stat_guard.function_url = '"
                         + previous_url.replace("'", "''") + "'")
        else:
            conn.execute("ALTER SYSTEM RESET pg_stat_guard.function_url")
        conn.execute("SELECT pg_reload_conf()")


class Ingest(threading.Thread):
    """Rows streaming into PostgreSQL, as the platform's sources would send them."""

    def __init__(self, shift: threading.Event) -> None:
        super().__init__(daemon=True)
        self.shift = shift
        self.stop = threading.Event()
        self.rows = 0
        self.values: list[float] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        import numpy as np

        rng = np.random.default_rng(11)
        with admin_connect(DATABASE) as conn:
            while not self.stop.is_set():
                drift = self.shift.is_set()
                amounts = rng.normal(50 + (30 if drift else 0), 12, 200)
                latency = rng.normal(20, 5, 200)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO demo.payments (created_at, amount, latency_ms) "
                        "VALUES (now(), %s, %s)",
                        list(zip(amounts.tolist(), latency.tolist(), strict=True)))
                with self.lock:
                    self.rows += len(amounts)
                    self.values.extend(amounts.tolist())
                time.sleep(0.05)

    def take_values(self) -> list[float]:
        with self.lock:
            values, self.values = self.values, []
        return values


# ---- the story ---------------------------------------------------------------------


def records(client, source: str | None = None) -> list[ResultRecord]:
    rows = [ResultRecord.from_fields(fields) for _, fields in client.xrange(STREAM)]
    return [r for r in rows if source is None or r.source == source]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000,
                        help="DuckDB feature rows per model (default 60,000)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave the fleet up after the summary, until Ctrl-C")
    args = parser.parse_args(argv)

    WORK.mkdir(exist_ok=True)
    ports = {name: free_port() for name in ("function", "flower", "exporter", "pages")}
    duckdb_path = WORK / "stat_guard.duckdb"
    env = {**os.environ,
           "STAT_GUARD_CONFIG": str(ROOT / "Global_Configs" / "App.example.yaml"),
           "STAT_GUARD_REDIS_DB": str(REDIS_DB),
           "STAT_GUARD_REDIS_KEY_PREFIX": PREFIX,
           "STAT_GUARD_STREAM_NAME": STREAM,
           "STAT_GUARD_DUCKDB_PATH": str(duckdb_path),
           # the fleet reaches the server the story prepares (the libpq variables)
           "STAT_GUARD_POSTGRES_HOST": os.environ.get("PGHOST", "127.0.0.1"),
           "STAT_GUARD_POSTGRES_PORT": os.environ.get("PGPORT", "5432"),
           "STAT_GUARD_POSTGRES_USER": os.environ.get("PGUSER", "postgres"),
           "STAT_GUARD_POSTGRES_DATABASE": DATABASE,
           "STAT_GUARD_SCHEDULE_DRIFT_INTERVAL_S": "20",
           "STAT_GUARD_SCHEDULE_REACTIONS_INTERVAL_S": "3",
           "STAT_GUARD_ONDEMAND_SOURCE": "demo.payments",
           "STAT_GUARD_ONDEMAND_TIME_COLUMN": "created_at",
           "STAT_GUARD_ONDEMAND_VALUE_COLUMNS": "amount,latency_ms",
           "STAT_GUARD_ONDEMAND_WINDOW": ONDEMAND_WINDOW,
           "STAT_GUARD_ONDEMAND_COOLDOWN_S": "30",
           "STAT_GUARD_FLOWER_PORT": str(ports["flower"]),
           "STAT_GUARD_FLOWER_BASIC_AUTH": FLOWER_AUTH,
           "STAT_GUARD_PAGES_PORT": str(ports["pages"]),
           "STAT_GUARD_PAGES_BASIC_AUTH": PAGES_AUTH,
           # alerts link to the model's page
           "STAT_GUARD_PAGES_PUBLIC_URL": f"http://127.0.0.1:{ports['pages']}",
           "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)  # this process uses the same configuration

    import redis

    from demo.duckdb_data import generate_demo_data
    from workers.client import DriftSignalClient
    from workers.config import get_config

    # Redis and PostgreSQL as the fleet sees them: App.example.yaml, then STAT_GUARD_*
    # (STAT_GUARD_REDIS_HOST/PORT, STAT_GUARD_POSTGRES_HOST/PORT point the demo elsewhere).
    redis_config = get_config().redis
    client = redis.Redis(host=redis_config.host, port=redis_config.port, db=REDIS_DB,
                         username=redis_config.username or None,
                         password=redis_config.password or None, decode_responses=True)
    client.flushdb()
    started = time.monotonic()
    fleet = Fleet(env)
    previous_url: str | None = None
    postgres_ready = False

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        with ExitStack():
            say(f"1/5 generating DuckDB demo data ({args.rows:,} rows per model)")
            if duckdb_path.exists():
                duckdb_path.unlink()
            summary = generate_demo_data(str(duckdb_path), rows_per_model=args.rows, seed=7)
            for model, drifted in summary.drifted_features.items():
                detail(f"{model}: drifted on purpose: " + ", ".join(
                    f"{name} ({how})" for name, how in drifted.items()))

            say("2/5 starting the fleet")
            py = sys.executable
            celery = [py, "-m", "celery"]
            fleet.start("function", [py, "-m", "stat_guard.service", "--port",
                                     str(ports["function"])])
            fleet.start("worker-drift", ["nice", "-n", "19", *celery, "-A", "workers.celery_app",
                                         "worker", "-Q", "drift", "-c", "1", "-n",
                                         "drift@demo", "-l", "info", "--without-gossip",
                                         "--without-mingle"])
            fleet.start("worker-ondemand", [*celery, "-A", "workers.celery_app", "worker", "-Q",
                                            "ondemand,reactions", "-P", "threads", "-c", "4",
                                            "-n", "ondemand@demo", "-l", "info",
                                            "--without-gossip", "--without-mingle"])
            fleet.start("flower", [py, "-m", "workers.flower"])
            fleet.start("exporter", [py, "-m", "workers.exporter", "--port",
                                     str(ports["exporter"])])
            fleet.start("pages", [py, "-m", "workers.pages"])
            function_url = f"http://127.0.0.1:{ports['function']}/api/drift"
            wait_for("the function", lambda: http_ok(function_url.replace("drift", "health")),
                     60, fleet)
            wait_for("Flower", lambda: http_ok(f"http://127.0.0.1:{ports['flower']}/healthcheck"),
                     60, fleet)
            wait_for("the exporter",
                     lambda: http_ok(f"http://127.0.0.1:{ports['exporter']}/metrics"), 60, fleet)
            wait_for("the drift pages",
                     lambda: http_ok(f"http://127.0.0.1:{ports['pages']}/", PAGES_AUTH), 60,
                     fleet)
            detail(f"drift pages on http://127.0.0.1:{ports['pages']}/ (user:password "
                   f"{PAGES_AUTH})")

            say("3/5 PostgreSQL: baseline, streaming inserts, injected drift, the 3σ signal")
            previous_url = prepare_postgres(function_url)
            postgres_ready = True
            shift = threading.Event()
            ingest = Ingest(shift)
            ingest.start()

            # The local system watches the mean of each batch it sends; when the 3σ signal
            # fires it gives the window a few seconds to fill, then asks PostgreSQL.
            def enqueue_after_delay(kwargs: dict[str, Any]) -> None:
                from workers.celery_app import app
                from workers.routing import RUN_ONDEMAND_ANALYSIS

                app.send_task(RUN_ONDEMAND_ANALYSIS, kwargs=kwargs, countdown=ONDEMAND_DELAY_S)

            signal_client = DriftSignalClient(enqueue=enqueue_after_delay)

            def observe_batches() -> int:
                values = ingest.take_values()
                means = [sum(values[i:i + 200]) / len(values[i:i + 200])
                         for i in range(0, len(values), 200) if values[i:i + 200]]
                return signal_client.observe_many(means)

            calm_until = time.monotonic() + 6
            false_alarms = 0
            while time.monotonic() < calm_until:
                false_alarms += observe_batches()
                time.sleep(0.2)
            detail(f"{ingest.rows:,} rows streamed; batch-mean signal: mean "
                   f"{signal_client.signal.mean:.2f}, 3σ limit "
                   f"{signal_client.signal.upper_limit:.2f}, {false_alarms} false alarm(s)")
            if false_alarms:  # an analysis of calm data said so; let its cool-down pass
                wait_for("the false alarm's analysis", lambda: records(client, "ondemand"), 90,
                         fleet)
                detail(f"the false alarm's analysis answered "
                       f"{records(client, 'ondemand')[-1].verdict}")
                client.delete(*client.keys(f"{PREFIX}:*cooldown*") or ["-"])
                signal_client._quiet_until = 0.0
            before = len(records(client, "ondemand"))
            shift.set()
            detail("drift injected: amount +30 (2.5 σ) from now on")
            wait_for("the 3σ signal", lambda: observe_batches() > 0, 60, fleet, every=0.2)
            detail(f"3σ signal fired after {ingest.rows:,} rows; on-demand analysis of the last "
                   f"{ONDEMAND_WINDOW} enqueued (in {ONDEMAND_DELAY_S} s)")
            ondemand = wait_for("the on-demand verdict on the stream",
                                lambda: records(client, "ondemand")[before:], 90, fleet)[-1]
            detail(f"perform_drift_analysis answered: verdict {ondemand.verdict}")
            ingest.stop.set()

            say("4/5 beat starts the scheduled drift run over DuckDB (every 20 s here)")
            fleet.start("beat", [*celery, "-A", "beat_schedule", "beat", "-l", "info", "-s",
                                 str(WORK / "celerybeat-schedule")])
            wait_for("scheduled results for every production model",
                     lambda: len({r.model for r in records(client, "scheduled")}) >= 3,
                     240, fleet)
            wait_for("an alert for every drift result", lambda: _alerted(client), 90, fleet)
            # The flag is written by a task on the drift queue, maybe behind a drift run:
            # the story reads what DuckDB holds, once it holds every flag.
            flagged = wait_for("every drifted model flagged in DuckDB",
                               lambda: _flags_written(client, duckdb_path), 120, fleet)

            say("5/5 summary")
            _summary(client, flagged, ports, started)
            if args.keep_running:
                say("the fleet keeps running; Ctrl-C stops it")
                while True:
                    fleet.check()
                    time.sleep(1)
    except KeyboardInterrupt:
        say("interrupted")
        return_code = 130
    except Exception as error:  # the story failed: say where, then clean up
        say(f"demo failed: {error}")
        return_code = 1
    else:
        return_code = 0
    finally:
        say("stopping every process the demo started")
        fleet.stop()
        if postgres_ready:
            restore_postgres(previous_url)
    return return_code


def _counter(client, kind: str) -> int:
    return int(client.get(f"{PREFIX}:reactions:{kind}") or 0)


def _drifted(client) -> list[tuple[str, str]]:
    """(source, model) of every latest result whose verdict is drift."""
    latest = {(r.source, r.model): r for r in records(client)}
    return [key for key, record in latest.items() if record.verdict == "drift"]


def _alerted(client) -> bool:
    return _counter(client, "alert") >= len(_drifted(client))


def _flags_written(client, duckdb_path: Path) -> list[str] | None:
    """The flagged models in model_metadata once every scheduled drift model is among
    them; None while one is missing or a drift run holds the file."""
    import duckdb

    try:
        with closing(duckdb.connect(str(duckdb_path), read_only=True)) as con:
            rows = con.execute("SELECT name FROM model_metadata WHERE flagged "
                               "ORDER BY name").fetchall()
    except duckdb.IOException:
        return None
    flagged = [row[0] for row in rows]
    wanted = {model for source, model in _drifted(client) if source == "scheduled"}
    return flagged if wanted <= set(flagged) else None


def _summary(client, flagged: list[str], ports: dict[str, int],
             started: float) -> None:
    header = (f"{'source':<10} {'model':<16} {'feature':<18} {'PSI':>8} {'KS':>7} "
              f"{'KS p':>9} {'verdict':<18}")
    print(header)
    print("-" * len(header))
    latest: dict[tuple[str, str], ResultRecord] = {}
    for record in records(client):
        latest[(record.source, record.model)] = record
    for (source, model), record in sorted(latest.items()):
        for name, figures in sorted(record.features.items()):

            def number(value: float | None, fmt: str) -> str:
                return "-" if value is None else format(value, fmt)

            verdict = figures.verdict or "-"
            marker = "  <- drift" if verdict == "drift" else ""
            print(f"{source:<10} {model:<16} {name:<18} {number(figures.psi, '8.4f')} "
                  f"{number(figures.ks_statistic, '7.4f')} "
                  f"{number(figures.ks_pvalue, '9.2e')} {verdict:<18}{marker}")
        print(f"{'':<10} {model:<16} {'= model verdict':<18} {'':>8} {'':>7} {'':>9} "
              f"{record.verdict}")
    counters = {key.rsplit(':', 1)[-1]: client.get(key)
                for key in client.keys(f"{PREFIX}:reactions:*") if client.type(key) == "string"}
    print(f"\nreactions: {counters}")
    print(f"models flagged in DuckDB model_metadata: {flagged}")
    pages = f"http://127.0.0.1:{ports['pages']}"
    listed = _pages_list(pages, [model for _source, model in latest])
    print(f"\ndrift pages list {listed} of {len({m for _s, m in latest})} models; "
          f"a model's page: {pages}/models/{sorted(latest)[0][1]}")
    print(f"\nwhere to look while the fleet runs (make demo ARGS=--keep-running):\n"
          f"  pages     {pages}/  (user:password {PAGES_AUTH}; charts of every result)\n"
          f"  report    .venv/bin/stat-guard report MODEL -o report.html  (with the demo's "
          f"STAT_GUARD_* settings)\n"
          f"  Flower    http://127.0.0.1:{ports['flower']}/  (user:password {FLOWER_AUTH})\n"
          f"  metrics   http://127.0.0.1:{ports['exporter']}/metrics\n"
          f"  function  http://127.0.0.1:{ports['function']}/api/health\n"
          f"  logs      .demo/*.log\n"
          f"story told in {time.monotonic() - started:.0f} s")


def _pages_list(base: str, models: list[str]) -> int:
    """How many of ``models`` the pages' overview names (it reads Redis as the exporter)."""
    import html

    request = urllib.request.Request(f"{base}/", headers=basic_auth_header(PAGES_AUTH))
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return sum(1 for model in set(models)
               if f'data-model="{html.escape(model, quote=True)}"' in text)


if __name__ == "__main__":
    sys.exit(main())
