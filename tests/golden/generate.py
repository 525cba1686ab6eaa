"""Write the golden vectors of the wire format (docs/wire-format.md, section 6): digests,
category count tables and envelopes (version 1, numeric only, and version 2).

Run once when the format changes: ``python -m tests.golden.generate``. Version 3 digests
(and envelopes carrying them) are written to ``pg_extension/test/golden/``, beside the
extension that reads them in its pg_regress suite; the Python tests check that the current
writer still reproduces every committed file byte for byte. The files in ``golden/v1/``
and ``golden/v2/`` were written by the version 1 and version 2 writers and are kept as
they are: this script only describes them (what they read as, and the version 3 bytes a
writer gives back for them).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from stat_guard.categories import CategoryCounts
from stat_guard.tdigest import TDigest
from stat_guard.wire import (
    ColumnCategories,
    ColumnDigests,
    Envelope,
    decode_category_table,
    decode_digest,
    decode_envelope,
    encode_category_table,
    encode_digest,
    encode_envelope,
    encode_varints,
)

OUT_DIR = Path(__file__).resolve().parents[2] / "pg_extension" / "test" / "golden"
V1_DIR = OUT_DIR / "v1"
V2_DIR = OUT_DIR / "v2"
CDF_POINTS = [-1e308, -3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, 2.5, 3.0, 5.5, 42.5, 100.0, 1e308]
QUANTILES = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def _number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def golden_digests() -> dict[str, TDigest]:
    rng = np.random.default_rng(20261122)
    small = [1.0, 2.0, 2.0, 3.0, 5.5, -0.0, None, float("nan"), float("inf"), float("-inf"),
             None, -1.25]
    big_weight = 2**40 + 12345
    return {
        "empty": TDigest.from_values([None, None, None, float("nan")], compression=100),
        "single": TDigest.from_values([42.5], compression=200),
        "small": TDigest.from_values(small, compression=100),
        "normal_1000": TDigest.from_values(rng.normal(0.0, 1.0, 1000), compression=100),
        # past the exactly-kept range (EXACT_FACTOR·δ = 7,500 values): a compressed digest
        "normal_20000": TDigest.from_values(rng.normal(0.0, 1.0, 20_000), compression=100),
        "ties_5000": TDigest.from_values(rng.poisson(3.0, 5000).astype(float), compression=50),
        "extremes": TDigest.from_values([1e308, -1e308, 5e-324, -5e-324, 0.0, 1.5, 1e-300],
                                        compression=10),
        "big_weights": TDigest(compression=10000,
                               means=np.array([-2.5, 0.0, 7.0]),
                               weights=np.array([1, big_weight, 3], dtype=np.uint64),
                               count=big_weight + 4, min=-2.5, max=7.0,
                               mean=(-2.5 + 21.0) / (big_weight + 4), mean_residual=0.0,
                               m2=6.25 + 147.0, null_count=2**63, nan_count=1,
                               pos_inf_count=0, neg_inf_count=2**64 - 1),
        # the moments at a large offset, kept exactly (mean + residual, m2)
        "offset_3000": TDigest.from_values(1e12 + 1e-3 * rng.normal(0.0, 1.0, 3000),
                                           compression=100),
        # M2 overflows binary64: +Infinity, the mean stays finite
        "overflow": TDigest.from_values([1e308, -1e308, 1e308, 0.5], compression=10),
    }


def describe(digest: TDigest) -> dict:
    return {
        "compression": digest.compression,
        "count": digest.count,
        "null_count": digest.null_count,
        "nan_count": digest.nan_count,
        "pos_inf_count": digest.pos_inf_count,
        "neg_inf_count": digest.neg_inf_count,
        "min": _number(digest.min),
        "max": _number(digest.max),
        "mean": _number(digest.mean),
        "mean_residual": _number(digest.mean_residual),
        "m2": _number(digest.m2),
        "n_centroids": int(digest.means.size),
        "means": [_number(m) for m in digest.means.tolist()],
        "weights": [int(w) for w in digest.weights.tolist()],
        "cdf": [[x, _number(digest.cdf(x)) if digest.count else None] for x in CDF_POINTS],
        "quantile": [[q, _number(digest.quantile(q)) if digest.count else None]
                     for q in QUANTILES],
    }


def encode_digest_v2(digest: TDigest) -> bytes:
    """A digest's bytes as the version 2 writer wrote them (docs/wire-format.md §1.3), for
    read-only vectors and tests: the library writes version 3 only."""
    empty = digest.count == 0
    header = struct.pack(
        "<4sBBHQQQQQdddddI", b"PSGD", 2, 0, digest.compression, digest.count,
        digest.null_count, digest.nan_count, digest.pos_inf_count, digest.neg_inf_count,
        *(0.0 if empty else value + 0.0 for value in (
            digest.min, digest.max, digest.mean, digest.mean_residual, digest.m2)),
        digest.means.size)
    means = (np.ascontiguousarray(digest.means, dtype="<f8") + 0.0).tobytes()
    return header + means + encode_varints(np.asarray(digest.weights, dtype=np.uint64))


def malformed(valid: bytes) -> list[dict]:
    """Malformed variants of a valid digest (version 1 or 2), each with why a reader must
    reject it."""
    cases: list[tuple[str, bytes]] = []
    version = valid[4]
    header = 92 if version == 2 else 84
    n_at = header - 4

    def patch(offset: int, fmt: str, value: object) -> bytes:
        data = bytearray(valid)
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)

    n = struct.unpack_from("<I", valid, n_at)[0]
    cases += [
        ("bad magic", b"XSGD" + valid[4:]),
        ("unsupported version", patch(4, "<B", 4)),
        ("version 0", patch(4, "<B", 0)),
        (f"the version {version} layout read as version 3", patch(4, "<B", 3)),
        ("reserved flags set", patch(5, "<B", 1)),
        ("compression below 10", patch(6, "<H", 9)),
        ("compression above 10000", patch(6, "<H", 10001)),
        ("truncated header", valid[:header - 1]),
        ("empty input", b""),
        ("more centroids than values", patch(n_at, "<I", 10**6)),
        ("centroid count over the limit", patch(n_at, "<I", 65537)),
        ("centroid count larger than the input", patch(n_at, "<I", n + 1)),
        ("count does not match the weights",
         patch(8, "<Q", struct.unpack_from("<Q", valid, 8)[0] + 1)),
        ("NaN centroid mean", patch(header, "<d", float("nan"))),
        ("infinite centroid mean", patch(header, "<d", float("-inf"))),
        ("centroid mean below min", patch(header, "<d", -1e9)),
        ("unsorted centroid means", patch(header + 8, "<d", -1.0)),
        ("min greater than max", patch(48, "<d", 1e9)),
        ("NaN min", patch(48, "<d", float("nan"))),
        ("infinite max", patch(56, "<d", float("inf"))),
        ("negative zero max", patch(56, "<d", -0.0)),
        ("trailing byte", valid + b"\x00"),
        ("truncated weights", valid[:-1]),
        ("zero weight", valid[: header + 8 * n] + b"\x00" + valid[header + 8 * n + 1:]),
        ("non-minimal varint", valid[: header + 8 * n]
         + bytes([valid[header + 8 * n] | 0x80, 0x00]) + valid[header + 8 * n + 1:]),
    ]
    if version == 1:
        cases += [("NaN sum", patch(64, "<d", float("nan"))),
                  ("negative sum of squares", patch(72, "<d", -1.0))]
    else:
        cases += [
            ("NaN mean", patch(64, "<d", float("nan"))),
            ("infinite mean", patch(64, "<d", float("inf"))),
            ("mean above max", patch(64, "<d", 1e9)),
            ("negative zero mean", patch(64, "<d", -0.0)),
            ("NaN mean_residual", patch(72, "<d", float("nan"))),
            ("mean_residual above half an ulp of mean", patch(72, "<d", 1e-10)),
            ("negative zero mean_residual", patch(72, "<d", -0.0)),
            ("NaN m2", patch(80, "<d", float("nan"))),
            ("negative m2", patch(80, "<d", -1.0)),
            ("negative infinite m2", patch(80, "<d", float("-inf"))),
            ("negative zero m2", patch(80, "<d", -0.0)),
        ]
    empty = TDigest.empty(100)
    empty_bytes = encode_digest_v2(empty) if version == 2 else _v1_empty()
    empty_with_min = bytearray(empty_bytes)
    struct.pack_into("<d", empty_with_min, 48, 1.0)
    cases.append(("empty digest with a non-zero min", bytes(empty_with_min)))
    if version == 2:
        empty_with_m2 = bytearray(empty_bytes)
        struct.pack_into("<d", empty_with_m2, 80, 1.0)
        cases.append(("empty digest with a non-zero m2", bytes(empty_with_m2)))
    no_centroids = bytearray(empty_bytes)
    struct.pack_into("<Q", no_centroids, 8, 5)
    cases.append(("values but no centroids", bytes(no_centroids)))
    if version == 2:
        huge_varint = encode_digest_v2(TDigest.from_values([1.0], compression=60))[:-1] \
            + b"\xff" * 9 + b"\x02"
        cases.append(("varint over 64 bits", huge_varint))
    return _rejected(cases, version)


def _v1_empty() -> bytes:
    """The version 1 empty digest (compression 100)."""
    return struct.pack("<4sBBHQQQQQddddI", b"PSGD", 1, 0, 100, 0, 0, 0, 0, 0,
                       0.0, 0.0, 0.0, 0.0, 0)


# ---- version 3 digests ----------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def v3_fields(valid: bytes) -> tuple[bytes, list[int], list[int], list[int]]:
    """A valid version 3 digest in parts: the 48 fixed bytes, the six header varints
    (count, null, NaN, +Inf, -Inf counts, n_centroids), the mean steps, the weights."""
    pos, ints = 48, []
    while len(ints) < 6 + 2 * (ints[5] if len(ints) > 5 else 0):
        value, pos = _read_varint(valid, pos)
        ints.append(value)
    assert pos == len(valid)
    n = ints[5]
    return valid[:48], ints[:6], ints[6:6 + n], ints[6 + n:]


def v3_assemble(fixed: bytes, header: list[int], steps: list[int],
                weights: list[int]) -> bytes:
    """Version 3 bytes from parts (the varints minimal, whatever they say)."""
    return fixed + encode_varints(np.array(header + steps + weights, dtype=np.uint64))


def key(value: float) -> int:
    """key(x) of docs/wire-format.md §1.1."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", value))
    return (bits ^ (2**64 - 1)) if bits >> 63 else bits | 2**63


