"""Per-model Redis lock so two drift runs of one model never overlap.

``SET key value NX PX ttl`` takes it; the value is ``<run id>|<host>:<pid>:<start>|<token>``
(who holds it: the run, its process and that process's start time, and a random token). A
Lua compare-and-delete releases it only if the value is still ours (an expired lock taken
over by another run is left alone). The TTL is longer than the drift task's hard time
limit, so a live run never loses its lock.

**Takeover.** A run that finds the lock held by *its own run id* (it is the redelivery of
a run whose worker died mid-run) takes the lock over at once, with a Lua compare-and-set
against the exact value it saw, instead of waiting for the TTL (about an hour). The one
exception is a holder on this host whose process is still alive with the same start time:
that is a live duplicate of the run, and this one waits for it like for any other run. A
holder on another host cannot be checked and is taken over (at worst a live duplicate
then computes twice; the engine's write is idempotent by run id and the stream entry is
published once). A different run id is never taken over: that run waits.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import redis

from workers.drift_pause import process_start_time, process_state

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Replace the lock's value only if it is still the one we saw (the dead run's).
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""


def this_process() -> str:
    """``<host>:<pid>:<start time>`` of the calling process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a model's lock: the run id, its process (``host:pid:start``, "" when the
    value predates it) and a random token."""

    run_id: str
    token: str
    process: str = ""

    @classmethod
    def parse(cls, value: str) -> LockHolder:
        parts = value.rsplit("|", 2)
        if len(parts) == 3:
            return cls(run_id=parts[0], process=parts[1], token=parts[2])
        run_id, _, token = value.rpartition("|")
        return cls(run_id=run_id, token=token)

    def alive_here(self) -> bool:
        """True when the holder is a process of this host that still runs (same pid and
        start time, not a zombie) and is not the caller itself."""
        host, _, rest = self.process.partition(":")
        pid_text, _, started = rest.partition(":")
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return False  # our own earlier attempt, which is over
        if started == "?" or process_start_time(pid) != started:
            return False
        return process_state(pid) not in ("Z", "X", None)  # a zombie is dead too


class ModelLock:
    """The lock of one model. ``acquire()`` does not wait: the caller decides (the drift
    task retries later)."""

    def __init__(self, client: redis.Redis, key: str, run_id: str, ttl_s: float) -> None:
        self._client = client
        self.key = key
        self.run_id = run_id
        self.ttl_ms = int(ttl_s * 1000)
        self.value = f"{run_id}|{this_process()}|{uuid.uuid4().hex}"
        self.held = False
        self.taken_over: LockHolder | None = None  # the dead run's holder, if taken over

    def acquire(self) -> bool:
        """Take the lock if it is free, or take it over from a dead run of the same run id
        (see the module's docstring)."""
        self.held = bool(self._client.set(self.key, self.value, nx=True, px=self.ttl_ms))
        if self.held:
            return True
        seen = self._client.get(self.key)
        if not seen:
            return False  # released meanwhile: the caller tries again later
        holder = LockHolder.parse(seen)
        if holder.run_id != self.run_id or holder.alive_here():
            return False
        self.held = bool(self._client.eval(_TAKE_OVER, 1, self.key, seen, self.value,
                                           self.ttl_ms))
        if self.held:
            self.taken_over = holder
        return self.held

    def holder(self) -> LockHolder | None:
        value = self._client.get(self.key)
        return LockHolder.parse(value) if value else None

    def release(self) -> bool:
        """Delete the lock if it is still ours; False if it expired or was taken over."""
        if not self.held:
            return False
        self.held = False
        return bool(self._client.eval(_RELEASE, 1, self.key, self.value))
