"""The HTTP request the extension sends: headers, envelope bytes, connection reuse."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from stat_guard.tdigest import DEFAULT_COMPRESSION, exact_limit
from stat_guard.wire import decode_envelope, encode_digest
from tests.perform_drift_analysis.conftest import CURRENT_ROWS, HIST_ROWS, TEST_KEY, analyze


@pytest.fixture(scope="module")
def source(module_sources):
    return module_sources.create(noisy=True)


def test_request_is_an_octet_stream_envelope_carrying_the_key(config, fault, source,
                                                               module_sources, new_conn):
    config.apply(function_url=fault.url(f"key/{TEST_KEY}/ok"), function_key=TEST_KEY)
    columns = ["amount", "latency", "score", "noisy"]
    result = analyze(new_conn(), source=source.qualified, columns=columns)
    assert result["status"] == "ok"
    (request,) = fault.requests
    assert request.method == "POST"
    assert request.path == f"/key/{TEST_KEY}/ok/api/drift"
    assert request.content_type.split(";")[0].strip() == "application/octet-stream"
    assert request.headers.get("x-functions-key") == TEST_KEY
    assert request.body[:4] == b"PSGE" and request.body[4] == 1
    if "content-length" in request.headers:
        assert int(request.headers["content-length"]) == request.body_length
    envelope = decode_envelope(request.body)
    assert list(envelope.columns) == columns  # in the order asked for
    for column in columns:
        exact = module_sources.window_counts(source, column)
        pair = envelope.columns[column]
        assert pair.current.count == exact["count"]
        assert pair.current.null_count == exact["null_count"]
        assert pair.current.nan_count == exact["nan_count"]
        assert pair.current.pos_inf_count == exact["pos_inf_count"]
        assert pair.current.neg_inf_count == exact["neg_inf_count"]
        assert pair.baseline.count + pair.baseline.null_count + pair.baseline.nan_count \
            + pair.baseline.pos_inf_count + pair.baseline.neg_inf_count == HIST_ROWS
    assert envelope.columns["amount"].current.count == CURRENT_ROWS
    meta = envelope.metadata
    assert meta["request_id"] == result["request_id"] and len(meta["request_id"]) >= 8
    assert meta["source"] in (f"{source.schema}.{source.table}", source.qualified)
    assert meta["time_column"] == "created_at"
    # the default of pg_stat_guard.compression (one default)
    assert meta["compression"] == DEFAULT_COMPRESSION
    assert meta["client"].startswith("pg_stat_guard/")
    # the largest answer the session accepts (the function sizes its displays by it)
    assert meta["max_response_bytes"] == 1024 * 1024
    assert meta["baseline"]["kind"] == "previous_window"
    start = datetime.fromisoformat(meta["window_start"])
    end = datetime.fromisoformat(meta["window_end"])
    assert end - start == timedelta(minutes=15)
    assert start.utcoffset() is not None
    assert meta["window_start"] == result["analysis"]["window_start"]
    # digests only: windows up to 75·δ values (3,000 at δ = 40) keep every value as a
    # centroid (a mean step and a weight, about 8 bytes; docs/statistics.md), larger ones
    # compress to about 1.1 kB
    assert exact_limit(DEFAULT_COMPRESSION) == 3000
    assert request.body_length < 2 * 9 * CURRENT_ROWS * len(columns)
    print(f"\nenvelope {request.body_length} bytes for {len(columns)} columns x "
          f"{CURRENT_ROWS} rows")


def test_each_call_gets_a_fresh_request_id(config, fault, source, new_conn):
    config.apply(function_url=fault.url("ok"))
    conn = new_conn()
    ids = {analyze(conn, source=source.qualified, columns=["amount"])["request_id"]
           for _ in range(5)}
    assert len(ids) == 5
    assert {decode_envelope(r.body).metadata["request_id"] for r in fault.requests} == ids


def test_same_window_gives_the_same_digest_bytes(config, fault, source, new_conn):
    """The digests are a pure function of the rows: two calls ship identical bytes."""
    config.apply(function_url=fault.url("ok"))
    conn = new_conn()
    for _ in range(2):
        analyze(conn, source=source.qualified, columns=["amount", "noisy"])
    first, second = (decode_envelope(r.body) for r in fault.requests)
    for column in ("amount", "noisy"):
        assert encode_digest(first.columns[column].current) == \
            encode_digest(second.columns[column].current)
        assert encode_digest(first.columns[column].baseline) == \
            encode_digest(second.columns[column].baseline)


def test_connection_is_reused_across_calls_in_one_backend(config, fault, source, new_conn):
    config.apply(function_url=fault.url("ok"))
    conn = new_conn()
    for _ in range(6):
        analyze(conn, source=source.qualified, columns=["amount"])
    requests = fault.requests
    assert len(requests) == 6
    used = fault.connections_used()
    print(f"\n6 calls in one backend used {len(used)} connection(s); "
          f"client ports {sorted({r.client[1] for r in requests})}")
    assert len(used) == 1, f"expected one kept-alive connection, saw {len(used)}"


def test_each_backend_has_its_own_connection(config, fault, source, new_conn):
    config.apply(function_url=fault.url("ok"))
    first, second = new_conn(), new_conn()
    for _ in range(2):
        analyze(first, source=source.qualified, columns=["amount"])
        analyze(second, source=source.qualified, columns=["amount"])
    assert len(fault.requests) == 4
    assert len(fault.connections_used()) == 2


def test_query_string_of_the_url_is_sent_unchanged(config, fault, source, new_conn):
    """Azure keys may travel as ?code=...: the URL is used exactly as configured."""
    config.apply(function_url=fault.url("ok-fast") + "?code=a%2Fb%3D&x=1")
    analyze(new_conn(), source=source.qualified, columns=["amount"])
    assert [r.path for r in fault.requests] == ["/ok-fast/api/drift?code=a%2Fb%3D&x=1"]


def test_new_url_and_key_apply_to_a_running_backend(config, fault, source, new_conn):
    """After a reload, the next call of an existing backend uses the new URL and key,
    not a connection or handle kept from before."""
    conn = new_conn()
    config.apply(function_url=fault.url("ok"), function_key="first-key")
    analyze(conn, source=source.qualified, columns=["amount"])
    config.apply(function_url=fault.url("ok-fast"), function_key="second-key")
    analyze(conn, source=source.qualified, columns=["amount"])
    seen = [(r.path, r.headers.get("x-functions-key")) for r in fault.requests]
    assert seen == [("/ok/api/drift", "first-key"), ("/ok-fast/api/drift", "second-key")]


def test_call_after_the_server_closed_the_idle_connection_succeeds(config, fault, source,
                                                                   new_conn):
    """Servers close idle keep-alive connections; the next call must reconnect, not fail."""
    config.apply(function_url=fault.url("ok-fast"))
    conn = new_conn()
    analyze(conn, source=source.qualified, columns=["amount"])
    assert fault.drop_connections() >= 1
    time.sleep(0.1)
    for _ in range(3):
        analyze(conn, source=source.qualified, columns=["amount"])
    assert len(fault.requests) == 4
    assert len(fault.connections_used()) == 2


def test_window_is_half_open_on_now(config, fault, admin, sources, new_conn):
    """[now() - window, now()) for the current window and [start - fallback, start) for the
    baseline, with now() the transaction's: rows exactly on each edge land on the right side."""
    config.apply(function_url=fault.url("ok"))
    source = sources.create(current_rows=0, hist_rows=0)
    conn = new_conn()
    edges = [("now() - interval '15 minutes'", 1.0),                          # current
             ("now() - interval '1 microsecond'", 2.0),                       # current
             ("now()", 100.0),                                                # after
             ("now() - interval '15 minutes 1 microsecond'", 3.0),            # baseline
             ("now() - interval '7 days 15 minutes'", 4.0),                   # baseline
             ("now() - interval '7 days 15 minutes 1 microsecond'", 200.0)]   # before
    with conn.transaction() as tx:  # one transaction: one now() for the rows and the call
        for when, amount in edges:
            conn.execute(sql.SQL("INSERT INTO {} (created_at, amount) VALUES (" + when
                                 + ", %s)").format(source.ident), [amount])
        result = analyze(conn, source=source.qualified, columns=["amount"])
        raise psycopg.Rollback(tx)
    current = result["columns"]["amount"]["current"]
    baseline = result["columns"]["amount"]["baseline"]
    assert (current["count"], current["min"], current["max"]) == (2, 1.0, 2.0), current
    assert (baseline["count"], baseline["min"], baseline["max"]) == (2, 3.0, 4.0), baseline
