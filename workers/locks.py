"""Per-model Redis lock so two drift runs of one model never overlap.

``SET key token NX PX ttl`` takes it; a Lua compare-and-delete releases it only if the
token is still ours (an expired lock taken over by another run is left alone). The TTL is
longer than the drift task's hard time limit, so a live run never loses its lock, and no
longer than the broker's visibility timeout, so a run redelivered after a crash finds the
dead run's lock expired.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a model's lock: the run id and a random token."""

    run_id: str
    token: str

    @classmethod
    def parse(cls, value: str) -> LockHolder:
        run_id, _, token = value.rpartition("|")
        return cls(run_id=run_id, token=token)


class ModelLock:
    """The lock of one model. ``acquire()`` does not wait: the caller decides (the drift
    task retries later)."""

    def __init__(self, client: redis.Redis, key: str, run_id: str, ttl_s: float) -> None:
        self._client = client
        self.key = key
        self.run_id = run_id
        self.ttl_ms = int(ttl_s * 1000)
        self.value = f"{run_id}|{uuid.uuid4().hex}"
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(self._client.set(self.key, self.value, nx=True, px=self.ttl_ms))
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
