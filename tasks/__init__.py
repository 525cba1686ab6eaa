"""The Celery tasks: scheduled drift over DuckDB, on-demand PostgreSQL analyses, baseline
refreshes, reactions. Only Celery's discovery imports them (``workers.celery_app``)."""
