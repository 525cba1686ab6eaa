"""``stat-guard``: the entry point (pyproject.toml ``[project.scripts]``).

It reads the configuration once (``--config``, else ``STAT_GUARD_CONFIG``, else
``Global_Configs/App.yaml`` or the defaults: workers/config.py) before any command, and
turns every failure into one line on stderr and an exit code (workers/cli/errors.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

import duckdb

from stat_guard.scheduled.connection import DuckDBBusyError, DuckDBFileMissingError
from stat_guard.scheduled.engine import ModelNotFoundError
from stat_guard.scheduled.models import ModelRegistrationError
from workers.cli import models, processes, report, runs, status, unflag
from workers.cli.errors import FAILED, REDIS_UNREACHABLE, CommandError
from workers.config import CONFIG_PATH_VARIABLE, ConfigError, get_config

PROGRAM = "stat-guard"
_MAX_MESSAGE_CHARS = 1000


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line too, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(FAILED, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROGRAM, description="Run and inspect pg_stat_guard's drift "
                                               "detection fleet (docs/fleet.md).")
    parser.add_argument("--config", metavar="PATH",
                        help=f"configuration file (default: ${CONFIG_PATH_VARIABLE}, else "
                             f"Global_Configs/App.yaml, else the built-in defaults)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (processes, models, runs, status, unflag, report):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config:
        # Read by this process and by whatever it starts (a worker, beat, Flower).
        os.environ[CONFIG_PATH_VARIABLE] = args.config
    try:
        config = get_config()
        return args.handler(args, config)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure is one line, never a traceback
        message, code = describe(exc)
        print(f"{PROGRAM}: {_one_line(message)}", file=sys.stderr)
        return code


def describe(exc: Exception) -> tuple[str, int]:
    """What to tell the user about ``exc``, and the exit code."""
    if isinstance(exc, CommandError):
        return str(exc), exc.exit_code
    if isinstance(exc, ConfigError):
        return f"configuration: {exc}", FAILED
    if isinstance(exc, DuckDBBusyError):
        return (f"the DuckDB file is busy (a drift run or another writer holds it); try "
                f"again when it is done: {exc}"), FAILED
    if isinstance(exc, DuckDBFileMissingError | ModelNotFoundError):
        return str(exc), FAILED
    if isinstance(exc, ModelRegistrationError):
        return f"model not added: {exc}", FAILED
    if isinstance(exc, duckdb.Error):
        return f"DuckDB: {exc}", FAILED
    if _is_redis_unreachable(exc):
        return f"Redis is unreachable: {exc}", REDIS_UNREACHABLE
    return f"{type(exc).__name__}: {exc}", FAILED


def _is_redis_unreachable(exc: Exception) -> bool:
    # Only a command that imported Redis (or Celery's kombu) can have failed on it.
    redis = sys.modules.get("redis")
    kombu = sys.modules.get("kombu.exceptions")
    kinds: tuple[type[BaseException], ...] = ()
    if redis is not None:
        kinds += (redis.ConnectionError, redis.TimeoutError)
    if kombu is not None:
        kinds += (kombu.OperationalError,)
    return bool(kinds) and isinstance(exc, kinds)


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
