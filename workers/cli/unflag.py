"""``stat-guard unflag MODEL``: clear a model's ``flagged`` state once its drift was dealt
with. The drift worker is the DuckDB file's one writer, so the flag is cleared there
(task ``stat_guard.unflag_model``); ``--local`` clears it in this process when no fleet
runs. The run that flagged it stays in ``flagged_run_id``.
"""

from __future__ import annotations

import argparse

from stat_guard.scheduled.engine import ModelNotFoundError, unflag_model
from workers.cli.errors import OK, CommandError
from workers.config import FleetConfig

DEFAULT_TIMEOUT_S = 120.0


def register(commands: argparse._SubParsersAction) -> None:
    unflag = commands.add_parser(
        "unflag", help="clear a model's flagged state",
        description="Clear the flagged state of a model in model_metadata (the run that "
                    "flagged it stays recorded).")
    unflag.add_argument("model")
    unflag.add_argument("--local", action="store_true",
                        help="write the DuckDB file from this process (no fleet running)")
    unflag.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the drift worker (default "
                             f"{DEFAULT_TIMEOUT_S:g})")
    unflag.set_defaults(handler=_unflag)


def _unflag(args: argparse.Namespace, config: FleetConfig) -> int:
    if args.local:
        was_flagged = unflag_model(config.duckdb.path, args.model, config.drift_run_config())
    else:
        from workers.cli.remote import send_and_wait  # Redis and Celery only for this
        from workers.routing import UNFLAG_MODEL

        answer = send_and_wait(config, UNFLAG_MODEL, (args.model,), args.timeout)
        if answer.get("status") == "unknown_model":
            raise ModelNotFoundError(f"model {args.model!r} is not in model_metadata")
        if answer.get("status") not in ("unflagged", "not_flagged"):
            raise CommandError(f"unexpected answer from the drift worker: {answer}")
        was_flagged = answer["status"] == "unflagged"
    print(f"model {args.model} unflagged" if was_flagged
          else f"model {args.model} was not flagged")
    return OK
