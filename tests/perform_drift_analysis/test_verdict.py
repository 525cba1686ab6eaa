"""What perform_drift_analysis returns: the verdict, per-column figures, baselines, timings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from stat_guard.display import FeatureDisplay
from stat_guard.wire import decode_envelope
from tests.perform_drift_analysis.conftest import (
    CURRENT_ROWS,
    HIST_ROWS,
    TEST_KEY,
    VALUE_COLUMNS,
    analyze,
    attempt,
)

CONTINUOUS = ("amount", "latency", "score")


@pytest.fixture(scope="module")
def tables(module_sources):
    """Three tables with the same seed: no drift, drift in amount, and a NULL/NaN column."""
    return {
        "calm": module_sources.create(),
        "drift": module_sources.create(drift={"amount"}),
        "noisy": module_sources.create(noisy=True),
    }


@pytest.fixture()
def real_service(config, verdict_url):
    """Point the extension at the real verdict service (uvicorn) with its key."""
    config.apply(function_url=verdict_url, function_key=TEST_KEY)
    return verdict_url


@pytest.fixture()
def fault_ok(config, fault):
    config.apply(function_url=fault.url("ok"))
    return fault


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_injected_drift_flips_the_verdict_and_only_the_drifted_column(
        real_service, tables, new_conn):
    conn = new_conn()
    calm = analyze(conn, source=tables["calm"].qualified)
    drifted = analyze(conn, source=tables["drift"].qualified)
    assert calm["status"] == "ok" and calm["verdict"] == "ok", calm
    assert {c: calm["columns"][c]["verdict"] for c in CONTINUOUS} == dict.fromkeys(
        CONTINUOUS, "ok")
    assert drifted["status"] == "ok" and drifted["verdict"] == "drift"
    verdicts = {c: drifted["columns"][c]["verdict"] for c in CONTINUOUS}
    assert verdicts == {"amount": "drift", "latency": "ok", "score": "ok"}, verdicts
    amount = drifted["columns"]["amount"]
    # amount moved by 1.5 sigma: PSI far above the 0.25 trigger, KS around 0.55
    assert amount["psi"] > 1.0 and amount["ks_statistic"] > 0.4, amount
    assert calm["columns"]["amount"]["psi"] < 0.1
    # Every column carries its display summary, passed through by the extension.
    assert drifted["display_omitted"] is False
    shown = {c: FeatureDisplay.from_json(drifted["columns"][c]["display"])
             for c in drifted["columns"]}
    assert shown["amount"].verdict == "drift" and shown["latency"].verdict == "ok"
    moved = shown["amount"]
    assert moved.quantiles["current"][3] > moved.quantiles["baseline"][3]
    assert sum(i * p for i, p in enumerate(moved.current)) \
        > sum(i * p for i, p in enumerate(moved.baseline)) + 3
    print(f"\npsi amount calm={calm['columns']['amount']['psi']:.4f} "
          f"drift={amount['psi']:.3f} ks={amount['ks_statistic']:.3f}")


def test_counts_match_the_window_for_every_column(real_service, tables, module_sources,
                                                  new_conn):
    source = tables["drift"]
    result = analyze(new_conn(), source=source.qualified)
    assert set(result["columns"]) == set(VALUE_COLUMNS)
    assert result["analysis"]["rows"] == CURRENT_ROWS
    for column in VALUE_COLUMNS:
        exact = module_sources.window_counts(source, column)
        assert exact["rows"] == CURRENT_ROWS
        current = result["columns"][column]["current"]
        assert current["count"] == exact["count"] == CURRENT_ROWS, (column, current)
        assert current["null_count"] == 0 and current["nan_count"] == 0
        # no stored baseline: the previous 7 days, which hold the whole history
        assert result["columns"][column]["baseline"]["count"] == HIST_ROWS


def test_null_and_nan_heavy_column_is_counted_not_summarised(real_service, tables,
                                                             module_sources, new_conn):
    source = tables["noisy"]
    result = analyze(new_conn(), source=source.qualified, columns=["amount", "noisy"])
    exact = module_sources.window_counts(source, "noisy")
    # the pattern by row number: 30 % NULL, 10 % NaN, 2 % +Inf, 2 % -Inf of 3,000 rows
    assert exact == {"rows": 3000, "count": 1680, "null_count": 900, "nan_count": 300,
                     "pos_inf_count": 60, "neg_inf_count": 60}
    current = result["columns"]["noisy"]["current"]
    assert {k: current[k] for k in ("count", "null_count", "nan_count", "pos_inf_count",
                                    "neg_inf_count")} == {k: v for k, v in exact.items()
                                                          if k != "rows"}
    baseline = result["columns"]["noisy"]["baseline"]
    assert baseline["null_count"] == HIST_ROWS * 3 // 10
    assert baseline["nan_count"] == HIST_ROWS // 10
    assert baseline["count"] == HIST_ROWS - HIST_ROWS * 3 // 10 - HIST_ROWS // 10 \
        - 2 * HIST_ROWS // 50
    # finite part: min/max are real numbers, no NaN leaked into them
    assert -10 < current["min"] < current["max"] < 10
    assert result["columns"]["noisy"]["verdict"] == "ok"
    assert result["columns"]["amount"]["current"]["count"] == CURRENT_ROWS


def test_result_is_jsonb_with_timings_versions_and_the_window(fault_ok, admin, tables,
                                                              new_conn):
    conn = new_conn()
    source = tables["calm"]
    kind = conn.execute(
        "SELECT pg_typeof(perform_drift_analysis(interval '15 minutes', %s::regclass, "
        "'created_at', ARRAY['amount']::name[]))::text", [source.qualified]).fetchone()[0]
    assert kind == "jsonb"
    before = conn.execute("SELECT now()").fetchone()[0]
    result = analyze(conn, source=source.qualified)
    assert isinstance(result, dict)
    assert result["function_version"], result
    assert result["request_id"], result
    analysis = result["analysis"]
    ext_version = admin.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_guard'").fetchone()[0]
    assert analysis["extension_version"] == ext_version
    assert analysis["transport"] == "curl"
    assert analysis["source"] in (f"{source.schema}.{source.table}", source.qualified)
    assert analysis["time_column"] == "created_at"
    start, end = _ts(analysis["window_start"]), _ts(analysis["window_end"])
    assert end - start == timedelta(minutes=15)
    assert abs((end - before).total_seconds()) < 5
    timings = analysis["timings_ms"]
    for key in ("aggregate", "http", "total"):
        assert isinstance(timings[key], (int, float)) and timings[key] >= 0, timings
    assert timings["total"] >= timings["aggregate"] and timings["total"] >= timings["http"]
    assert timings["total"] >= 0.9 * (timings["aggregate"] + timings["http"])
    assert timings["total"] < 5000
    request = fault_ok.requests[-1]
    assert request.path == "/ok/api/drift"
    print(f"\ntimings_ms {timings}")


def test_stored_baseline_is_used_and_reported(fault_ok, admin, sources, new_conn):
    source = sources.create(drift={"amount"})
    stored = admin.execute(
        "SELECT capture_baseline(%s::regclass, 'created_at', %s::name[], "
        "now() - interval '6 days 1 hour', now() - interval '30 minutes')",
        [source.qualified, list(VALUE_COLUMNS)]).fetchone()[0]
    assert stored == len(VALUE_COLUMNS)
    rows = admin.execute(
        "SELECT column_name::text, tdigest_count(digest), window_start, window_end, "
        "captured_at, compression FROM pg_stat_guard_baselines "
        "WHERE source = %s ORDER BY 1",
        [f"{source.schema}.{source.table}"]).fetchall()
    if not rows:  # the source may be stored quoted
        rows = admin.execute(
            "SELECT column_name::text, tdigest_count(digest), window_start, window_end, "
            "captured_at, compression FROM pg_stat_guard_baselines "
            "WHERE source::regclass = %s::regclass ORDER BY 1", [source.qualified]).fetchall()
    assert [r[0] for r in rows] == sorted(VALUE_COLUMNS)
    assert all(r[1] == HIST_ROWS for r in rows), rows
    result = analyze(new_conn(), source=source.qualified)
    baselines = result["analysis"]["baselines"]
    assert set(baselines) == set(VALUE_COLUMNS)
    for name, window_start, window_end, captured_at in ((r[0], r[2], r[3], r[4])
                                                         for r in rows):
        info = baselines[name]
        assert info["kind"] == "stored", info
        assert _ts(info["window_start"]) == window_start
        assert _ts(info["window_end"]) == window_end
        assert _ts(info["captured_at"]) == captured_at
        assert result["columns"][name]["baseline"]["count"] == HIST_ROWS
    assert result["columns"]["amount"]["verdict"] == "drift"
    metadata = decode_envelope(fault_ok.requests[-1].body).metadata
    assert metadata["baseline"]["kind"] == "stored", metadata


def test_recapture_replaces_and_drop_baseline_removes(fault_ok, admin, sources, new_conn):
    source = sources.create()
    capture = ("SELECT capture_baseline(%s::regclass, 'created_at', ARRAY['amount', "
               "'latency']::name[], now() - interval '3 days', now() - interval '1 hour')")
    assert admin.execute(capture, [source.qualified]).fetchone()[0] == 2
    first = admin.execute("SELECT max(captured_at) FROM pg_stat_guard_baselines "
                          "WHERE column_name IN ('amount', 'latency') AND source "
                          "LIKE %s", [f"%{source.schema}%"]).fetchone()[0]
    assert admin.execute(capture, [source.qualified]).fetchone()[0] == 2
    rows = admin.execute("SELECT count(*), min(captured_at) FROM pg_stat_guard_baselines "
                         "WHERE source LIKE %s", [f"%{source.schema}%"]).fetchone()
    assert rows[0] == 2 and rows[1] > first
    result = analyze(new_conn(), source=source.qualified, columns=["amount", "latency"])
    assert {c: b["kind"] for c, b in result["analysis"]["baselines"].items()} == {
        "amount": "stored", "latency": "stored"}
    removed = admin.execute("SELECT drop_baseline(%s::regclass)",
                            [source.qualified]).fetchone()[0]
    assert removed == 2
    assert admin.execute("SELECT count(*) FROM pg_stat_guard_baselines WHERE source LIKE %s",
                         [f"%{source.schema}%"]).fetchone()[0] == 0
    result = analyze(new_conn(), source=source.qualified, columns=["amount"])
    assert result["analysis"]["baselines"]["amount"]["kind"] == "previous_window"


def test_missing_baseline_falls_back_to_the_previous_window(fault_ok, admin, sources,
                                                            new_conn):
    source = sources.create()
    conn = new_conn()
    result = analyze(conn, source=source.qualified, columns=["amount", "latency"])
    analysis = result["analysis"]
    start = _ts(analysis["window_start"])
    for column in ("amount", "latency"):
        info = analysis["baselines"][column]
        assert info["kind"] == "previous_window", info
        assert _ts(info["window_end"]) == start
        assert start - _ts(info["window_start"]) == timedelta(days=7)
        assert result["columns"][column]["baseline"]["count"] == HIST_ROWS
    # a shorter fallback window holds exactly the rows of [start - 1 day, start)
    conn.execute("SET pg_stat_guard.fallback_baseline_window = '1d'")
    result = analyze(conn, source=source.qualified, columns=["amount"])
    start = _ts(result["analysis"]["window_start"])
    info = result["analysis"]["baselines"]["amount"]
    assert start - _ts(info["window_start"]) == timedelta(days=1)
    expected = admin.execute(sql.SQL(
        "SELECT count(*) FROM {} WHERE created_at >= %s::timestamptz - interval '1 day' "
        "AND created_at < %s::timestamptz").format(source.ident), [start, start]).fetchone()[0]
    assert 0 < expected < HIST_ROWS
    assert result["columns"]["amount"]["baseline"]["count"] == expected


def test_columns_without_a_stored_baseline_fall_back_one_by_one(fault_ok, admin, sources,
                                                                new_conn):
    source = sources.create()
    admin.execute("SELECT capture_baseline(%s::regclass, 'created_at', ARRAY['amount']::name[],"
                  " now() - interval '2 days', now() - interval '1 hour')",
                  [source.qualified])
    result = analyze(new_conn(), source=source.qualified, columns=["amount", "latency"])
    kinds = {c: b["kind"] for c, b in result["analysis"]["baselines"].items()}
    assert kinds == {"amount": "stored", "latency": "previous_window"}
    counts = {c: result["columns"][c]["baseline"]["count"] for c in ("amount", "latency")}
    two_days = admin.execute(sql.SQL(
        "SELECT count(*) FROM {} WHERE created_at >= now() - interval '2 days' "
        "AND created_at < now() - interval '1 hour'").format(source.ident)).fetchone()[0]
    assert counts["latency"] == HIST_ROWS
    assert abs(counts["amount"] - two_days) <= 1, (counts, two_days)


def test_empty_window_is_insufficient_data_not_an_error(fault_ok, sources, new_conn):
    source = sources.create(current_rows=0)
    result = analyze(new_conn(), source=source.qualified)
    assert result["status"] == "ok"
    assert result["verdict"] == "insufficient_data"
    assert result["analysis"]["rows"] == 0
    for column in VALUE_COLUMNS:
        col = result["columns"][column]
        assert col["verdict"] == "insufficient_data"
        assert col["current"]["count"] == 0 and col["baseline"]["count"] == HIST_ROWS
        assert col["psi"] is None


def test_short_form_takes_source_and_columns_from_settings(fault_ok, admin, sources,
                                                           new_conn):
    source = sources.create(drift={"amount"})
    conn = new_conn()
    conn.execute(sql.SQL("SET pg_stat_guard.source = {}").format(
        sql.Literal(source.qualified)))
    conn.execute("SET pg_stat_guard.time_column = 'created_at'")
    conn.execute("SET pg_stat_guard.value_columns = 'amount, latency'")
    short = analyze(conn)
    explicit = analyze(conn, source=source.qualified, columns=["amount", "latency"])
    assert set(short["columns"]) == {"amount", "latency"}
    for column in ("amount", "latency"):
        assert short["columns"][column]["verdict"] == explicit["columns"][column]["verdict"]
        assert short["columns"][column]["current"] == explicit["columns"][column]["current"]
    assert short["verdict"] == "drift" and short["analysis"]["rows"] == CURRENT_ROWS
    # the short capture_baseline uses the same settings and a window ending now
    assert conn.execute("SELECT capture_baseline(interval '3 days')").fetchone()[0] == 2
    ends = admin.execute(
        "SELECT column_name::text, now() - window_end, window_end - window_start "
        "FROM pg_stat_guard_baselines WHERE source LIKE %s ORDER BY 1",
        [f"%{source.schema}%"]).fetchall()
    assert [e[0] for e in ends] == ["amount", "latency"]
    assert all(e[1] < timedelta(seconds=30) and e[2] == timedelta(days=3) for e in ends), ends
    after = analyze(conn)
    assert {c: b["kind"] for c, b in after["analysis"]["baselines"].items()} == {
        "amount": "stored", "latency": "stored"}


def test_compression_setting_reaches_the_envelope(fault_ok, sources, new_conn):
    source = sources.create()
    conn = new_conn()
    conn.execute("SET pg_stat_guard.compression = 150")  # the default is 200
    analyze(conn, source=source.qualified, columns=["amount"])
    envelope = decode_envelope(fault_ok.requests[-1].body)
    assert envelope.metadata["compression"] == 150
    assert envelope.columns["amount"].current.compression == 150


def test_jsonb_result_survives_a_round_trip_through_sql(fault_ok, tables, new_conn):
    conn = new_conn()
    verdict = conn.execute(
        "SELECT r->>'verdict', jsonb_typeof(r->'columns'), r->'analysis'->>'rows' FROM "
        "(SELECT perform_drift_analysis(interval '15 minutes', %s::regclass, 'created_at', "
        "ARRAY['amount', 'latency']::name[]) r) s", [tables["drift"].qualified]).fetchone()
    assert verdict == ("drift", "object", str(CURRENT_ROWS))


def test_unknown_source_table_is_an_error_before_any_request(fault_ok, new_conn):
    conn = new_conn()
    outcome = attempt(conn, source="psg_no_such_schema.no_such_table")
    assert outcome.error is not None
    assert isinstance(outcome.error, psycopg.errors.UndefinedTable
                      | psycopg.errors.InvalidSchemaName), outcome.describe()
    assert fault_ok.requests == []


def test_a_null_burst_is_drift_by_the_missing_share(real_service, admin, sources, new_conn):
    """1% NULLs in the history, 40% in the window, the other values unchanged: the verdict
    service sees the digests' NULL counts and calls it drift with its own reason."""
    schema = sources.new_schema()
    table = sql.Identifier(schema, "burst")
    admin.execute(sql.SQL("CREATE TABLE {} (created_at timestamptz NOT NULL, v float8)")
                  .format(table))
    admin.execute("SELECT setseed(0.3)")
    admin.execute(sql.SQL(
        "INSERT INTO {} SELECT now() - interval '6 days' + g * interval '1 minute', "
        "CASE WHEN g % 100 = 0 THEN NULL ELSE random() END "
        "FROM generate_series(0, 8000) g").format(table))
    admin.execute(sql.SQL(
        "INSERT INTO {} SELECT now() - interval '10 minutes' + g * interval '100 ms', "
        "CASE WHEN g % 5 < 2 THEN NULL ELSE random() END "
        "FROM generate_series(0, 5000) g").format(table))
    result = analyze(new_conn(), source=f'"{schema}"."burst"', columns=["v"])
    column = result["columns"]["v"]
    assert result["verdict"] == "drift", column
    assert column["verdict"] == "drift"
    assert column["reasons"][0].startswith("missing share 1.0% -> 40.0%"), column["reasons"]
    assert column["missing_rate_current"] == pytest.approx(0.4, abs=0.01)
    assert column["psi"] < 0.1  # the values themselves did not move


