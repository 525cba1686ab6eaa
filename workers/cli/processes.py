"""``stat-guard worker|beat|exporter|flower|function|pages``: one process of the fleet in the
foreground, started with the command line production uses (docs/fleet.md, "Running the
processes") by replacing this process (``os.execvp``), so a supervisor's signals reach it.
``--dry-run`` prints the command instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from workers.cli.errors import OK, CommandError
from workers.config import FleetConfig

ROLES = ("drift", "ondemand", "reactions")
DEFAULT_ONDEMAND_CONCURRENCY = 4
DEFAULT_BEAT_SCHEDULE_FILE = "celerybeat-schedule"
DEFAULT_EXPORTER_PORT = 9808  # workers.exporter.DEFAULT_PORT, without importing Redis here
DEFAULT_FUNCTION_PORT = 7071
# Worker options every fleet worker runs with: no gossip or mingle traffic between
# workers, which the fleet does not use.
_QUIET_WORKER = ("--without-gossip", "--without-mingle")


def celery_program() -> list[str]:
    """The ``celery`` program of this interpreter's environment."""
    script = Path(sys.executable).with_name("celery")
    return [str(script)] if script.exists() else [sys.executable, "-m", "celery"]


def worker_command(role: str, config: FleetConfig, *, node: str | None = None,
                   loglevel: str = "info", concurrency: int | None = None,
                   pool: str | None = None, with_reactions: bool = False,
                   nice: bool = True) -> list[str]:
    """The Celery worker of one queue, as ``make worker-<role>`` starts it."""
    queues = config.queues
    node = node or f"{role}@%h"
    app = [*celery_program(), "-A", "workers.celery_app", "worker"]
    if role == "drift":
        # One at a time, and the whole worker at the lowest priority; its pool process
        # also drops to drift.nice and SCHED_IDLE itself (workers/celery_app.py).
        prefix = ["nice", "-n", str(config.drift.nice)] if nice else []
        return [*prefix, *app, "-Q", queues.drift, "-c", "1", "-n", node, "-l", loglevel,
                *_QUIET_WORKER]
    if role == "ondemand":
        names = f"{queues.ondemand},{queues.reactions}" if with_reactions else queues.ondemand
        return [*app, "-Q", names, "-P", pool or "threads",
                "-c", str(concurrency or DEFAULT_ONDEMAND_CONCURRENCY), "-n", node,
                "-l", loglevel, *_QUIET_WORKER]
    if role == "reactions":
        return [*app, "-Q", queues.reactions, "-c", "1", "-n", node, "-l", loglevel,
                *_QUIET_WORKER]
    raise CommandError(f"unknown worker {role!r} (one of {', '.join(ROLES)})")


def beat_command(loglevel: str = "info",
                 schedule_file: str = DEFAULT_BEAT_SCHEDULE_FILE) -> list[str]:
    # beat_schedule, not workers.celery_app: that module puts the schedule on the app
    return [*celery_program(), "-A", "beat_schedule", "beat", "-l", loglevel,
            "-s", schedule_file]


def exporter_command(address: str = "127.0.0.1", port: int = DEFAULT_EXPORTER_PORT,
                     feature_series: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "workers.exporter", "--address", address,
            "--port", str(port)]
    return argv + (["--feature-series", feature_series] if feature_series is not None else [])


def flower_command() -> list[str]:
    # workers.flower checks flower.basic_auth and hands it to Flower in its environment
    return [sys.executable, "-m", "workers.flower"]


def function_command(host: str = "127.0.0.1", port: int = DEFAULT_FUNCTION_PORT,
                     workers: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "stat_guard.service", "--host", host, "--port", str(port)]
    return argv + (["--workers", str(workers)] if workers is not None else [])


def pages_command(host: str | None = None, port: int | None = None) -> list[str]:
    # workers.pages checks pages.basic_auth / pages.token against the address
    argv = [sys.executable, "-m", "workers.pages"]
    argv += ["--host", host] if host is not None else []
    return argv + (["--port", str(port)] if port is not None else [])


