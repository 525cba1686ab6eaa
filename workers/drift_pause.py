"""Pause the drift runs of this host while an on-demand analysis is in flight.

Niceness 19 and SCHED_IDLE give on-demand work the CPU, but a drift run scanning memory on
the other core still slows it through shared caches (measured: +3 ms median, +9 ms p99 on
a 2-CPU machine, bench/bench_fleet.py). So an on-demand task stops the drift pool
processes of its own host (SIGSTOP) from the moment it is received until it is done, and
continues them (SIGCONT) when the last one in flight finishes.

Safety: the count of analyses in flight lives in Redis with a TTL; every drift worker's
main process runs a watchdog that continues its stopped pool processes within a second
once that count is gone (its owner crashed, it expired, Redis restarted) or Redis cannot
be reached. A pool process is only signalled if its pid still has the start time it
registered with (no stray signal to a reused pid). Only processes of the same host are
ever signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable

import redis

from workers.config import FleetConfig

logger = logging.getLogger(__name__)


def _host() -> str:
    return socket.gethostname()


def pool_key(config: FleetConfig, host: str | None = None) -> str:
    return config.redis.key("drift", "pool", host or _host())


def active_key(config: FleetConfig, host: str | None = None) -> str:
    return config.redis.key("ondemand", "active", host or _host())


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_state(pid: int) -> str | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def register_drift_process(client: redis.Redis, config: FleetConfig, pid: int) -> None:
    """Called by a drift pool process when it starts."""
    started = process_start_time(pid)
    if started is not None:
        client.hset(pool_key(config), str(pid), started)


def unregister_drift_process(client: redis.Redis, config: FleetConfig, pid: int) -> None:
    client.hdel(pool_key(config), str(pid))


def _signal_drift(client: redis.Redis, config: FleetConfig, sig: int) -> int:
    signalled = 0
    for pid_text, started in client.hgetall(pool_key(config)).items():
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        if process_start_time(pid) != started:
            client.hdel(pool_key(config), pid_text)  # gone, or the pid was reused
            continue
        try:
            os.kill(pid, sig)
            signalled += 1
        except ProcessLookupError:
            client.hdel(pool_key(config), pid_text)
        except PermissionError:
            logger.warning("no permission to signal drift process %d", pid)
    return signalled


def pause_drift(client: redis.Redis, config: FleetConfig) -> None:
    """One more analysis in flight; the first stops the host's drift pool processes."""
    key = active_key(config)
    with client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, max(1, int(config.ondemand.pause_max_s)))
        in_flight, _ = pipe.execute()
    if int(in_flight) == 1:
        _signal_drift(client, config, signal.SIGSTOP)


def resume_drift(client: redis.Redis, config: FleetConfig) -> None:
    """One analysis fewer in flight; the last continues the drift pool processes."""
    key = active_key(config)
    if int(client.decr(key)) <= 0:
        client.delete(key)
        _signal_drift(client, config, signal.SIGCONT)


def continue_stopped(pids: Iterable[int]) -> int:
    """SIGCONT every pid in ``pids`` that is stopped; how many were."""
    continued = 0
    for pid in pids:
        if process_state(pid) == "T":
            try:
                os.kill(pid, signal.SIGCONT)
                continued += 1
            except ProcessLookupError:
                pass
    return continued


def watch(client: redis.Redis, config: FleetConfig, children: Callable[[], list[int]],
          stop: threading.Event, interval_s: float = 1.0) -> None:
    """The drift worker's watchdog loop: continue stopped children when no analysis is
    in flight (or Redis cannot say)."""
    while not stop.wait(interval_s):
        try:
            in_flight = client.exists(active_key(config))
        except redis.RedisError:
            in_flight = 0  # fail open: never leave a drift run stopped on a guess
        if not in_flight:
            continued = continue_stopped(children())
            if continued:
                logger.warning("continued %d drift process(es) left stopped", continued)
