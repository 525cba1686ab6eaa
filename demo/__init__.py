"""`make demo`: the whole pg_stat_guard story on a machine with local PostgreSQL and Redis."""
