"""The C type reads and writes the golden wire-format vectors exactly as documented:
version 3 written, versions 1 and 2 (golden/v1/, golden/v2/) read."""

from __future__ import annotations

import math

import pytest

from tests.conftest import GOLDEN_DIR
from tests.extension.conftest import DigestBytes


def _number(value: float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}[value]
    return float(value)


def _close(a: float | None, b: float | None, ulps: int = 4) -> bool:
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    return abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))


def test_recv_decodes_every_golden_digest_and_send_gives_the_bytes_back(pg, golden):
    for name, expected in golden["digests"].items():
        data = (GOLDEN_DIR / expected["file"]).read_bytes()
        assert data.hex() == expected["hex"], name
        row = pg.execute(
            "SELECT tdigest_compression(d), tdigest_count(d), (tdigest_invalid_counts(d)).*, "
            "tdigest_min(d), tdigest_max(d), tdigest_mean(d), tdigest_centroid_count(d), "
            "tdigest_send(d), d::bytea FROM (SELECT %s::tdigest AS d) s",
            [DigestBytes(data)]).fetchone()
        (compression, count, nulls, nans, pos_inf, neg_inf, vmin, vmax, vmean, n_centroids,
         sent, as_bytea) = row
        assert compression == expected["compression"], name
        assert count == expected["count"], name
        assert (nulls, nans, pos_inf, neg_inf) == (
            expected["null_count"], expected["nan_count"],
            expected["pos_inf_count"], expected["neg_inf_count"]), name
        if expected["count"]:
            assert (vmin, vmax) == (expected["min"], expected["max"]), name
            assert vmean == _number(expected["mean"]), name
        else:
            assert (vmin, vmax, vmean) == (None, None, None), name
        assert n_centroids == expected["n_centroids"], name
        assert bytes(sent) == data, name
        assert bytes(as_bytea) == data, name


@pytest.mark.parametrize("version", [1, 2])
def test_earlier_golden_digests_are_read_and_written_back_as_version_3(pg, golden, version):
    """The version 1 and version 2 writers' files (golden/v1/, golden/v2/) read through
    recv and the bytea cast; send gives the documented version 3 bytes."""
    section = golden[f"v{version}_digests"]
    assert len(section) >= 8
    for name, expected in section.items():
        data = (GOLDEN_DIR / expected["file"]).read_bytes()
        assert data[4] == version and data.hex() == expected["hex"], name
        assert bytes.fromhex(expected["reads_as_hex"])[4] == 3, name
        for cast in ("%s::tdigest", "%s::bytea::tdigest"):
            arg = DigestBytes(data) if cast == "%s::tdigest" else data
            sent, vmean, m2, n_centroids, text_again = pg.execute(
                f"SELECT tdigest_send(d), tdigest_mean(d), d::text::jsonb -> 'm2', "
                f"tdigest_centroid_count(d), d::text::tdigest::bytea "
                f"FROM (SELECT {cast} AS d) s", [arg]).fetchone()
            assert bytes(sent).hex() == expected["reads_as_hex"], (name, cast)
            assert bytes(text_again) == bytes(sent), name
            assert n_centroids == expected["n_centroids"], name
            if expected["count"]:
                assert vmean == _number(expected["mean"]), name
            assert _number(m2) == _number(expected["m2"]), name
    if version == 1:
        v1_envelope = golden["v1_envelope"]
        assert (GOLDEN_DIR / v1_envelope["file"]).read_bytes()[:4] == b"PSGE"


def test_version_2_digests_read_as_the_golden_version_3_ones(pg, golden):
    """Where the digest is the same (all but the two compressed with the former scale
    function), a version 2 file and the version 3 file read as equal digests."""
    for name, expected in golden["v2_digests"].items():
        if expected["reads_as_hex"] != golden["digests"][name]["hex"]:
            continue
        v2 = (GOLDEN_DIR / expected["file"]).read_bytes()
        v3 = (GOLDEN_DIR / golden["digests"][name]["file"]).read_bytes()
        equal, sent = pg.execute(
            "SELECT tdigest_send(a) = tdigest_send(b), tdigest_send(a) "
            "FROM (SELECT %s::tdigest a, %s::bytea::tdigest b) s",
            [DigestBytes(v2), v3]).fetchone()
        assert equal and bytes(sent) == v3, name


def test_version_1_text_form_is_read(pg):
    text = ('{"compression": 10, "count": 3, "null_count": 1, "nan_count": 0, '
            '"pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 4, "sum": 7, '
            '"sum_sq": 21, "centroids": [[1, 1], [3, 2]]}')
    mean, stddev, again = pg.execute(
        "SELECT tdigest_mean(d), tdigest_stddev(d), d::text FROM (SELECT %s::tdigest d) s",
        [text]).fetchone()
    assert mean == 7 / 3 and stddev == math.sqrt((21 - 7 * (7 / 3)) / 2)
    assert '"m2": ' in again and '"sum"' not in again


def test_binary_fetch_returns_the_wire_bytes(pg, golden):
    for expected in golden["digests"].values():
        data = (GOLDEN_DIR / expected["file"]).read_bytes()
        cur = pg.cursor(binary=True)
        cur.execute("SELECT %s::tdigest", [DigestBytes(data)])
        assert bytes(cur.fetchone()[0]) == data


def test_text_form_round_trips_every_golden_digest(pg, golden):
    for expected in golden["digests"].values():
        data = (GOLDEN_DIR / expected["file"]).read_bytes()
        text = pg.execute("SELECT %s::tdigest::text", [DigestBytes(data)]).fetchone()[0]
        again = pg.execute("SELECT (%s::tdigest)::bytea", [text]).fetchone()[0]
        assert bytes(again) == data


def test_cdf_and_quantile_match_the_python_reader(pg, golden):
    for name, expected in golden["digests"].items():
        data = DigestBytes((GOLDEN_DIR / expected["file"]).read_bytes())
        xs = [_number(x) for x, _ in expected["cdf"]]
        qs = [_number(q) for q, _ in expected["quantile"]]
        cdf_arr, q_arr = pg.execute(
            "SELECT tdigest_cdf(%s, %s::float8[]), tdigest_quantile(%s, %s::float8[])",
            [data, xs, data, qs]).fetchone()
        for (x, want), got_arr in zip(expected["cdf"], cdf_arr or [None] * len(xs),
                                      strict=True):
            got = pg.execute("SELECT tdigest_cdf(%s, %s)", [data, _number(x)]).fetchone()[0]
            assert _close(got, _number(want)), (name, "cdf", x, got, want)
            assert got_arr == got
        for (q, want), got_arr in zip(expected["quantile"], q_arr or [None] * len(qs),
                                      strict=True):
            got = pg.execute("SELECT tdigest_quantile(%s, %s)", [data, _number(q)]).fetchone()[0]
            assert _close(got, _number(want)), (name, "quantile", q, got, want)
            assert got_arr == got


@pytest.mark.parametrize("path", ["recv", "bytea"])
def test_every_malformed_golden_digest_is_rejected(pg, golden, path):
    for case in golden["malformed_digests"]:
        data = bytes.fromhex(case["hex"])
        with pytest.raises(Exception) as info:
            if path == "recv":
                pg.execute("SELECT %s::tdigest", [DigestBytes(data)])
            else:
                pg.execute("SELECT %s::bytea::tdigest", [data])
        assert getattr(info.value, "sqlstate", None) == "22P03", (case["reason"], info.value)