def test_a_small_answer_limit_keeps_the_verdict_and_drops_displays(config, verdict_url,
                                                                    tables, new_conn):
    """The envelope names the server's pg_stat_guard.max_response_bytes; the function keeps
    its display summaries within what that leaves after the verdicts, so a limit too small
    for every display still gets the whole verdict."""
    config.apply(function_url=verdict_url, function_key=TEST_KEY)
    full = analyze(new_conn(), source=tables["drift"].qualified)
    displays = [len(json.dumps(c["display"], separators=(",", ":")))
                for c in full["columns"].values()]
    assert full["display_omitted"] is False and len(displays) >= 3
    # Room for the verdicts, the answer's head and one display, not for all of them.
    bare = len(json.dumps({k: v for k, v in full.items() if k != "columns"}
                          | {"columns": {n: {k: v for k, v in c.items() if k != "display"}
                                         for n, c in full["columns"].items()}},
                          separators=(",", ":")))
    config.apply(function_url=verdict_url, function_key=TEST_KEY,
                 max_response_bytes=bare + 2048 + max(displays) + 200)
    drifted = analyze(new_conn(), source=tables["drift"].qualified)
    assert drifted["status"] == "ok" and drifted["verdict"] == "drift", drifted
    assert drifted["columns"]["amount"]["verdict"] == "drift"
    assert drifted["display_omitted"] is True
    shown = [n for n, c in drifted["columns"].items() if "display" in c]
    assert shown and "amount" in shown and len(shown) < len(displays)
