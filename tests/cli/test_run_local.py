"""``stat-guard run --local`` and ``stat-guard unflag --local``: the engine in the command's
own process, a progress line per feature, the verdict table, one publish."""

from __future__ import annotations

from pathlib import Path

import redis

from stat_guard.scheduled.engine import flag_model
from tests.cli.conftest import CONFIG, stat_guard
from tests.fleet.support import query, stream_records
from tests.local import free_port
from workers.displays import load_display


def test_local_run_shows_progress_verdicts_and_publishes_once(model_db: Path,
                                                             redis_db: redis.Redis) -> None:
    ran = stat_guard("run", "payments", "--local", db_path=model_db)
    assert ran.code == 1, ran.err  # drift
    progress = ran.err.splitlines()
    assert progress[0] == f"reading payments (3 features) from {model_db}"
    assert [line.split(":")[0] for line in progress[1:4]] == [
        "[1/3] amount", "[2/3] stable", "[3/3] channel"]
    assert progress[4].startswith("writing the scores of run payments@manual-")
    head, _header, _rule, *rows, published = ran.out.splitlines()
    assert "(manual run): verdict drift" in head
    assert [row.split()[:2] for row in rows] == [["amount", "drift"], ["stable", "ok"],
                                                  ["channel", "ok"]]
    assert published.startswith(f"published to {CONFIG.stream.name} (entry ")
    [record] = stream_records(redis_db)
    assert record["trigger"] == "manual" and record["verdict"] == "drift"
    assert query(model_db, "SELECT last_run_id FROM model_metadata") == [(record["run_id"],)]
    # The run's display summaries, stored before the publish and named by the record.
    shown = load_display(redis_db, record["display_key"])
    assert 0 < redis_db.ttl(record["display_key"]) <= CONFIG.display.ttl_s
    assert (shown.run_id, shown.trigger, shown.verdict) == (record["run_id"], "manual",
                                                            "drift")
    amount = next(f for f in shown.features if f.name == "amount")
    assert amount.kind == "numeric" and amount.verdict == "drift" and amount.reasons
    assert len(amount.edges) == len(amount.baseline) + 1 == 41
    assert abs(sum(amount.baseline) - 1) < 1e-5 and abs(sum(amount.current) - 1) < 1e-5

    def mean(shares: tuple[float, ...]) -> float:  # the shares' centre, in bin widths
        return sum(i * p for i, p in enumerate(shares))

    # "amount" moved up by one unit: the current mass sits further right.
    assert mean(amount.current) > mean(amount.baseline) + 2
    assert amount.quantiles["current"][3] > amount.quantiles["baseline"][3] + 0.5
    channel = next(f for f in shown.features if f.name == "channel")
    assert channel.kind == "categorical" and channel.categories


def test_no_publish_leaves_the_stream_alone(model_db: Path, redis_db: redis.Redis) -> None:
    ran = stat_guard("run", "payments", "--local", "--no-publish", db_path=model_db)
    assert ran.code == 1, ran.err
    assert ran.out.splitlines()[-1].startswith("not published (--no-publish)")
    assert stream_records(redis_db) == []


def test_unknown_model_is_exit_2(model_db: Path) -> None:
    ran = stat_guard("run", "nobody", "--local", db_path=model_db)
    assert (ran.code, ran.err.strip()) == (
        2, "stat-guard: model 'nobody' is not in model_metadata")


def test_unflag_local_keeps_the_flagging_run(model_db: Path) -> None:
    flag_model(str(model_db), "payments", "payments@20261206T090000Z", "drift")
    cleared = stat_guard("unflag", "payments", "--local", db_path=model_db)
    assert (cleared.code, cleared.out.strip()) == (0, "model payments unflagged")
    assert query(model_db, "SELECT flagged, flagged_run_id FROM model_metadata") == [
        (False, "payments@20261206T090000Z")]
    again = stat_guard("unflag", "payments", "--local", db_path=model_db)
    assert again.out.strip() == "model payments was not flagged"
    unknown = stat_guard("unflag", "nobody", "--local", db_path=model_db)
    assert (unknown.code, unknown.err.strip()) == (
        2, "stat-guard: model 'nobody' is not in model_metadata")


def test_redis_unreachable_at_publish_prints_the_verdicts_and_is_exit_3(
        model_db: Path) -> None:
    port = free_port()
    ran = stat_guard("run", "payments", "--local", db_path=model_db,
                     env={"STAT_GUARD_REDIS_PORT": str(port)})
    assert ran.code == 3, ran.err
    head, _header, _rule, *rows = ran.out.splitlines()
    assert "(manual run): verdict drift" in head
    assert [row.split()[:2] for row in rows] == [["amount", "drift"], ["stable", "ok"],
                                                  ["channel", "ok"]]
    *progress, failure = ran.err.splitlines()
    assert progress[-1].startswith("writing the scores of run payments@manual-")
    assert failure.startswith(
        "stat-guard: the scores are written, but the result was not published (reactions "
        f"and stat-guard status do not see it): Redis at 127.0.0.1:{port} (db 13) is "
        "unreachable: ")
    assert "Traceback" not in ran.err
    [(run_id,)] = query(model_db, "SELECT last_run_id FROM model_metadata")
    assert run_id in head
