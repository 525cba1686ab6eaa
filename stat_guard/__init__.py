"""pg_stat_guard core: t-digests, the shared wire format, drift statistics and verdicts,
the result record of the Redis Stream and the scheduled drift engine over DuckDB
(``stat_guard.scheduled``).

The verdict service (and the Azure Function around it), the Celery tasks, the demos and
the tests import this package, so every formula and threshold lives here once; it
imports nothing of the worker fleet (``workers``, ``tasks``).
"""

# The release, written once for Python; tests/core/test_shared_constants.py checks that
# pyproject.toml and the extension's control file and SQL script carry the same.
__version__ = "0.1.0"
