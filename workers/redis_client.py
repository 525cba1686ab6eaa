"""The fleet's own Redis client (stream, locks, markers, counters), one per process.

It retries commands through a Redis restart, so a result computed during a restart is
still published once Redis is back.
"""

from __future__ import annotations

import os

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from workers.config import RedisConfig, get_config

_clients: dict[tuple[int, RedisConfig, bool], redis.Redis] = {}


def redis_client(config: RedisConfig | None = None, fail_fast: bool = False) -> redis.Redis:
    """A client for ``config`` (default: the process configuration), made once per process
    (a forked pool process gets its own, never its parent's sockets). ``fail_fast``: half a
    second per command and no retries, for work that may be skipped."""
    config = config or get_config().redis
    key = (os.getpid(), config, fail_fast)
    client = _clients.get(key)
    if client is None:
        if fail_fast:
            timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5,
                        "retry": Retry(NoBackoff(), 0)}
        else:
            # about 40 s of retries in all: a restart, not an outage
            timeouts = {"socket_timeout": config.socket_timeout_s,
                        "socket_connect_timeout": config.socket_connect_timeout_s,
                        "retry": Retry(ExponentialBackoff(cap=4.0, base=0.1), 14),
                        "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
        client = redis.Redis(
            host=config.host, port=config.port, db=config.db,
            username=config.username or None, password=config.password or None,
            socket_keepalive=True, health_check_interval=25, decode_responses=True,
            **timeouts)
        _clients[key] = client
    return client
