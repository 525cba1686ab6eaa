"""Never stall ingest: the AccessShareLock on the source is gone before the HTTP wait, so
an ALTER TABLE queued during a slow call, and the INSERTs queued behind it, do not wait
for the drift function."""

from __future__ import annotations

import threading
import time

from psycopg import sql

from tests.perform_drift_analysis.conftest import call_in_thread, connect

HTTP_WAIT = 3.0


def test_lock_is_released_before_the_http_wait(config, fault, sources, admin):
    source = sources.create(current_rows=3000, hist_rows=20000)
    config.apply(function_url=fault.url(f"slow/{HTTP_WAIT}/ok-fast"), timeout=20000)
    relids = [r[0] for r in admin.execute(
        "SELECT %s::regclass::oid UNION ALL SELECT indexrelid FROM pg_index "
        "WHERE indrelid = %s::regclass", [source.qualified, source.qualified]).fetchall()]

    stop = threading.Event()
    inserts: list[tuple[float, float]] = []  # (started, seconds)
    insert_errors: list[BaseException] = []

    def insert_loop() -> None:
        try:
            with connect() as conn:
                statement = sql.SQL("INSERT INTO {} (amount, latency, score, label) "
                                    "VALUES (100, 50, 0.5, 1)").format(source.ident)
                while not stop.is_set():
                    started = time.monotonic()
                    conn.execute(statement)
                    inserts.append((started, time.monotonic() - started))
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the main thread
            insert_errors.append(exc)

    inserter = threading.Thread(target=insert_loop, daemon=True)
    inserter.start()
    time.sleep(0.3)

    thread, box = call_in_thread(connect, source=source.qualified, columns=["amount", "latency"])
    fault.wait_for_requests(1, timeout=10)
    waiting_since = time.monotonic()
    time.sleep(0.1)
    held = admin.execute(
        "SELECT relation::regclass::text, mode, granted FROM pg_locks "
        "WHERE pid = %s AND locktype = 'relation' AND relation = ANY(%s)",
        [box["pid"], relids]).fetchall()
    all_relation_locks = admin.execute(
        "SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = %s "
        "AND locktype = 'relation'", [box["pid"]]).fetchall()

    alter_started = time.monotonic()
    with connect() as ddl:
        ddl.execute("SET lock_timeout = '10s'")
        ddl.execute(sql.SQL("ALTER TABLE {} ADD COLUMN extra int").format(source.ident))
    alter_ended = time.monotonic()

    thread.join(HTTP_WAIT + 10)
    call_ended = box["attempt"].ended
    time.sleep(0.2)
    stop.set()
    inserter.join(10)

    during = [seconds for started, seconds in inserts if started >= waiting_since - 0.5]
    worst_insert = max(during) if during else float("nan")
    alter_seconds = alter_ended - alter_started
    print(f"\nduring the {HTTP_WAIT:.0f} s HTTP wait: caller's relation locks "
          f"{all_relation_locks}; ALTER TABLE took {alter_seconds * 1e3:.1f} ms and ended "
          f"{(call_ended - alter_ended):.2f} s before the call; {len(during)} INSERTs, "
          f"longest {worst_insert * 1e3:.1f} ms")
    assert insert_errors == []
    assert box["attempt"].error is None, box["attempt"].describe()
    assert held == [], f"the caller holds locks on the source during the HTTP wait: {held}"
    assert len(during) > 50, "the insert loop did not run during the call"
    assert alter_seconds < 1.0, f"ALTER TABLE waited {alter_seconds:.2f} s"
    assert call_ended - alter_ended > 1.0, "ALTER TABLE finished only with the call"
    assert worst_insert < 1.0, f"an INSERT stalled {worst_insert:.2f} s"
