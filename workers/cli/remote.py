"""Asking the fleet from the command line: Redis must answer first (a clear line and exit 3
instead of Celery's endless reconnecting), then a task is sent by name and its result
waited for, with dots on stderr while it queues or runs."""

from __future__ import annotations

import sys
import time
from typing import Any

import redis

from workers.cli.errors import FAILED, REDIS_UNREACHABLE, CommandError
from workers.config import FleetConfig
from workers.redis_client import redis_client

_POLL_S = 0.2
_DOT_EVERY_S = 1.0


def reachable_redis(config: FleetConfig) -> redis.Redis:
    """A client of the fleet's Redis that has just answered PING; otherwise
    :class:`CommandError` with exit code 3."""
    client = redis_client(config.redis, fail_fast=True)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unreachable(config, exc) from exc
    return client


def unreachable(config: FleetConfig, exc: BaseException) -> CommandError:
    settings = config.redis
    return CommandError(f"Redis at {settings.host}:{settings.port} (db {settings.db}) is "
                        f"unreachable: {exc}", REDIS_UNREACHABLE)


def send_and_wait(config: FleetConfig, task: str, args: tuple[Any, ...], timeout_s: float,
                  worker: str = "drift") -> dict[str, Any]:
    """Send ``task`` to its queue (workers/routing.py) and wait up to ``timeout_s`` for its
    result. A worker that never takes it, or a task that fails, is a :class:`CommandError`.
    """
    reachable_redis(config)
    from workers.celery_app import app  # Celery only for the commands that send tasks

    result = app.send_task(task, args=args, retry=False)
    print(f"sent {task} ({result.id}), waiting for the {worker} worker", end="",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    next_dot = started + _DOT_EVERY_S
    try:
        while not result.ready():
            now = time.monotonic()
            if now - started > timeout_s:
                raise CommandError(
                    f"no result from the {worker} worker within {timeout_s:g} s (is "
                    f"`stat-guard worker {worker}` running?); task {result.id} stays queued")
            if now >= next_dot:
                print(".", end="", file=sys.stderr, flush=True)
                next_dot = now + _DOT_EVERY_S
            time.sleep(_POLL_S)
    finally:
        print(file=sys.stderr, flush=True)
    if result.failed():
        error = result.result
        raise CommandError(f"{task} failed on the {worker} worker: "
                           f"{type(error).__name__}: {error}", FAILED)
    value = result.result
    result.forget()
    return value if isinstance(value, dict) else {"result": value}
