"""The per-backend window cache (pg_stat_guard.window_cache_bucket): settled buckets are
aggregated once and merged into later windows; the digests it ships agree with an
uncached analysis, rows inside the settle time are always seen, and every case where a
cache would be wrong (a writing transaction, RLS, a TRUNCATE) bypasses or drops it."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql

from stat_guard.wire import decode_envelope, encode_digest
from tests.perform_drift_analysis.conftest import analyze

CACHE = {"pg_stat_guard.window_cache_bucket": "10", "pg_stat_guard.window_cache_settle": "30"}


@pytest.fixture(scope="module")
def cached_source(module_sources):
    return module_sources.create(current_rows=30_000, hist_rows=20_000)


def _settings(conn, **settings):
    for name, value in settings.items():
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(*name.split(".")),
                                                   sql.Literal(value)))


def _shipped(fault):
    return decode_envelope(fault.requests[-1].body).columns


def _cdf_error(digest, values: np.ndarray) -> float:
    """Largest gap between the digest's CDF and the exact one, at every value."""
    ordered = np.sort(values)
    exact = np.searchsorted(ordered, ordered, side="right") / ordered.size
    return float(np.max(np.abs(np.asarray(digest.cdf(ordered)) - exact)))


def test_a_cached_window_ships_what_an_uncached_one_does(cached_source, config, fault,
                                                         new_conn):
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    columns = ["amount", "latency", "score"]
    with conn.transaction():  # one now() for the three calls
        plain = analyze(conn, source=cached_source.qualified, columns=columns)
        uncached = _shipped(fault)
        _settings(conn, **CACHE)
        first = analyze(conn, source=cached_source.qualified, columns=columns)
        filled = _shipped(fault)
        second = analyze(conn, source=cached_source.qualified, columns=columns)
        reused = _shipped(fault)
        rows = conn.execute(sql.SQL(
            "SELECT amount, latency, score FROM {} WHERE created_at >= now() - "
            "interval '15 minutes' AND created_at < now()").format(
                cached_source.ident)).fetchall()
    exact_values = {name: np.array([row[i] for row in rows], dtype=float)
                    for i, name in enumerate(columns)}
    assert "window_cache" not in plain["analysis"]
    cache_first = first["analysis"]["window_cache"]
    cache_second = second["analysis"]["window_cache"]
    # [now - 15 min, now - 30 s) holds 87 or 88 whole 10 s buckets, some of them as one
    # 10-minute block (60 buckets merged into one entry): all aggregated once...
    assert cache_first["buckets"] in (27, 28, 29, 86, 87, 88)
    assert cache_first["aggregated"] == cache_first["buckets"]
    # ... and merged from the cache the second time
    assert cache_second == {**cache_first, "aggregated": 0}
    assert plain["analysis"]["rows"] == first["analysis"]["rows"] == second["analysis"]["rows"]
    for name in columns:
        exact, cached, again = uncached[name].current, filled[name].current, reused[name].current
        assert cached.count == again.count == exact.count == 30_000
        assert (cached.min, cached.max) == (exact.min, exact.max)
        assert cached.sum == pytest.approx(exact.sum, rel=1e-9)
        assert encode_digest(again) == encode_digest(cached)
        # merged bucket digests are as close to the exact CDF as one digest of the window
        # (the core library's accuracy target is 0.01)
        single_error = _cdf_error(exact, exact_values[name])
        merged_error = _cdf_error(cached, exact_values[name])
        print(f"{name}: CDF error of one digest {single_error:.4f}, merged {merged_error:.4f}")
        assert merged_error < 0.01, name
        assert cached.quantile(0.5) == pytest.approx(exact.quantile(0.5), rel=0.01)


def test_fallback_baseline_windows_are_cached_too(cached_source, config, fault, new_conn):
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    _settings(conn, **CACHE, **{"pg_stat_guard.fallback_baseline_window": "2h"})
    with conn.transaction():
        first = analyze(conn, source=cached_source.qualified, columns=["amount"])
        second = analyze(conn, source=cached_source.qualified, columns=["amount"])
        exact = conn.execute(sql.SQL(
            "SELECT count(*) FROM {} WHERE created_at >= now() - interval '15 minutes' "
            "- interval '2 hours' AND created_at < now() - interval '15 minutes'").format(
                cached_source.ident)).fetchone()[0]
    # 2 h 15 min minus the unsettled 30 s is 807 buckets of 10 s; the 2-hour part merges
    # 11 or 12 blocks of 10 minutes and at most 2 × 59 buckets, the current part at most 88
    assert 12 <= first["analysis"]["window_cache"]["buckets"] <= 12 + 2 * 59 + 88
    assert second["analysis"]["window_cache"]["aggregated"] == 0
    assert first["analysis"]["baselines"]["amount"]["kind"] == "previous_window"
    assert _shipped(fault)["amount"].baseline.count == exact
    assert exact > 0


