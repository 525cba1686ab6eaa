"""``stat-guard report RESULT [-o FILE]``: one result (a run id, or a model name meaning its
newest result) as a self-contained HTML file, read from Redis (workers/report.py).
``-o -`` writes it to stdout. Exit code 0 written, 2 no such result or the file cannot be
written, 3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workers.cli.errors import OK, CommandError
from workers.config import FleetConfig


def register(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="one result as a self-contained HTML report file (from Redis)",
        description="Write one result (a run id, or a model name for its newest result) "
                    "as an HTML file with its charts and figures, readable offline.")
    report.add_argument("result", metavar="RESULT", help="a run id, or a model name")
    report.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="where to write it ('-' for stdout; default "
                             "stat_guard-<run id>.html here)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace, config: FleetConfig) -> int:
    import redis

    from workers.cli.remote import reachable_redis, unreachable
    from workers.report import file_name, render_report, resolve

    client = reachable_redis(config)
    try:
        found = resolve(client, config, args.result)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unreachable(config, exc) from exc
    if found is None:
        raise CommandError(f"no result {args.result!r} in Redis: neither a run id among the "
                           f"newest results nor a model with results "
                           f"(stat-guard status lists the models)")
    result, history = found
    text = render_report(result, history, config)
    if args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return OK
    path = Path(args.output or file_name(result.run_id))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
    note = f"; {result.display_note}" if result.display_note else ""
    print(f"report of {result.run_id} ({result.model}) written to {path}{note}")
    return OK
