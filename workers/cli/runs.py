"""``stat-guard run MODEL``: a drift run now, outside the schedule, under a manual run id
(``<model>@manual-<time>``, stat_guard.result_record.manual_run_id).

Through the fleet (default), the drift worker runs it like any scheduled run (model lock,
write, publish once) and the verdict table is read back from the stream. ``--local`` runs
the engine in this process with a progress line per feature, then publishes the record
once so reactions, the exporter and ``stat-guard status`` see it (``--no-publish``: not).
Exit code: 0, 1 when the verdict is drift, 2 when the run failed (verdict error); 3 when
``--local`` could not publish (Redis unreachable: the table is printed, the scores are
written, one line says the result was not published).

Redis and Celery are imported by the functions that use them, so ``--help`` and the
other commands start quickly.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from stat_guard.result_record import ResultRecord, manual_run_id
from stat_guard.scheduled.engine import RunProgress, run_model_drift
from stat_guard.verdict import ERROR
from workers.cli.errors import REDIS_UNREACHABLE, CommandError, verdict_exit_code
from workers.cli.tables import figure, moment, render_table
from workers.config import FleetConfig

DEFAULT_TIMEOUT_S = 900.0


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run a model's drift now and print its verdicts",
        description="Run one model's drift now (a manual run, outside the schedule) and "
                    "print the verdict of each feature. Exit code 0, 1 on drift, 2 when the "
                    "run failed, 3 when Redis is unreachable (with --local: the result "
                    "was not published).")
    run.add_argument("model")
    run.add_argument("--local", action="store_true",
                     help="run the engine in this process instead of on the drift worker")
    run.add_argument("--no-publish", dest="publish", action="store_false",
                     help="with --local: do not publish the result to the stream")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                     help=f"seconds to wait for the drift worker (default {DEFAULT_TIMEOUT_S:g})")
    run.set_defaults(handler=_run)


def verdict_table(record: ResultRecord) -> str:
    """The run's headline and one row per feature."""
    head = (f"model {record.model}, run {record.run_id} ({record.trigger} run): "
            f"verdict {record.verdict}, drift score {figure(record.drift_score)}, finished "
            f"{moment(record.finished_at)} in {figure(record.duration_s, 3)} s")
    rows = [(name, f.verdict, figure(f.psi), figure(f.ks_statistic), figure(f.ks_pvalue),
             figure(f.js), figure(f.missing_rate_current), f.error or "")
            for name, f in record.features.items()]
    lines = [head]
    if rows:
        lines.append(render_table(("feature", "verdict", "PSI", "KS", "KS p", "JS",
                                   "missing", "note"), rows))
    if record.error:
        lines.append(f"error: {record.error}")
    return "\n".join(lines)


def _run(args: argparse.Namespace, config: FleetConfig) -> int:
    run_id = manual_run_id(args.model, datetime.now(UTC))
    if args.local:
        return _run_here(args.model, run_id, args.publish, config)
    return _run_on_fleet(args.model, run_id, args.timeout, config)


def _run_on_fleet(model: str, run_id: str, timeout_s: float, config: FleetConfig) -> int:
    from workers.cli.remote import send_and_wait
    from workers.routing import RUN_MODEL_DRIFT

    answer = send_and_wait(config, RUN_MODEL_DRIFT, (model, run_id), timeout_s)
    status = answer.get("status")
    if status == "skipped_unknown_model":
        raise CommandError(f"model {model!r} is not registered (stat-guard models list)")
    if status == "skipped_locked":
        raise CommandError(f"model {model!r} stayed locked by another run; run {run_id} "
                           f"was skipped")
    record = _published_record(config, answer.get("entry_id"))
    if record is None:  # trimmed from the stream already: the task's summary
        print(f"model {model}, run {run_id} (manual run): verdict {answer.get('verdict')}, "
              f"drift score {figure(answer.get('drift_score'))}")
        return verdict_exit_code(str(answer.get("verdict")))
    print(verdict_table(record))
    return verdict_exit_code(record.verdict)


def _published_record(config: FleetConfig, entry_id: object) -> ResultRecord | None:
    from workers.cli.remote import reachable_redis

    if not isinstance(entry_id, str) or not entry_id:
        return None
    client = reachable_redis(config)
    entries = client.xrange(config.stream.name, entry_id, entry_id)
    return ResultRecord.from_fields(entries[0][1]) if entries else None


def _run_here(model: str, run_id: str, publish: bool, config: FleetConfig) -> int:
    def progress(step: RunProgress) -> None:
        if step.stage == "read":
            print(f"reading {model} ({step.total} features) from {config.duckdb.path}",
                  file=sys.stderr, flush=True)
        elif step.stage == "write":
            print(f"writing the scores of run {run_id}", file=sys.stderr, flush=True)
        elif step.feature is not None:
            feature = step.feature
            outcome = (f"error: {feature.error}" if feature.verdict == ERROR
                       else f"PSI {figure(feature.psi)}, KS {figure(feature.ks_statistic)}")
            print(f"[{step.done}/{step.total}] {feature.name}: {outcome}", file=sys.stderr,
                  flush=True)

    result = run_model_drift(config.duckdb.path, model, run_id,
                             config=config.drift_run_config(), progress=progress)
    record = result.stream_record()
    print(verdict_table(record))
    code = verdict_exit_code(record.verdict)
    if not publish:
        print("not published (--no-publish): reactions and stat-guard status do not see it")
        return code
    import redis

    from workers.cli.remote import reachable_redis, unreachable
    from workers.displays import with_display
    from workers.stream import publish_once

    try:
        client = reachable_redis(config)
        record = with_display(client, config.redis, record, result.run_display,
                              config.display.ttl_s)
        published = publish_once(client, config.redis, config.stream, record)
    except (redis.ConnectionError, redis.TimeoutError, CommandError) as exc:
        # Unreachable at the PING or during the publish: the same line, exit code 3.
        reason = exc if isinstance(exc, CommandError) else unreachable(config, exc)
        raise CommandError(f"the scores are written, but the result was not published "
                           f"(reactions and stat-guard status do not see it): {reason}",
                           REDIS_UNREACHABLE) from exc
    print(f"published to {config.stream.name} (entry {published.entry_id}): reactions and "
          f"stat-guard status will see it")
    return code
