"""``stat-guard run`` and ``stat-guard unflag`` through the fleet when Redis answers but no
drift worker runs: each gives up within its ``--timeout`` with one line and exit code 2,
never a traceback; the task it sent stays queued (this test's Redis database is flushed
after it, so no later worker takes it)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from tests.cli.conftest import CONFIG, Outcome, stat_guard
from workers.cli.errors import FAILED

TIMEOUT_S = 2.0


def test_run_and_unflag_without_a_drift_worker_give_up_within_their_timeout(
        model_db: Path, redis_db: redis.Redis) -> None:
    def timed(*argv: str) -> tuple[Outcome, float]:
        began = time.monotonic()
        done = stat_guard(*argv, "--timeout", f"{TIMEOUT_S:g}", db_path=model_db, timeout=30)
        return done, time.monotonic() - began

    with ThreadPoolExecutor(2) as pool:  # side by side: the two waits overlap
        ran, unflagged = pool.map(lambda argv: timed(*argv),
                                  [("run", "payments"), ("unflag", "payments")])
    for (done, took), task in ((ran, "stat_guard.run_model_drift"),
                               (unflagged, "stat_guard.unflag_model")):
        assert done.code == FAILED, done.err
        assert done.out == "" and "Traceback" not in done.err
        sent, error = done.err.strip().splitlines()
        assert sent.startswith(f"sent {task} (") and "waiting for the drift worker" in sent
        assert error.startswith(f"stat-guard: no result from the drift worker within "
                                f"{TIMEOUT_S:g} s (is `stat-guard worker drift` running?); "
                                f"task ")
        assert error.endswith(" stays queued")
        # The wait ends at the timeout; the rest is the interpreter starting.
        assert TIMEOUT_S <= took < TIMEOUT_S + 8, took
    assert redis_db.llen(CONFIG.queues.drift) == 2
