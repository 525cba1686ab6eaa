"""Celery tasks: scheduled drift over DuckDB, on-demand PostgreSQL analyses, reactions."""
