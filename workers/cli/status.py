"""``stat-guard status``: the newest verdict of every model, read from Redis (the
latest-record hashes the reactions keep, workers/reaction_keys.py), never from the DuckDB
file, so it answers while a drift run holds the file and on any machine of the fleet.

Exit code: 0 all fine, 1 a model is in drift, 2 a model's last run failed (verdict
``error``; it wins over drift), 3 Redis is unreachable.
"""

from __future__ import annotations

import argparse

from stat_guard.result_record import ResultRecord
from workers.cli.errors import verdict_exit_code
from workers.cli.tables import figure, moment, render_table, to_json
from workers.config import FleetConfig


def register(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status", help="the latest verdict of every model (from Redis)",
        description="The latest verdict, drift score, finish time and source of every "
                    "model, as the reactions recorded them in Redis. Exit code 0 all fine, "
                    "1 drift, 2 a failed run, 3 Redis unreachable.")
    status.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    status.set_defaults(handler=_status)


def status_exit_code(records: list[ResultRecord]) -> int:
    return verdict_exit_code(*(record.verdict for record in records))


def _status(args: argparse.Namespace, config: FleetConfig) -> int:
    import redis  # here, not at the top: the other commands start without it

    from workers.cli.remote import reachable_redis, unreachable
    from workers.reaction_keys import latest_records

    client = reachable_redis(config)
    try:
        records = latest_records(client, config.redis)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unreachable(config, exc) from exc
    if args.json:
        print(to_json([_document(record) for record in records]))
    elif not records:
        print("no results in Redis yet (the reactions record each model's latest run)")
    else:
        rows = [(r.model, r.source, r.trigger, r.verdict, figure(r.drift_score),
                 moment(r.finished_at), r.run_id) for r in records]
        print(render_table(("model", "source", "trigger", "verdict", "score", "finished",
                            "run"), rows))
    return status_exit_code(records)


def _document(record: ResultRecord) -> dict[str, object]:
    return {"model": record.model, "source": record.source, "trigger": record.trigger,
            "verdict": record.verdict, "drift_score": record.drift_score,
            "finished_at": record.finished_at.isoformat() if record.finished_at else None,
            "run_id": record.run_id, "error": record.error or None}
