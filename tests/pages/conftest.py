"""The pages' tests use the fleet tests' configuration and Redis (database 13 of the run's
private server, flushed around each test: tests/fleet/conftest.py)."""

from __future__ import annotations

from tests.fleet.conftest import CONFIG, CONFIG_PATH, redis_db, redis_for

__all__ = ["CONFIG", "CONFIG_PATH", "redis_db", "redis_for"]  # redis_db: the fixture