def _non_minimal(valid: bytes, index: int) -> bytes:
    """valid with its index-th varint (from offset 48) padded by one 0x00 byte."""
    pos = 48
    for _ in range(index):
        _, pos = _read_varint(valid, pos)
    _, end = _read_varint(valid, pos)
    return valid[:end - 1] + bytes([valid[end - 1] | 0x80, 0x00]) + valid[end:]


def _replace_varint(valid: bytes, index: int, raw: bytes) -> bytes:
    """valid with its index-th varint (from offset 48) replaced by raw bytes."""
    pos = 48
    for _ in range(index):
        _, pos = _read_varint(valid, pos)
    _, end = _read_varint(valid, pos)
    return valid[:pos] + raw + valid[end:]


def malformed_v3(valid: bytes) -> list[dict]:
    """Malformed variants of a valid compressed version 3 digest (and of small ones built
    here), each with why a reader must reject it."""
    fixed, header, steps, weights = v3_fields(valid)
    count, n = header[0], header[5]
    assert valid[4] == 3 and n >= 4 and weights[0] == 1

    def patch(offset: int, fmt: str, value: object, data: bytes = valid) -> bytes:
        out = bytearray(data)
        struct.pack_into(fmt, out, offset, value)
        return bytes(out)

    def with_header(index: int, value: int) -> bytes:
        changed = list(header)
        changed[index] = value
        return v3_assemble(fixed, changed, steps, weights)

    def with_steps(changed: list[int]) -> bytes:
        return v3_assemble(fixed, header, changed, weights)

    def with_weights(changed: list[int]) -> bytes:
        return v3_assemble(fixed, header, steps, changed)

    vmin, vmax = struct.unpack_from("<dd", valid, 8)
    last_key = key(vmin) + sum(steps)
    # After n_centroids: fewer than 2 bytes per centroid it announces.
    remaining = len(valid) - len(v3_assemble(fixed, header, [], []))
    too_many = remaining // 2 + 1
    assert too_many <= min(count, 65536)
    # A digest of [-1, 0, 1]: a step can land on key(-0.0), one below key(+0.0).
    signed = encode_digest(TDigest.from_values([-1.0, 0.0, 1.0], compression=100))
    s_fixed, s_header, s_steps, s_weights = v3_fields(signed)
    assert s_steps[1] == key(0.0) - key(-1.0)
    onto_negative_zero = v3_assemble(s_fixed, s_header, [s_steps[0], s_steps[1] - 1,
                                                         s_steps[2] + 1], s_weights)
    # min -1e308, max 1e308: each step within key(max) - key(min) (more than 2^63), their
    # sum past 2^64; wrapped around it would land within [min, max].
    wide = encode_digest(TDigest.from_values([-1e308, 1e308], compression=100))
    w_fixed, w_header, _, w_weights = v3_fields(wide)
    span = key(1e308) - key(-1e308)
    assert span > 2**63 and (2 * span) % 2**64 < span
    wrapping = v3_assemble(w_fixed, w_header, [span, span], w_weights)
    empty = encode_digest(TDigest.empty(100))
    zero_min = encode_digest(TDigest.from_values([0.0, 1.0], compression=100))
    zero_max = encode_digest(TDigest.from_values([-1.0, 0.0], compression=100))
    e_fixed = empty[:48]
    cases: list[tuple[str, bytes]] = [
        ("bad magic", b"XSGD" + valid[4:]),
        ("unsupported version", patch(4, "<B", 4)),
        ("version 0", patch(4, "<B", 0)),
        ("the version 3 layout read as version 2", patch(4, "<B", 2)),
        ("reserved flags set", patch(5, "<B", 1)),
        ("compression below 10", patch(6, "<H", 9)),
        ("compression above 10000", patch(6, "<H", 10001)),
        ("empty input", b""),
        ("truncated inside the fixed part", valid[:47]),
        ("shorter than the smallest digest", empty[:53]),
        ("input ends inside a header varint", e_fixed + b"\x80" * 6),
        ("non-minimal count varint", _non_minimal(valid, 0)),
        ("non-minimal null_count varint", _non_minimal(valid, 1)),
        ("non-minimal n_centroids varint", _non_minimal(valid, 5)),
        ("non-minimal count varint of an empty digest", _non_minimal(empty, 0)),
        ("count varint over 64 bits", _replace_varint(valid, 0, b"\xff" * 9 + b"\x02")),
        ("count varint of 11 bytes", _replace_varint(valid, 0, b"\x80" * 10 + b"\x01")),
        ("more centroids than values", with_header(5, count + 1)),
        ("centroid count over the limit", v3_assemble(
            fixed, [2**40, *header[1:5], 65537], steps, weights)),
        ("n_centroids too large for the remaining bytes", with_header(5, too_many)),
        ("one centroid more than written", with_header(5, n + 1)),
        ("one centroid fewer than written", with_header(5, n - 1)),
        ("count does not match the weights", with_header(0, count + 1)),
        ("weights not summing to count", with_weights([weights[0] + 1, *weights[1:]])),
        ("weights summing past 2^64", with_weights([2**64 - 1, *weights[1:]])),
        ("zero weight", with_weights([0, weights[1] + 1, *weights[2:]])),
        ("non-minimal mean step varint", _non_minimal(valid, 6 + 1)),
        ("non-minimal weight varint", _non_minimal(valid, 6 + n)),
        ("weight varint over 64 bits", _replace_varint(valid, 6 + 2 * n - 1,
                                                       b"\xff" * 9 + b"\x02")),
        ("a step that runs past max", with_steps(
            [*steps[:-1], steps[-1] + key(vmax) - last_key + 1])),
        ("a first step that runs past max", with_steps(
            [key(vmax) - key(vmin) + 1, *steps[1:]])),
        ("a step of 2^64 - 1", with_steps([steps[0], 2**64 - 1, *steps[2:]])),
        ("steps whose running sum passes 2^64", wrapping),
        ("a step landing on -0.0", onto_negative_zero),
        ("trailing byte", valid + b"\x00"),
        ("truncated", valid[:-1]),
        ("truncated inside the mean steps",
         valid[:len(v3_assemble(fixed, header, steps[: n // 2], []))]),
        ("NaN min", patch(8, "<d", float("nan"))),
        ("infinite max", patch(16, "<d", float("inf"))),
        ("min greater than max", patch(8, "<d", 1e9)),
        ("negative zero min", patch(8, "<d", -0.0, zero_min)),
        ("negative zero max", patch(16, "<d", -0.0, zero_max)),
        ("NaN mean", patch(24, "<d", float("nan"))),
        ("infinite mean", patch(24, "<d", float("inf"))),
        ("mean above max", patch(24, "<d", 1e9)),
        ("negative zero mean", patch(24, "<d", -0.0)),
        ("NaN mean_residual", patch(32, "<d", float("nan"))),
        ("mean_residual above half an ulp of mean", patch(32, "<d", 1e-10)),
        ("negative zero mean_residual", patch(32, "<d", -0.0)),
        ("NaN m2", patch(40, "<d", float("nan"))),
        ("negative m2", patch(40, "<d", -1.0)),
        ("negative infinite m2", patch(40, "<d", float("-inf"))),
        ("negative zero m2", patch(40, "<d", -0.0)),
        ("empty digest with a non-zero min", patch(8, "<d", 1.0, empty)),
        ("empty digest with a negative zero min", patch(8, "<d", -0.0, empty)),
        ("empty digest with a non-zero max", patch(16, "<d", 1.0, empty)),
        ("empty digest with a non-zero mean", patch(24, "<d", 1.0, empty)),
        ("empty digest with a non-zero m2", patch(40, "<d", 1.0, empty)),
        ("empty digest with a centroid", v3_assemble(e_fixed, [0, 0, 0, 0, 0, 1], [0], [1])),
        ("empty digest with a trailing byte", empty + b"\x00"),
        ("values but no centroids", v3_assemble(e_fixed, [5, 0, 0, 0, 0, 0], [], [])),
    ]
    return _rejected(cases, 3)


def _rejected(cases: list[tuple[str, bytes]], version: int) -> list[dict]:
    out = []
    for reason, data in cases:
        try:
            decode_digest(data)
        except ValueError:
            out.append({"reason": f"v{version}: {reason}", "hex": data.hex()})
            continue
        raise AssertionError(f"malformed case {reason!r} was accepted")
    return out


def _golden_envelope(digests: dict[str, TDigest]) -> Envelope:
    return Envelope(
        metadata={"source": "public.events", "time_column": "created_at",
                  "window_start": "2026-11-22T10:00:00+00:00",
                  "window_end": "2026-11-22T10:15:00+00:00",
                  "baseline": {"kind": "stored", "window_start": "2026-11-01T00:00:00+00:00",
                               "window_end": "2026-11-08T00:00:00+00:00",
                               "captured_at": "2026-11-08T00:05:00+00:00"},
                  "compression": 100, "request_id": "golden-1",
                  "client": "pg_stat_guard/0.1.0"},
        columns={"amount": ColumnDigests(current=digests["small"], baseline=digests["normal_1000"]),
                 "latency ms": ColumnDigests(current=digests["empty"], baseline=digests["single"])},
    )


ENVELOPE_COLUMNS = {"amount": {"current": "small", "baseline": "normal_1000"},
                    "latency ms": {"current": "empty", "baseline": "single"}}

# ---- category count tables and the version 2 envelope ------------------------------

CITIES = ["paris", "lyon", "paris", "", "Zürich", None, "nice", "lyon", "paris", None, "日本",
          "lyon", "paris", "Lyon"]


def golden_category_tables() -> dict[str, CategoryCounts]:
    small = CategoryCounts.from_values(CITIES, 10)
    spread = {f"c{i:03d}": 1000 - 3 * i for i in range(300)}
    return {
        # names with ties (by bytes: "Lyon" < "lyon"), the empty string, non-ASCII, NULLs
        "categories_small": small,
        # the current window of "categories_small": its named categories counted however
        # rare ("Zürich" once, "" not at all), one of the others named, the rest pooled
        "categories_listed": CategoryCounts.from_values(
            ["lyon"] * 9 + ["paris"] * 3 + ["Zürich", "bordeaux", "bordeaux", "lille",
                                            "metz", None], 1, listed=small.counts),
        # 300 categories bounded at 200: 100 pooled
        "categories_pooled": CategoryCounts.bounded(spread, 200, missing=17),
        "categories_empty": CategoryCounts(),
        "categories_missing_only": CategoryCounts(missing=12),
        # a value of 256 bytes kept, longer ones shortened (category_key)
        "categories_long": CategoryCounts.from_values(
            ["y" * 256, "x" * 300, "é" * 200, "x" * 300], 10),
        # the largest name and counts that sum to 2^64 - 1
        "categories_extremes": CategoryCounts.of(
            {"a": 2**63, "n" * 1024: 2**62}, other_count=2**62 - 5, other_distinct=3,
            missing=4),
    }


def describe_table(table: CategoryCounts) -> dict:
    return {"categories": [[name, count] for name, count in table.categories],
            "other_count": table.other_count, "other_distinct": table.other_distinct,
            "missing": table.missing}


def malformed_tables(valid: bytes) -> list[dict]:
    """Malformed variants of a valid count table of at least three categories (version 1
    of PSGC), each with why a reader must reject it."""
    header = 36
    first_len = struct.unpack_from("<H", valid, header)[0]
    first_name = header + 2
    first_count = first_name + first_len
    second = first_count + 8

    def patch(offset: int, fmt: str, value: object) -> bytes:
        data = bytearray(valid)
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)

    def entry(name: bytes, count: int) -> bytes:
        return struct.pack("<H", len(name)) + name + struct.pack("<Q", count)

    def table(entries: list[tuple[bytes, int]], other: int = 0, distinct: int = 0,
              missing: int = 0) -> bytes:
        return struct.pack("<4sBBHQQQI", b"PSGC", 1, 0, 0, missing, other, distinct,
                           len(entries)) + b"".join(entry(n, c) for n, c in entries)

    cases = [
        ("bad magic", b"PSGX" + valid[4:]),
        ("version 0", patch(4, "<B", 0)),
        ("unsupported version", patch(4, "<B", 2)),
        ("reserved flags set", patch(5, "<B", 1)),
        ("reserved field set", patch(6, "<H", 1)),
        ("truncated header", valid[:header - 1]),
        ("empty input", b""),
        ("category count over the limit", patch(32, "<I", 4097)),
        ("category count larger than the input", patch(32, "<I", 10**6)),
        ("one category more than written", patch(32, "<I", struct.unpack_from(
            "<I", valid, 32)[0] + 1)),
        ("other_distinct above other_count", table([(b"a", 2)], other=1, distinct=2)),
        ("other_count without other_distinct", table([(b"a", 2)], other=3, distinct=0)),
        ("other_distinct without other_count", table([(b"a", 2)], other=0, distinct=1)),
        ("name over 1024 bytes", table([(b"n" * 1025, 1)])),
        ("name length beyond the input", patch(header, "<H", 60000)),
        ("truncated name", table([(b"abc", 1)])[:-9]),
        ("truncated count", valid[:-1]),
        ("invalid UTF-8", table([(b"\xff", 1)])),
        ("overlong UTF-8", table([(b"\xc0\x80", 1)])),
        ("overlong three-byte UTF-8", table([(b"\xe0\x80\xaf", 1)])),
        ("UTF-16 surrogate", table([(b"\xed\xa0\x80", 1)])),
        ("code point above U+10FFFF", table([(b"\xf4\x90\x80\x80", 1)])),
        ("truncated UTF-8 sequence", table([(b"ab\xe6\x97", 1)])),
        ("NUL in a name", table([(b"a\x00b", 1)])),
        ("zero count", patch(first_count, "<Q", 0)),
        ("counts out of order", table([(b"a", 1), (b"b", 2)])),
        ("ties out of byte order", table([(b"b", 2), (b"a", 2)])),
        ("duplicate category", table([(b"a", 2), (b"a", 2)])),
        ("second entry's count above the first", patch(second + 2 + struct.unpack_from(
            "<H", valid, second)[0], "<Q", 2**63)),
        ("counts sum beyond 2^64 - 1", table([(b"a", 2**63), (b"b", 2**63)])),
        ("missing and pooled counts sum beyond 2^64 - 1",
         table([(b"a", 1)], other=2**63, distinct=1, missing=2**63)),
        ("trailing byte", valid + b"\x00"),
    ]
    out = []
    for reason, data in cases:
        try:
            decode_category_table(data)
        except ValueError:
            out.append({"reason": reason, "hex": data.hex()})
            continue
        raise AssertionError(f"malformed table {reason!r} was accepted")
    return out


def _golden_envelope_v2(digests: dict[str, TDigest],
                        tables: dict[str, CategoryCounts]) -> Envelope:
    metadata = dict(_golden_envelope(digests).metadata, request_id="golden-2",
                    max_categories=200)
    return Envelope(
        metadata=metadata,
        columns={"amount": ColumnDigests(current=digests["small"],
                                         baseline=digests["normal_1000"]),
                 "city": ColumnCategories(current=tables["categories_listed"],
                                          baseline=tables["categories_small"]),
                 "plan tier": ColumnCategories(current=tables["categories_missing_only"],
                                               baseline=tables["categories_pooled"])})


ENVELOPE_V2_COLUMNS = {
    "amount": {"kind": "numeric", "current": "small", "baseline": "normal_1000"},
    "city": {"kind": "categorical", "current": "categories_listed",
             "baseline": "categories_small"},
    "plan tier": {"kind": "categorical", "current": "categories_missing_only",
                  "baseline": "categories_pooled"}}


def malformed_envelopes_v2(valid: bytes) -> list[dict]:
    """Malformed variants of the golden version 2 envelope (its first entry numeric, its
    third categorical), each with why a reader must reject it."""
    meta_len = struct.unpack_from("<I", valid, 8)[0]
    first = 12 + meta_len + 4

    def entry_at(offset: int) -> tuple[int, int, int]:
        """(offset of the role byte, of the body, end) of the entry at offset."""
        name_len = struct.unpack_from("<H", valid, offset)[0]
        role_at = offset + 2 + name_len
        body_len = struct.unpack_from("<I", valid, role_at + 2)[0]
        return role_at, role_at + 6, role_at + 6 + body_len

    entries = []
    offset = first
    while offset < len(valid):
        entries.append((offset, *entry_at(offset)))
        offset = entries[-1][3]
    (_, num_role, num_body, num_end), (_, _, _, _), (cat_start, cat_role, cat_body,
                                                      cat_end) = entries[:3]

    def patched(offset: int, value: int) -> bytes:
        data = bytearray(valid)
        data[offset] = value
        return bytes(data)

    def with_count(count: int, data: bytes) -> bytes:
        out = bytearray(data)
        struct.pack_into("<I", out, 12 + meta_len, count)
        return bytes(out)

    digest_body = valid[num_body:num_end]
    cat_as_digest = (valid[:cat_role + 1] + b"\x00" + struct.pack("<I", len(digest_body))
                     + digest_body + valid[cat_end:])
    cases = [
        ("unknown entry kind", patched(num_role + 1, 2)),
        ("categorical kind over a digest body", patched(num_role + 1, 1)),
        ("numeric kind over a category table", patched(cat_role + 1, 0)),
        ("a column with a numeric and a categorical entry", cat_as_digest),
        ("digest length below the smallest digest",
         valid[:num_role + 2] + struct.pack("<I", 53) + valid[num_role + 6:]),
        ("category table length below its header",
         valid[:cat_role + 2] + struct.pack("<I", 35) + valid[cat_role + 6:]),
        ("category table length beyond the input",
         valid[:cat_role + 2] + struct.pack("<I", 10**6) + valid[cat_role + 6:]),
        ("a malformed category table inside", patched(cat_body + 4, 9)),
        ("a categorical column without its baseline table",
         with_count(len(entries) - 1, valid[:entries[-1][0]])),
        ("a categorical column with two baseline tables", patched(cat_role, 1)),
        ("version 3", patched(4, 3)),
        ("truncated inside an entry", valid[:cat_start + 3]),
        ("trailing byte", valid + b"\x00"),
    ]
    out = []
    for reason, data in cases:
        try:
            decode_envelope(data)
        except ValueError:
            out.append({"reason": reason, "hex": data.hex()})
            continue
        raise AssertionError(f"malformed envelope {reason!r} was accepted")
    return out


def main() -> None:
    digests = golden_digests()
    manifest: dict = {"format": "pg_stat_guard wire format: digests version 3 (written), "
                                "versions 2 (read, in v2/) and 1 (read, in v1/); category "
                                "tables version 1; envelopes version 1 (numeric) and 2",
                      "digests": {}}
    for name, digest in digests.items():
        data = encode_digest(digest)
        (OUT_DIR / f"{name}.psgd").write_bytes(data)
        manifest["digests"][name] = {"file": f"{name}.psgd", "size": len(data),
                                     "hex": data.hex()} | describe(digest)
    envelope = _golden_envelope(digests)
    envelope_bytes = encode_envelope(envelope)
    (OUT_DIR / "envelope.psge").write_bytes(envelope_bytes)
    manifest["envelope"] = {"file": "envelope.psge", "size": len(envelope_bytes),
                            "metadata": envelope.metadata, "columns": ENVELOPE_COLUMNS}
    # Version 1 and 2 files, as the version 1 and 2 writers wrote them: what they read as
    # (and the version 3 bytes a writer gives back).
    for version, directory in ((1, V1_DIR), (2, V2_DIR)):
        section = manifest[f"v{version}_digests"] = {}
        for path in sorted(directory.glob("*.psgd")):
            data = path.read_bytes()
            assert data[4] == version, path
            digest = decode_digest(data)
            section[path.stem] = {
                "file": f"{directory.name}/{path.name}", "size": len(data), "hex": data.hex(),
                "reads_as_hex": encode_digest(digest).hex()} | describe(digest)
    # The version 2 writer's digests are the ones golden_digests() built then.
    for name, spec in manifest["v2_digests"].items():
        if name not in ("normal_20000", "ties_5000"):  # compressed with the former scale
            assert spec["reads_as_hex"] == manifest["digests"][name]["hex"], name
        assert (V2_DIR / f"{name}.psgd").read_bytes() == encode_digest_v2(
            decode_digest((V2_DIR / f"{name}.psgd").read_bytes())), name
    v1_envelope = (V1_DIR / "envelope.psge").read_bytes()
    manifest["v1_envelope"] = {"file": "v1/envelope.psge", "size": len(v1_envelope),
                               "reads_as": "envelope.psge",
                               "columns": ENVELOPE_COLUMNS}
    assert encode_envelope(decode_envelope(v1_envelope)) == envelope_bytes
    manifest["malformed_digests"] = (
        malformed_v3(encode_digest(digests["normal_20000"]))
        + malformed((V2_DIR / "normal_20000.psgd").read_bytes())
        + malformed((V1_DIR / "normal_20000.psgd").read_bytes()))
    tables = golden_category_tables()
    manifest["category_tables"] = {}
    for name, table in tables.items():
        data = encode_category_table(table)
        (OUT_DIR / f"{name}.psgc").write_bytes(data)
        manifest["category_tables"][name] = {"file": f"{name}.psgc", "size": len(data),
                                             "hex": data.hex()} | describe_table(table)
    manifest["malformed_category_tables"] = malformed_tables(
        encode_category_table(tables["categories_small"]))
    envelope_v2 = _golden_envelope_v2(digests, tables)
    envelope_v2_bytes = encode_envelope(envelope_v2)
    (OUT_DIR / "envelope_v2.psge").write_bytes(envelope_v2_bytes)
    manifest["envelope_v2"] = {"file": "envelope_v2.psge", "size": len(envelope_v2_bytes),
                               "metadata": envelope_v2.metadata,
                               "columns": ENVELOPE_V2_COLUMNS}
    manifest["malformed_envelopes_v2"] = malformed_envelopes_v2(envelope_v2_bytes)
    # The envelopes an extension writing version 2 digests sent (the verdict service is
    # upgraded first): they read as the envelopes above.
    manifest["v2_envelopes"] = {}
    for name, reads_as, columns in (("envelope", envelope_bytes, ENVELOPE_COLUMNS),
                                    ("envelope_v2", envelope_v2_bytes, ENVELOPE_V2_COLUMNS)):
        data = (V2_DIR / f"{name}.psge").read_bytes()
        assert encode_envelope(decode_envelope(data)) == reads_as, name
        manifest["v2_envelopes"][name] = {"file": f"v2/{name}.psge", "size": len(data),
                                          "reads_as": f"{name}.psge", "columns": columns}
    (OUT_DIR / "golden.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
