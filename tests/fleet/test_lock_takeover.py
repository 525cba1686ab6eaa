"""A run redelivered after its worker died takes over its own lock at once; a live
duplicate and a different run still wait (the real Redis; the task path with a real
worker whose pool process is killed mid-run)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from tests.fleet.conftest import CONFIG, ROOT, Fleet
from tests.fleet.support import demo_database, records_by_run
from tests.local import wait_for
from tests.servers import private_redis_port
from workers.celery_app import app
from workers.locks import LockHolder, ModelLock
from workers.routing import RUN_MODEL_DRIFT

KEY = "stat_guard:lock:model:churn"
TTL_S = 3500.0

# A process that takes the lock as run ``argv[1]`` and then sleeps until it is killed.
HOLDER = f"""
import sys, time, redis
from workers.locks import ModelLock
client = redis.Redis(port={private_redis_port()}, db={CONFIG.redis.db}, decode_responses=True)
assert ModelLock(client, {KEY!r}, sys.argv[1], {TTL_S}).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _holder(run_id: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, run_id], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_same_run_takes_over_a_dead_processs_lock_at_once(redis_db: redis.Redis) -> None:
    holder = _holder("churn@slot")
    dead_value = redis_db.get(KEY)
    _kill(holder)  # no release: the lock stays for the whole TTL
    assert redis_db.pttl(KEY) > (TTL_S - 60) * 1000

    lock = ModelLock(redis_db, KEY, "churn@slot", TTL_S)
    assert lock.acquire()
    assert lock.taken_over == LockHolder.parse(dead_value)
    assert redis_db.get(KEY) == lock.value
    assert lock.release() and not redis_db.exists(KEY)


def test_a_live_duplicate_is_not_taken_over(redis_db: redis.Redis) -> None:
    holder = _holder("churn@slot")
    try:
        value = redis_db.get(KEY)
        assert not ModelLock(redis_db, KEY, "churn@slot", TTL_S).acquire()
        assert redis_db.get(KEY) == value
    finally:
        _kill(holder)


def test_another_run_waits_even_for_a_dead_holder(redis_db: redis.Redis) -> None:
    holder = _holder("churn@slot-1")
    _kill(holder)
    value = redis_db.get(KEY)
    assert not ModelLock(redis_db, KEY, "churn@slot-2", TTL_S).acquire()
    assert redis_db.get(KEY) == value


def test_a_holder_on_another_host_with_the_same_run_is_taken_over(
        redis_db: redis.Redis) -> None:
    redis_db.set(KEY, "churn@slot|elsewhere:1:123|token", px=int(TTL_S * 1000))
    lock = ModelLock(redis_db, KEY, "churn@slot", TTL_S)
    assert lock.acquire() and lock.taken_over.process == "elsewhere:1:123"


def test_a_value_of_the_former_format_with_the_same_run_is_taken_over(
        redis_db: redis.Redis) -> None:
    redis_db.set(KEY, "churn@slot|0123abcd", px=int(TTL_S * 1000))
    assert LockHolder.parse("churn@slot|0123abcd") == LockHolder("churn@slot", "0123abcd")
    assert ModelLock(redis_db, KEY, "churn@slot", TTL_S).acquire()


def test_pool_process_killed_mid_run_redelivered_run_takes_over_its_lock(
        fleet: Fleet, redis_db: redis.Redis, tmp_path: Path) -> None:
    demo = demo_database(tmp_path / "fleet.duckdb")
    model = demo.production_models[0]
    run_id = f"{model}@pool-kill"
    fleet.env["STAT_GUARD_TESTING_DRIFT_DELAY_S"] = "4"
    worker = fleet.worker("drift")
    result = app.send_task(RUN_MODEL_DRIFT, args=(model, run_id))
    lock_key = f"stat_guard:lock:model:{model}"
    wait_for(lambda: redis_db.exists(lock_key), timeout=30, what="the run to take its lock")
    (pool,) = worker.child_pids()
    killed_at = time.monotonic()
    subprocess.run(["kill", "-9", str(pool)], check=True)  # the pool process only

    outcome = result.get(timeout=60)
    took = time.monotonic() - killed_at
    assert outcome["status"] == "published"
    # Without the takeover the redelivered run waits for the dead run's lock to expire
    # (limits.model_lock_ttl_s, 17 s here); with it, only the 4 s test delay remains.
    assert took < CONFIG.limits.model_lock_ttl_s - 5, (took, worker.log()[-3000:])
    assert "took over its own lock from a dead run" in worker.log()
    assert len(records_by_run(redis_db)[run_id]) == 1
