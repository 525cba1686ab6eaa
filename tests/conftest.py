"""Shared test fixtures, and the servers of the run.

Every test talks to a PostgreSQL cluster and a Redis server of the run's own
(tests/servers.py), started when this file is imported and removed at the end, also after
a failure or Ctrl-C. The user's servers at PGHOST:PGPORT and on Redis port 6379 are
recorded first; the last test of the run checks they are as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.servers import stop_suite_servers, suite_servers

# The wire-format vectors live with the extension, whose pg_regress suite reads them too.
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "pg_extension" / "test" / "golden"
LAST_TEST = "test_the_run_left_the_local_servers_as_they_were"

# Before any other conftest or test module reads PGHOST, PSG_TEST_DSN or the Redis port.
suite_servers()


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_suite_servers()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The check of the user's servers runs after everything else."""
    items.sort(key=lambda item: item.name == LAST_TEST)


@pytest.fixture(scope="session")
def golden() -> dict:
    return json.loads((GOLDEN_DIR / "golden.json").read_text())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
