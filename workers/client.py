"""For the owner's local system: feed values, and when the cheap 3σ signal fires, ask for
an on-demand analysis in PostgreSQL, at most once per cool-down per source.

    signal = DriftSignalClient(source="public.events", time_column="created_at",
                               value_columns=["amount"])
    for value in incoming:
        if signal.observe(value):
            print("analysis requested")

The cool-down is shared through Redis (``SET NX PX``), so several processes watching the
same source still send one request per period; a burst of outliers costs one analysis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from stat_guard.signal import ThreeSigmaSignal
from workers.config import FleetConfig, get_config
from workers.redis_client import redis_client
from workers.routing import RUN_ONDEMAND_ANALYSIS

logger = logging.getLogger(__name__)

Enqueue = Callable[[dict[str, Any]], Any]


def cooldown_key(fleet: FleetConfig, source: str) -> str:
    return fleet.redis.key("cooldown", source or "default")


class DriftSignalClient:
    """A 3σ signal over one source's values that enqueues the on-demand analysis
    (``stat_guard.run_ondemand_analysis``, by name: the caller needs no task code)."""

    def __init__(self, source: str | None = None, time_column: str | None = None,
                 value_columns: Sequence[str] | None = None, window: str | None = None,
                 category_columns: Sequence[str] | None = None,
                 model: str | None = None, cooldown_s: float | None = None,
                 signal: ThreeSigmaSignal | None = None,
                 client: redis.Redis | None = None, enqueue: Enqueue | None = None,
                 config: FleetConfig | None = None) -> None:
        self.config = config or get_config()
        settings = self.config.ondemand
        self.source = source if source is not None else settings.source
        self.time_column = time_column or settings.time_column
        self.value_columns = list(value_columns or settings.value_columns)
        self.category_columns = list(category_columns or settings.category_columns)
        self.window = window or settings.window
        self.model = model or settings.model
        self.cooldown_s = settings.cooldown_s if cooldown_s is None else cooldown_s
        self.signal = signal or ThreeSigmaSignal(sigmas=settings.sigmas,
                                                 warmup=settings.warmup)
        self._client = client or redis_client(self.config.redis)
        self._enqueue = enqueue or _enqueue_task
        self._quiet_until = 0.0  # local copy of the cool-down: no Redis call while quiet
        self.requests = 0
        self.suppressed = 0

    def observe(self, value: float | None) -> bool:
        """Add one value; True when it fired the signal and an analysis was enqueued."""
        if not self.signal.update(value):
            return False
        now = time.monotonic()
        if now < self._quiet_until:
            self.suppressed += 1
            return False
        key = cooldown_key(self.config, self.source)
        if not self._client.set(key, "1", nx=True, px=max(1, int(self.cooldown_s * 1000))):
            remaining_ms = self._client.pttl(key)
            self._quiet_until = now + max(0, remaining_ms) / 1000
            self.suppressed += 1
            return False
        self._quiet_until = now + self.cooldown_s
        self._enqueue(self._task_kwargs())
        self.requests += 1
        logger.info("3σ signal on %s (value %s): on-demand analysis enqueued",
                    self.source or "the configured source", value)
        return True

    def observe_many(self, values: Iterable[float | None]) -> int:
        """Add many values; how many analyses were enqueued (0 or 1 per cool-down)."""
        return sum(self.observe(value) for value in values)

    def _task_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"window": self.window, "model": self.model or None}
        if self.source:
            kwargs.update(source=self.source, time_column=self.time_column or None,
                          value_columns=self.value_columns or None)
            if self.category_columns:  # only when set: workers of earlier releases lack it
                kwargs["category_columns"] = self.category_columns
        return kwargs


def _enqueue_task(kwargs: dict[str, Any]) -> Any:
    from workers.celery_app import app  # reads the configuration: only when first needed

    return app.send_task(RUN_ONDEMAND_ANALYSIS, kwargs=kwargs)
