"""The test run leaves the user's own PostgreSQL and Redis as it found them: it works on
servers of its own (tests/servers.py). The check itself is shown to see each kind of
change on a cluster and a Redis started for that purpose."""

from __future__ import annotations

import psycopg

from tests.servers import (
    PostgresCluster,
    RedisServer,
    local_servers_snapshot,
    snapshot_differences,
    suite_servers,
)


def test_the_snapshot_sees_a_setting_an_extension_a_database_a_role_and_a_redis_key():
    cluster, redis_server = PostgresCluster.start(), RedisServer.start()
    try:
        def snapshot() -> dict[str, object]:
            return local_servers_snapshot(cluster.dsn("postgres"), redis_port=redis_server.port)

        before = snapshot()
        assert snapshot_differences(before, snapshot()) == []
        changes = [
            ("ALTER SYSTEM SET work_mem = '7MB'", "ALTER SYSTEM RESET work_mem",
             "postgresql.auto.conf"),
            ("CREATE EXTENSION pg_stat_guard", "DROP EXTENSION pg_stat_guard",
             "/extensions/test"),
            ("CREATE DATABASE probe", "DROP DATABASE probe", "/databases"),
            ("CREATE ROLE probe", "DROP ROLE probe", "/roles"),
        ]
        for change, undo, where in changes:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(change)
            differences = snapshot_differences(before, snapshot())
            assert differences and all(where in d or "/extensions/probe" in d
                                       for d in differences), (change, differences)
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(undo)
            assert snapshot_differences(before, snapshot()) == [], undo
        redis_server.client().set("probe", "1")
        differences = snapshot_differences(before, snapshot())
        assert differences == ["/redis_db0_keys: removed [], added ['probe']"]
        redis_server.client().delete("probe")
        assert snapshot_differences(before, snapshot()) == []
    finally:
        redis_server.stop()
        cluster.stop()


def test_the_run_left_the_local_servers_as_they_were():
    """Runs last (tests/conftest.py orders it so): nothing of the run reached them."""
    suite = suite_servers()
    assert suite.postgres.port != 5432 and suite.redis.port != 6379
    differences = snapshot_differences(suite.local_before, suite.local_now())
    assert differences == [], "\n".join(differences)
