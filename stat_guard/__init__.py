"""pg_stat_guard core: t-digests, the shared wire format, drift statistics and verdicts.

The Azure Function, the Celery tasks and the tests all import this package, so every
formula and threshold lives here once.
"""

__version__ = "0.1.0"
