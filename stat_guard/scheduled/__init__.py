"""Scheduled drift over DuckDB, without Celery: the fleet's drift tasks (tasks/scheduled.py)
call :mod:`stat_guard.scheduled.engine`. See docs/scheduled-drift.md."""