def test_new_rows_inside_the_settle_time_are_seen_and_late_rows_are_not(
        sources, config, fault, new_conn, admin):
    source = sources.create(current_rows=5_000, hist_rows=1_000)
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    _settings(conn, **CACHE)
    before = analyze(conn, source=source.qualified, columns=["amount"])
    # fresh rows (inside the settle time) and late rows (timestamped 5 minutes ago, in a
    # bucket the cache already holds)
    admin.execute(sql.SQL("INSERT INTO {} (created_at, amount) SELECT now() - interval '2 s', "
                          "1 FROM generate_series(1, 40)").format(source.ident))
    admin.execute(sql.SQL("INSERT INTO {} (created_at, amount) SELECT now() - "
                          "interval '5 minutes', 2 FROM generate_series(1, 7)").format(
                              source.ident))
    after = analyze(conn, source=source.qualified, columns=["amount"])
    assert after["analysis"]["rows"] == before["analysis"]["rows"] + 40
    # ANALYZE keeps the cache (it runs every few seconds under heavy ingest)
    admin.execute(sql.SQL("ANALYZE {}").format(source.ident))
    kept = analyze(conn, source=source.qualified, columns=["amount"])
    assert kept["analysis"]["rows"] == before["analysis"]["rows"] + 40
    # a new backend has no cache and sees all 47; so does this one once the table has a
    # new relfilenode (here VACUUM FULL)
    fresh = analyze(new_conn(**CACHE), source=source.qualified, columns=["amount"])
    assert fresh["analysis"]["rows"] == before["analysis"]["rows"] + 47
    admin.execute(sql.SQL("VACUUM FULL {}").format(source.ident))
    rebuilt = analyze(conn, source=source.qualified, columns=["amount"])
    assert rebuilt["analysis"]["rows"] == before["analysis"]["rows"] + 47
    assert rebuilt["analysis"]["window_cache"]["aggregated"] == \
        rebuilt["analysis"]["window_cache"]["buckets"]


def test_truncate_drops_the_cached_buckets(sources, config, fault, new_conn, admin):
    source = sources.create(current_rows=5_000, hist_rows=1_000)
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    _settings(conn, **CACHE)
    assert analyze(conn, source=source.qualified, columns=["amount"])["analysis"]["rows"] > 0
    admin.execute(sql.SQL("TRUNCATE {}").format(source.ident))
    emptied = analyze(conn, source=source.qualified, columns=["amount"])
    assert emptied["analysis"]["rows"] == 0
    assert _shipped(fault)["amount"].current.count == 0


def test_a_transaction_that_wrote_rows_bypasses_the_cache(sources, config, fault, new_conn):
    source = sources.create(current_rows=5_000, hist_rows=1_000)
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    _settings(conn, **CACHE)
    base = analyze(conn, source=source.qualified, columns=["amount"])["analysis"]["rows"]
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("INSERT INTO {} (created_at, amount) SELECT now() - "
                             "interval '5 minutes', 3 FROM generate_series(1, 11)").format(
                                 source.ident))
        inside = analyze(conn, source=source.qualified, columns=["amount"])
        assert "window_cache" not in inside["analysis"]
        assert inside["analysis"]["rows"] == base + 11
    # the rolled-back rows never reached the cache
    again = analyze(conn, source=source.qualified, columns=["amount"])
    assert again["analysis"]["rows"] == base
    assert again["analysis"]["window_cache"]["aggregated"] <= 2  # only newly settled buckets