def register(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker", help="start a Celery worker of the fleet (drift, ondemand, reactions)",
        description="Start one Celery worker in the foreground, as production does.")
    roles = worker.add_subparsers(dest="role", metavar="ROLE", required=True)
    drift = roles.add_parser(
        "drift", help="the DuckDB drift runs: -Q drift -c 1 under nice",
        description="The drift worker: scheduled and manual runs, flags, baseline "
                    "captures; one task at a time at the lowest priority.")
    drift.add_argument("--no-nice", dest="nice", action="store_false",
                       help="do not start the whole worker under nice (a container whose "
                            "pool process lowers its own priority)")
    ondemand = roles.add_parser(
        "ondemand", help="the on-demand analyses: -Q ondemand -P threads",
        description="The on-demand worker: perform_drift_analysis in PostgreSQL.")
    ondemand.add_argument("-c", "--concurrency", type=_positive, default=None,
                          help=f"analyses at once (default {DEFAULT_ONDEMAND_CONCURRENCY})")
    ondemand.add_argument("-P", "--pool", choices=("threads", "prefork"), default="threads",
                          help="Celery pool (default threads: the analyses wait on "
                               "PostgreSQL)")
    ondemand.add_argument("--with-reactions", action="store_true",
                          help="consume the reactions queue too (one short-task worker)")
    reactions = roles.add_parser(
        "reactions", help="the stream reactions: -Q reactions -c 1",
        description="The reactions worker: alerts, flags and warnings from the stream.")
    for role_parser in (drift, ondemand, reactions):
        role_parser.add_argument("-n", "--node", default=None,
                                 help="worker name (default <role>@%%h, %%h the host name)")
        _common(role_parser)
        role_parser.set_defaults(handler=_start_worker)

    beat = commands.add_parser(
        "beat", help="start beat, the fleet's schedule (exactly one per deployment)",
        description="Start Celery beat with the fleet's schedule (beat_schedule.py).")
    beat.add_argument("-s", "--schedule-file", default=DEFAULT_BEAT_SCHEDULE_FILE,
                      help=f"where beat keeps its state (default {DEFAULT_BEAT_SCHEDULE_FILE})")
    _common(beat)
    beat.set_defaults(handler=lambda args, _config: _start(
        beat_command(args.loglevel, args.schedule_file), args.dry_run))

    exporter = commands.add_parser(
        "exporter", help="start the Prometheus exporter of the results",
        description="Serve the fleet's results as Prometheus metrics on /metrics.")
    exporter.add_argument("--address", default="127.0.0.1",
                          help="address to listen on (0.0.0.0 in a container)")
    exporter.add_argument("--port", type=int, default=DEFAULT_EXPORTER_PORT)
    exporter.add_argument("--feature-series", default=None,
                          help="opt-in per-feature series, comma-separated, or 'all'")
    exporter.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    exporter.set_defaults(handler=lambda args, _config: _start(
        exporter_command(args.address, args.port, args.feature_series), args.dry_run))

    flower = commands.add_parser(
        "flower", help="start Flower with the configured address, port and basic auth",
        description="Start Flower; it refuses to start without flower.basic_auth.")
    flower.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    flower.set_defaults(handler=lambda args, _config: _start(flower_command(), args.dry_run))

    function = commands.add_parser(
        "function", help="serve the verdict function locally under uvicorn",
        description="Serve the drift function's ASGI app (stat_guard/service.py).")
    function.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (0.0.0.0 in a container)")
    function.add_argument("--port", type=int, default=DEFAULT_FUNCTION_PORT)
    function.add_argument("--workers", type=_positive, default=None,
                          help="uvicorn worker processes (default: STAT_GUARD_WORKERS or 1)")
    function.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    function.set_defaults(handler=lambda args, _config: _start(
        function_command(args.host, args.port, args.workers), args.dry_run))

    pages = commands.add_parser(
        "pages", help="serve the drift pages (HTML charts of the results, from Redis)",
        description="Serve the drift pages under uvicorn (docs/pages.md); they refuse to "
                    "start off the loopback address without pages.basic_auth or pages.token.")
    pages.add_argument("--host", default=None,
                       help="address to listen on (default pages.host, 127.0.0.1)")
    pages.add_argument("--port", type=int, default=None,
                       help="port (default pages.port, 8090)")
    pages.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    pages.set_defaults(handler=lambda args, _config: _start(
        pages_command(args.host, args.port), args.dry_run))


_DRY_RUN = "print the command that would run and exit"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--loglevel", default="info",
                        choices=("debug", "info", "warning", "error", "critical"))
    parser.add_argument("--dry-run", action="store_true", help=_DRY_RUN)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _start_worker(args: argparse.Namespace, config: FleetConfig) -> int:
    argv = worker_command(args.role, config, node=args.node, loglevel=args.loglevel,
                          concurrency=getattr(args, "concurrency", None),
                          pool=getattr(args, "pool", None),
                          with_reactions=getattr(args, "with_reactions", False),
                          nice=getattr(args, "nice", True))
    return _start(argv, args.dry_run)


def _start(argv: list[str], dry_run: bool) -> int:
    if dry_run:
        print(shlex.join(argv))
        return OK
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise CommandError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    return OK  # not reached: execvp replaced this process