def test_roles_never_share_buckets_and_rls_or_timestamp_columns_bypass_the_cache(
        sources, config, fault, new_conn, admin):
    source = sources.create(current_rows=2_000, hist_rows=500)
    config.apply(function_url=fault.url("ok-fast"))
    role = f"psg_cache_{uuid.uuid4().hex[:8]}"
    r = sql.Identifier(role)
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER").format(r))
    try:
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(source.schema), r))
        admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(source.ident, r))
        admin.execute(sql.SQL("ALTER TABLE {} ADD COLUMN local_ts timestamp").format(
            source.ident))
        admin.execute(sql.SQL("UPDATE {} SET local_ts = created_at").format(source.ident))
        conn = new_conn()
        _settings(conn, **CACHE)
        mine = analyze(conn, source=source.qualified, columns=["amount"])
        cache = mine["analysis"]["window_cache"]
        assert cache["aggregated"] == cache["buckets"] > 0
        # the same backend as another role: its own buckets, aggregated with its privileges
        conn.execute(sql.SQL("SET ROLE {}").format(r))
        theirs = analyze(conn, source=source.qualified, columns=["amount"])
        theirs_cache = theirs["analysis"]["window_cache"]
        assert theirs_cache["aggregated"] == theirs_cache["buckets"] > 0
        assert theirs["analysis"]["rows"] == mine["analysis"]["rows"]
        # row-level security for that role: no cache, and only the rows it may see
        admin.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(source.ident))
        admin.execute(sql.SQL("CREATE POLICY amount_only ON {} TO {} USING (amount > 100)"
                              ).format(source.ident, r))
        secured = analyze(conn, source=source.qualified, columns=["amount"])
        assert "window_cache" not in secured["analysis"]
        assert 0 < secured["analysis"]["rows"] < mine["analysis"]["rows"]
        conn.execute("RESET ROLE")
        # a timestamp-without-time-zone column: bucket bounds would follow TimeZone
        plain_ts = conn.execute(
            "SELECT perform_drift_analysis('15 minutes', %s::regclass, 'local_ts', "
            "ARRAY['amount']::name[])", [source.qualified]).fetchone()[0]
        assert "window_cache" not in plain_ts["analysis"]
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(r))
        admin.execute(sql.SQL("DROP ROLE {}").format(r))


def test_a_full_cache_still_answers_correctly(cached_source, config, fault, new_conn):
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    # compression 2000 keeps a block's ~3,000 values nearly whole: about 27 kB per block
    # and column, several hundred kB for the window, far over the 64 kB allowed
    _settings(conn, **{**CACHE, "pg_stat_guard.window_cache_bucket": "1",
                       "pg_stat_guard.window_cache_size": "64kB",
                       "pg_stat_guard.compression": "2000"})
    columns = ["amount", "latency"]
    with conn.transaction():
        first = analyze(conn, source=cached_source.qualified, columns=columns)
        second = analyze(conn, source=cached_source.qualified, columns=columns)
    assert first["analysis"]["rows"] == second["analysis"]["rows"] == 30_000
    # the buckets that did not fit are aggregated again on every call; the answer is whole
    print(f"\nfull cache: {second['analysis']['window_cache']}")
    assert second["analysis"]["window_cache"]["aggregated"] > 5
    assert all(_shipped(fault)[name].current.count == 30_000 for name in columns)


def test_settings_are_validated(new_conn):
    conn = new_conn()
    conn.execute("LOAD 'pg_stat_guard'")  # otherwise SET just makes a placeholder
    for name, bad in (("window_cache_bucket", "-1"), ("window_cache_bucket", "2d"),
                      ("window_cache_settle", "-5"), ("window_cache_size", "1kB")):
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql.SQL("SET {} = {}").format(
                sql.Identifier("pg_stat_guard", name), sql.Literal(bad)))
        assert info.value.sqlstate == "22023", (name, bad, str(info.value))


def test_invalidations_in_the_middle_of_calls_leave_answers_whole(sources, config, fault,
                                                                 new_conn, admin):
    """Another session rewrites the table (VACUUM FULL: a new relfilenode, a relcache
    invalidation) over and over while analyses with a cached current window and a cached
    previous window run: a rewrite may land between two calls or between reading cached
    buckets and storing new ones; every answer must still count every row."""
    import threading

    source = sources.create(current_rows=6_000, hist_rows=3_000)
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    _settings(conn, **CACHE, **{"pg_stat_guard.fallback_baseline_window": "1h"})
    rewrites_seen = set()
    churn = new_conn()
    stop = threading.Event()

    def invalidate() -> None:
        while not stop.is_set():
            churn.execute(sql.SQL("VACUUM FULL {}").format(source.ident))
            stop.wait(0.02)

    worker = threading.Thread(target=invalidate, daemon=True)
    worker.start()
    try:
        counts = set()
        for _ in range(150):
            result = analyze(conn, source=source.qualified, columns=["amount", "latency"])
            counts.add(result["analysis"]["rows"])
            rewrites_seen.add(result["analysis"]["window_cache"]["aggregated"] > 0)
            shipped = _shipped(fault)
            assert shipped["amount"].current.count == shipped["latency"].current.count
    finally:
        stop.set()
        worker.join(10)
    assert counts == {6_000}
    assert rewrites_seen == {True, False}  # calls after a rewrite aggregated afresh
