"""The wire format: golden vectors (digest version 3 written, versions 1 and 2 read;
category tables; envelopes version 1 and 2), strict reading, canonical writing."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from stat_guard.categories import CategoryCounts
from stat_guard.tdigest import DEFAULT_COMPRESSION, TDigest
from stat_guard.wire import (
    DIGEST_MIN_SIZE,
    ColumnCategories,
    ColumnDigests,
    Envelope,
    WireFormatError,
    decode_category_table,
    decode_digest,
    decode_envelope,
    encode_category_table,
    encode_digest,
    encode_envelope,
    encode_varints,
)
from tests.conftest import GOLDEN_DIR
from tests.golden.generate import (
    encode_digest_v2,
    golden_category_tables,
    golden_digests,
    key,
    v3_assemble,
    v3_fields,
)


def _float(value):
    return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}.get(value, value)


def test_writer_reproduces_every_golden_digest_byte_for_byte(golden):
    for name, digest in golden_digests().items():
        expected = (GOLDEN_DIR / golden["digests"][name]["file"]).read_bytes()
        assert encode_digest(digest) == expected, name


def _check_documented_fields(name: str, digest, spec: dict) -> None:
    """Counts, moments, centroid means and CDF values as the golden file documents them."""
    for field in ("compression", "count", "null_count", "nan_count", "pos_inf_count",
                  "neg_inf_count"):
        assert getattr(digest, field) == spec[field], (name, field)
    for field in ("min", "max", "mean", "mean_residual", "m2"):
        assert getattr(digest, field) == _float(spec[field]), (name, field)
    assert digest.means.tolist() == [_float(m) for m in spec["means"]]
    for x, expected in spec["cdf"]:
        got = digest.cdf(x)
        assert (expected is None and math.isnan(got)) or got == expected, (name, x)


def test_golden_digests_decode_to_their_documented_fields(golden):
    for name, spec in golden["digests"].items():
        data = (GOLDEN_DIR / spec["file"]).read_bytes()
        assert data.hex() == spec["hex"]
        digest = decode_digest(data)
        _check_documented_fields(name, digest, spec)
        assert digest.weights.tolist() == spec["weights"]
        for q, expected in spec["quantile"]:
            got = digest.quantile(q)
            assert (expected is None and math.isnan(got)) or got == expected, (name, q)
        assert encode_digest(digest) == data


def test_version_1_golden_digests_read_as_documented(golden):
    assert len(golden["v1_digests"]) >= 8
    for name, spec in golden["v1_digests"].items():
        data = (GOLDEN_DIR / spec["file"]).read_bytes()
        assert data.hex() == spec["hex"] and data[4] == 1, name
        digest = decode_digest(data)
        _check_documented_fields(name, digest, spec)
        # A writer writes version 3: the documented bytes.
        assert encode_digest(digest).hex() == spec["reads_as_hex"], name


def test_version_2_golden_digests_read_as_documented(golden):
    """The version 2 writer's files read into the digest they hold (weights too), give
    version 3 bytes back, and those read into the same digest."""
    assert set(golden["v2_digests"]) == set(golden["digests"])
    for name, spec in golden["v2_digests"].items():
        data = (GOLDEN_DIR / spec["file"]).read_bytes()
        assert data.hex() == spec["hex"] and data[4] == 2 and len(data) == spec["size"], name
        digest = decode_digest(data)
        _check_documented_fields(name, digest, spec)
        assert digest.weights.tolist() == spec["weights"], name
        again = encode_digest(digest)
        assert again.hex() == spec["reads_as_hex"] and again[4] == 3, name
        assert decode_digest(again) == digest, name
        # Version 2 bytes are canonical: the version 2 writer gives the file back.
        assert encode_digest_v2(digest) == data, name


def test_version_2_files_hold_the_golden_digests_of_their_time(golden):
    """Digests the new scale function builds differently (compressed at the former
    MASS_CAP) aside, the version 2 files hold today's golden digests."""
    digests = golden_digests()
    for name, spec in golden["v2_digests"].items():
        if name in ("normal_20000", "ties_5000"):
            continue
        assert decode_digest((GOLDEN_DIR / spec["file"]).read_bytes()) == digests[name], name


def test_version_1_envelope_reads_as_the_current_one(golden):
    v1 = decode_envelope((GOLDEN_DIR / golden["v1_envelope"]["file"]).read_bytes())
    current = (GOLDEN_DIR / golden["v1_envelope"]["reads_as"]).read_bytes()
    assert encode_envelope(v1) == current


def test_envelopes_of_version_2_digests_read_as_the_current_ones(golden):
    assert set(golden["v2_envelopes"]) == {"envelope", "envelope_v2"}
    for spec in golden["v2_envelopes"].values():
        data = (GOLDEN_DIR / spec["file"]).read_bytes()
        assert len(data) == spec["size"]
        envelope = decode_envelope(data)
        assert list(envelope.columns) == list(spec["columns"])
        assert encode_envelope(envelope) == (GOLDEN_DIR / spec["reads_as"]).read_bytes()


def test_golden_envelope_round_trips(golden):
    data = (GOLDEN_DIR / "envelope.psge").read_bytes()
    envelope = decode_envelope(data)
    assert envelope.metadata == golden["envelope"]["metadata"]
    digests = golden_digests()
    for column, roles in golden["envelope"]["columns"].items():
        assert envelope.columns[column].current == digests[roles["current"]]
        assert envelope.columns[column].baseline == digests[roles["baseline"]]
    assert encode_envelope(envelope) == data


def test_every_golden_malformed_digest_is_rejected(golden):
    cases = golden["malformed_digests"]
    by_version = {v: [c for c in cases if c["reason"].startswith(f"v{v}: ")] for v in (1, 2, 3)}
    assert len(by_version[3]) >= 50 and len(by_version[2]) >= 35 and len(by_version[1]) >= 25
    assert sum(map(len, by_version.values())) == len(cases)
    for case in cases:
        with pytest.raises(WireFormatError):
            decode_digest(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("reason, message", [
    ("non-minimal count varint", "count varint is not minimally encoded"),
    ("non-minimal n_centroids varint", "n_centroids varint is not minimally encoded"),
    ("n_centroids too large for the remaining bytes", "cannot fit"),
    ("a step that runs past max", "runs past max"),
    ("steps whose running sum passes 2^64", "runs past max"),
    ("a step landing on -0.0", "-0.0"),
    ("weights not summing to count", "sum to"),
    ("zero weight", "at least 1"),
    ("trailing byte", "trailing"),
    ("truncated", "truncated"),
    ("reserved flags set", "flags"),
    ("empty digest with a non-zero min", "min = \\+0.0"),
    ("values but no centroids", "at least one centroid"),
])
def test_golden_malformed_version_3_digests_say_what_is_wrong(golden, reason, message):
    (case,) = [c for c in golden["malformed_digests"] if c["reason"] == f"v3: {reason}"]
    with pytest.raises(WireFormatError, match=message):
        decode_digest(bytes.fromhex(case["hex"]))


def test_a_huge_centroid_count_is_refused_before_any_allocation():
    # version 2: 92 + 9n bytes needed
    header = bytearray(encode_digest_v2(TDigest.from_values([1.0, 2.0])))[:92]
    struct.pack_into("<Q", header, 8, 2**63)
    struct.pack_into("<I", header, 88, 65536)
    with pytest.raises(WireFormatError, match="cannot fit"):
        decode_digest(bytes(header))
    # version 3: 2n bytes must follow n_centroids
    fixed = encode_digest(TDigest.from_values([1.0, 2.0]))[:48]
    counts = encode_varints(np.array([2**63, 0, 0, 0, 0, 65536], dtype=np.uint64))
    with pytest.raises(WireFormatError, match="cannot fit"):
        decode_digest(fixed + counts)
    with pytest.raises(WireFormatError, match="cannot fit"):
        decode_digest(fixed + counts + bytes(2 * 65536 - 1))
    with pytest.raises(WireFormatError) as info:  # long enough: read, then refused
        decode_digest(fixed + counts + bytes(2 * 65536))
    assert "cannot fit" not in str(info.value)


def test_version_3_layout():
    """The bytes of docs/wire-format.md §1.1, field by field, for a small digest."""
    digest = TDigest.from_values([-1.0, 2.0, 2.0, 1e300, None, float("nan")], compression=100)
    data = encode_digest(digest)
    assert data[:8] == b"PSGD\x03\x00" + struct.pack("<H", 100)
    assert struct.unpack_from("<5d", data, 8) == (
        -1.0, 1e300, digest.mean, digest.mean_residual, digest.m2)
    steps = [0, key(2.0) - key(-1.0), 0, key(1e300) - key(2.0)]
    assert data[48:] == encode_varints(np.array([4, 1, 1, 0, 0, 4, *steps, 1, 1, 1, 1],
                                                dtype=np.uint64))
    assert v3_fields(data) == (data[:48], [4, 1, 1, 0, 0, 4], steps, [1, 1, 1, 1])
    # A run of equal values takes one byte per mean; the empty digest is the smallest.
    assert len(encode_digest(TDigest.from_values([7.5] * 100))) == 48 + 6 + 100 + 100
    assert len(encode_digest(TDigest.empty())) == DIGEST_MIN_SIZE == 54


def test_keys_follow_the_order_of_the_doubles():
    values = [-math.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e308, math.inf]
    keys = [key(v) for v in values]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert key(-0.0) + 1 == key(0.0) == 2**63
    assert key(5e-324) == key(0.0) + 1 and key(-5e-324) == key(-0.0) - 1


def test_negative_zero_is_written_as_positive_zero():
    digest = TDigest.from_values([-0.0, -0.0, 1.0])
    data = encode_digest(digest)
    decoded = decode_digest(data)
    assert math.copysign(1.0, decoded.min) == 1.0
    assert all(math.copysign(1.0, m) == 1.0 for m in decoded.means)


_values = hs.lists(
    hs.one_of(hs.floats(allow_nan=True, allow_infinity=True), hs.none(),
              hs.sampled_from([0.0, 1.0, 1.0, 2.0, -1e308, 1e308, 5e-324])),
    max_size=600,
)


@settings(max_examples=300, deadline=None)
@given(values=_values, compression=hs.integers(10, 10000))
def test_round_trip_is_exact(values, compression):
    digest = TDigest.from_values(values, compression=compression)
    data = encode_digest(digest)
    decoded = decode_digest(data)
    assert decoded == digest
    assert encode_digest(decoded) == data


@settings(max_examples=300, deadline=None)
@given(values=hs.lists(hs.floats(-1e6, 1e6), min_size=1, max_size=5000))
def test_round_trip_of_compressed_digests(values):
    digest = TDigest.from_values(values, compression=10)
    assert decode_digest(encode_digest(digest)) == digest


def _check_accepted(data: bytes, digest: TDigest) -> None:
    """Whatever a reader accepts is canonical: version 3 bytes are the writer's bytes,
    version 2 bytes the version 2 writer's; version 1 and 2 digests come back as version 3
    bytes that read back unchanged."""
    again = encode_digest(digest)
    if data[4] == 3:
        assert again == data
        return
    if data[4] == 2:
        assert encode_digest_v2(digest) == data
    assert again[4] == 3 and encode_digest(decode_digest(again)) == again
    assert decode_digest(again) == digest


@settings(max_examples=2000, deadline=None)
@given(data=hs.binary(max_size=400),
       prefix=hs.sampled_from([b"", b"PSGD\x03\x00\x64\x00", b"PSGD\x02\x00\x64\x00"]))
def test_random_bytes_only_raise_the_documented_error(data, prefix):
    data = prefix + data
    try:
        digest = decode_digest(data)
    except WireFormatError:
        return
    _check_accepted(data, digest)


_VALID = [encode_digest(d) for d in golden_digests().values()] + [
    p.read_bytes() for version in ("v1", "v2")
    for p in sorted((GOLDEN_DIR / version).glob("*.psgd"))]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=hs.sampled_from(_VALID), edits=hs.lists(
    hs.tuples(hs.integers(0, 2000), hs.integers(0, 255), hs.sampled_from(["set", "del", "ins"])),
    min_size=1, max_size=4), cut=hs.integers(0, 2000))
def test_mutated_digests_only_raise_the_documented_error(base, edits, cut):
    data = bytearray(base)
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "set" and position < len(data):
            data[position] = value
        elif kind == "del" and position < len(data):
            del data[position]
        else:
            data.insert(position, value)
    if cut < len(data) and cut % 7 == 0:
        data = data[:cut]
    try:
        digest = decode_digest(bytes(data))
    except WireFormatError:
        return
    _check_accepted(bytes(data), digest)


# ---- version 3: round trips and fuzzing of the varint fields ---------------------------

_SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1.0, 1.0, 2.0, 1e308, -1e308,
            1.7976931348623157e308, -1.7976931348623157e308]
_finite = hs.one_of(hs.floats(allow_nan=False, allow_infinity=False), hs.sampled_from(_SPECIAL))
_u64 = hs.one_of(hs.integers(0, 2**64 - 1), hs.sampled_from([0, 1, 127, 128, 2**63, 2**64 - 1]))


@hs.composite
def _raw_digests(draw) -> TDigest:
    """Any valid digest, not only ones a writer builds: means anywhere in [min, max]
    (runs of equal means, ±1e308, subnormals), weights up to 2^62, huge invalid counts."""
    means = sorted(draw(hs.lists(_finite, min_size=1, max_size=60)))
    means = np.array(means, dtype=np.float64) + 0.0
    weights = draw(hs.lists(hs.one_of(hs.integers(1, 3), hs.integers(1, 2**62 // 64)),
                            min_size=means.size, max_size=means.size))
    vmin = float(means[0]) if draw(hs.booleans()) else math.nextafter(means[0], -math.inf)
    vmax = float(means[-1]) if draw(hs.booleans()) else math.nextafter(means[-1], math.inf)
    if not math.isfinite(vmin):
        vmin = float(means[0])
    if not math.isfinite(vmax):
        vmax = float(means[-1])
    vmin, vmax = vmin + 0.0, vmax + 0.0
    mean = draw(hs.sampled_from([vmin, vmax, float(means[means.size // 2])])) + 0.0
    return TDigest(compression=draw(hs.integers(10, 10000)), means=means,
                   weights=np.array(weights, dtype=np.uint64), count=sum(weights),
                   min=vmin, max=vmax, mean=mean, mean_residual=0.0,
                   m2=draw(hs.sampled_from([0.0, 1.5, 1e300, math.inf])),
                   null_count=draw(_u64), nan_count=draw(_u64), pos_inf_count=draw(_u64),
                   neg_inf_count=draw(_u64))


@settings(max_examples=500, deadline=None)
@given(digest=_raw_digests())
def test_version_3_round_trip_of_any_valid_digest_is_exact(digest):
    data = encode_digest(digest)
    decoded = decode_digest(data)
    assert decoded == digest
    assert np.array_equal(decoded.means.view(np.uint64), digest.means.view(np.uint64))
    assert encode_digest(decoded) == data
    # The same digest as the version 2 writer wrote it reads into the same digest.
    assert decode_digest(encode_digest_v2(digest)) == decoded


@settings(max_examples=300, deadline=None)
@given(values=_values, compression=hs.integers(10, 10000))
def test_a_version_2_digest_and_its_version_3_bytes_read_the_same(values, compression):
    digest = TDigest.from_values(values, compression=compression)
    v2, v3 = encode_digest_v2(digest), encode_digest(digest)
    assert decode_digest(v2) == decode_digest(v3) == digest
    assert encode_digest(decode_digest(v2)) == v3


def test_version_3_is_smaller_than_version_2_for_compressed_digests(golden):
    rng = np.random.default_rng(11)
    sizes = {}
    for name, values in (("normal", rng.normal(size=1_000_000)),
                         ("lognormal", rng.lognormal(size=1_000_000)),
                         ("prices", np.round(rng.lognormal(3, 1, 200_000), 2))):
        digest = TDigest.from_values(values)
        assert digest.count > digest.means.size  # compressed
        v2, v3 = encode_digest_v2(digest), encode_digest(digest)
        assert decode_digest(v2) == decode_digest(v3) == digest
        sizes[name] = (len(v2), len(v3))
        assert len(v3) < 0.95 * len(v2), (name, sizes[name])
    for name, spec in golden["v2_digests"].items():
        assert len(bytes.fromhex(spec["reads_as_hex"])) < spec["size"], name
    print(f"\nversion 2 and 3 sizes at the default compression {DEFAULT_COMPRESSION}: {sizes}")


def _v3_structured_mutation(base: bytes, data) -> bytes:
    """One field of a valid version 3 digest changed (a header count, a mean step, a
    weight, a double of the fixed part), written back with minimal varints."""
    fixed, header, steps, weights = v3_fields(base)
    fixed = bytearray(fixed)
    target = data.draw(hs.sampled_from(["header", "step", "weight", "double", "swap"]))
    if target == "header":
        index = data.draw(hs.integers(0, 5))
        header[index] = data.draw(hs.one_of(
            _u64, hs.integers(max(header[index] - 2, 0), header[index] + 2))) % 2**64
    elif target in ("step", "weight") and steps:
        values = steps if target == "step" else weights
        index = data.draw(hs.integers(0, len(values) - 1))
        values[index] = data.draw(hs.one_of(
            _u64, hs.integers(max(values[index] - 3, 0), values[index] + 3)))
        values[index] %= 2**64
    elif target == "swap" and len(steps) >= 2:
        i, j = data.draw(hs.lists(hs.integers(0, len(steps) - 1), min_size=2, max_size=2))
        steps[i], steps[j] = steps[j], steps[i]
    else:
        offset = data.draw(hs.sampled_from([8, 16, 24, 32, 40]))
        old = struct.unpack_from("<d", fixed, offset)[0]
        new = data.draw(hs.sampled_from(
            [*_SPECIAL, math.nan, math.inf, -math.inf, -old, old * 2.0, old + 1e-300]))
        struct.pack_into("<d", fixed, offset, new)
    return v3_assemble(bytes(fixed), header, steps, weights)


_VALID_V3 = [encode_digest(d) for d in golden_digests().values()] + [
    encode_digest(TDigest.from_values(v, compression=10)) for v in (
        [-1e308, -1.0, -0.0, 5e-324, 1.0, 1e308], [2.0] * 40 + [3.0] * 3,
        np.random.default_rng(5).normal(size=3000))]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=hs.sampled_from(_VALID_V3), data=hs.data())
def test_mutated_version_3_fields_only_raise_the_documented_error(base, data):
    mutated = _v3_structured_mutation(base, data)
    try:
        digest = decode_digest(mutated)
    except WireFormatError:
        return
    assert encode_digest(digest) == mutated


@settings(max_examples=500, deadline=None)
@given(values=hs.lists(_u64, max_size=300))
def test_varints_are_minimal_leb128(values):
    data = encode_varints(np.array(values, dtype=np.uint64))
    expected = bytearray()
    for value in values:
        while value >= 0x80:
            expected.append((value & 0x7F) | 0x80)
            value >>= 7
        expected.append(value)
    assert data == bytes(expected)


@settings(max_examples=1000, deadline=None)
@given(data=hs.binary(max_size=300), prefix=hs.sampled_from([b"", b"PSGE\x01\x00\x00\x00"]))
def test_random_envelopes_only_raise_the_documented_error(data, prefix):
    try:
        decode_envelope(prefix + data)
    except WireFormatError:
        pass


def _envelope_bytes() -> bytes:
    d = TDigest.from_values(np.arange(100.0))
    return encode_envelope(Envelope({"request_id": "x"}, {"a": ColumnDigests(d, d)}))


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "digest length|truncated"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b"PSGX" + b[4:], "magic"),
    (lambda b: b[:4] + b"\x03" + b[5:], "version"),
    (lambda b: b[:8] + struct.pack("<I", 70000) + b[12:], "metadata of"),
    (lambda b: b[:12] + b"[1]            "[: struct.unpack_from("<I", b, 8)[0]]
     + b[12 + struct.unpack_from("<I", b, 8)[0]:], "JSON"),
])
def test_malformed_envelopes_say_what_is_wrong(mutate, message):
    with pytest.raises(WireFormatError, match=message):
        decode_envelope(mutate(_envelope_bytes()))


@pytest.mark.parametrize("metadata, message", [
    (b'{"request_id":1e999}', "overflows"),
    (b'{"x":[-1e400]}', "overflows"),
    (b'{"x":NaN}', "NaN"),
    (b'{"x":' + b"9" * 4301 + b"}", "unreadable number"),
    (b'{"x":' + b"[" * 30000 + b"]" * 30000 + b"}", "JSON"),
])
def test_metadata_numbers_a_double_cannot_hold_are_refused(metadata, message):
    d = TDigest.from_values([1.0, 2.0])
    data = encode_envelope(Envelope({}, {"a": ColumnDigests(d, d)}))
    body = data[:8] + struct.pack("<I", len(metadata)) + metadata + data[14:]
    with pytest.raises(WireFormatError, match=message):
        decode_envelope(body)


def test_an_envelope_column_needs_both_roles():
    d = TDigest.from_values([1.0, 2.0])
    data = bytearray(encode_envelope(Envelope({}, {"a": ColumnDigests(d, d)})))
    meta_len = struct.unpack_from("<I", data, 8)[0]
    entries_at = 12 + meta_len
    first_len = 2 + 1 + 1 + 4 + len(encode_digest(d))
    struct.pack_into("<I", data, entries_at, 1)
    truncated = bytes(data[: entries_at + 4 + first_len])
    with pytest.raises(WireFormatError, match="no baseline"):
        decode_envelope(truncated)


def test_envelope_round_trip_keeps_metadata_and_columns():
    rng = np.random.default_rng(7)
    columns = {f"col {i} ü;\"": ColumnDigests(TDigest.from_values(rng.normal(size=300)),
                                               TDigest.from_values(rng.normal(size=700)))
               for i in range(5)}
    envelope = Envelope({"source": "public.t", "request_id": "r", "compression": 200}, columns)
    decoded = decode_envelope(encode_envelope(envelope))
    assert decoded.metadata == envelope.metadata
    assert list(decoded.columns) == list(columns)
    for name in columns:
        assert decoded.columns[name].current == columns[name].current
        assert decoded.columns[name].baseline == columns[name].baseline


def test_sums_that_overflow_both_ways_are_never_nan():
    """A pairwise sum can meet +Infinity and -Infinity in its partial sums; the digest
    then carries the centroid estimate, which every reader accepts (found by the round
    trip property above)."""
    values = [-1e308] * 150 + [1e308] * 150 + [0.0] * 50
    digest = TDigest.from_values(values, compression=10)
    assert not math.isnan(digest.sum) and not math.isnan(digest.mean)
    assert decode_digest(encode_digest(digest)) == digest
    up, down = TDigest.from_values([1e308, 1e308]), TDigest.from_values([-1e308, -1e308])
    assert (up.sum, down.sum) == (math.inf, -math.inf)
    merged = TDigest.merge([up, down])
    assert merged.sum == 0.0 and merged.mean == 0.0
    assert decode_digest(encode_digest(merged)) == merged


# ---- category count tables and envelope version 2 ----------------------------------


def test_writer_reproduces_every_golden_category_table_byte_for_byte(golden):
    tables = golden_category_tables()
    assert set(tables) == set(golden["category_tables"])
    for name, table in tables.items():
        expected = (GOLDEN_DIR / golden["category_tables"][name]["file"]).read_bytes()
        assert encode_category_table(table) == expected, name


def test_golden_category_tables_decode_to_their_documented_fields(golden):
    for name, spec in golden["category_tables"].items():
        data = (GOLDEN_DIR / spec["file"]).read_bytes()
        assert data.hex() == spec["hex"] and len(data) == spec["size"]
        table = decode_category_table(data)
        assert [list(c) for c in table.categories] == spec["categories"], name
        assert (table.other_count, table.other_distinct, table.missing) == (
            spec["other_count"], spec["other_distinct"], spec["missing"]), name
        assert encode_category_table(table) == data


def test_every_golden_malformed_category_table_is_rejected(golden):
    assert len(golden["malformed_category_tables"]) >= 30
    for case in golden["malformed_category_tables"]:
        with pytest.raises(WireFormatError):
            decode_category_table(bytes.fromhex(case["hex"]))


def test_golden_version_2_envelope_round_trips(golden):
    spec = golden["envelope_v2"]
    data = (GOLDEN_DIR / spec["file"]).read_bytes()
    assert data[:5] == b"PSGE\x02"
    envelope = decode_envelope(data)
    assert envelope.metadata == spec["metadata"]
    assert list(envelope.columns) == list(spec["columns"])
    digests, tables = golden_digests(), golden_category_tables()
    for column, roles in spec["columns"].items():
        pair = envelope.columns[column]
        source = digests if roles["kind"] == "numeric" else tables
        kind = ColumnDigests if roles["kind"] == "numeric" else ColumnCategories
        assert isinstance(pair, kind), column
        assert pair.current == source[roles["current"]]
        assert pair.baseline == source[roles["baseline"]]
    assert encode_envelope(envelope) == data


def test_every_golden_malformed_version_2_envelope_is_rejected(golden):
    assert len(golden["malformed_envelopes_v2"]) >= 10
    for case in golden["malformed_envelopes_v2"]:
        with pytest.raises(WireFormatError):
            decode_envelope(bytes.fromhex(case["hex"]))


def test_numeric_envelopes_are_still_written_as_version_1():
    d = TDigest.from_values([1.0, 2.0, 3.0])
    numeric = encode_envelope(Envelope({"request_id": "n"}, {"a": ColumnDigests(d, d)}))
    assert numeric[4] == 1
    table = CategoryCounts.of({"x": 3})
    mixed = encode_envelope(Envelope({}, {"a": ColumnDigests(d, d),
                                          "b": ColumnCategories(table, table)}))
    assert mixed[4] == 2
    # The same numeric column framed as version 2 (a kind byte 0 after each role) is read,
    # and written back as version 1.
    meta_len = struct.unpack_from("<I", numeric, 8)[0]
    out = bytearray(numeric[:4] + b"\x02" + numeric[5:16 + meta_len])
    offset = 16 + meta_len
    while offset < len(numeric):
        role_at = offset + 2 + struct.unpack_from("<H", numeric, offset)[0]
        end = role_at + 5 + struct.unpack_from("<I", numeric, role_at + 1)[0]
        out += numeric[offset:role_at + 1] + b"\x00" + numeric[role_at + 1:end]
        offset = end
    envelope = decode_envelope(bytes(out))
    assert envelope == decode_envelope(numeric)
    assert encode_envelope(envelope) == numeric


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "length|truncated"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b[:4] + b"\x03" + b[5:], "version"),
])
def test_malformed_version_2_envelopes_say_what_is_wrong(golden, mutate, message):
    data = (GOLDEN_DIR / golden["envelope_v2"]["file"]).read_bytes()
    with pytest.raises(WireFormatError, match=message):
        decode_envelope(mutate(data))


def test_category_table_refuses_a_huge_count_before_any_allocation():
    header = struct.pack("<4sBBHQQQI", b"PSGC", 1, 0, 0, 0, 0, 0, 4096)
    with pytest.raises(WireFormatError, match="cannot fit"):
        decode_category_table(header + b"\x00" * 100)


_names = hs.text(hs.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                 max_size=12)


@settings(max_examples=300, deadline=None)
@given(counts=hs.dictionaries(_names, hs.integers(0, 2**40), max_size=40),
       limit=hs.integers(1, 50), missing=hs.integers(0, 2**40),
       listed=hs.lists(_names, max_size=5))
def test_category_table_round_trip_is_exact(counts, limit, missing, listed):
    table = CategoryCounts.bounded(counts, limit, listed, missing)
    data = encode_category_table(table)
    assert decode_category_table(data) == table
    assert len(table.categories) <= limit + len(set(listed))
    assert table.total == sum(counts.values())
    assert table.distinct == sum(1 for n in counts.values() if n)


_VALID_V2 = [(GOLDEN_DIR / "envelope_v2.psge").read_bytes()] + [
    encode_category_table(t) for t in golden_category_tables().values()]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=hs.sampled_from(_VALID_V2), edits=hs.lists(
    hs.tuples(hs.integers(0, 4000), hs.integers(0, 255), hs.sampled_from(["set", "del", "ins"])),
    min_size=1, max_size=4), cut=hs.integers(0, 4000))
def test_mutated_version_2_envelopes_and_tables_only_raise_the_documented_error(
        base, edits, cut):
    data = bytearray(base)
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "set" and position < len(data):
            data[position] = value
        elif kind == "del" and position < len(data):
            del data[position]
        else:
            data.insert(position, value)
    if cut < len(data) and cut % 7 == 0:
        data = data[:cut]
    decode = decode_envelope if base[:4] == b"PSGE" else decode_category_table
    encode = encode_envelope if base[:4] == b"PSGE" else encode_category_table
    try:
        decoded = decode(bytes(data))
    except WireFormatError:
        return
    # Whatever is accepted is canonical, but for metadata JSON spelled another way and a
    # version 2 envelope whose columns are all numeric (written back as version 1).
    again = encode(decoded)
    assert decode(again) == decoded
    if decode is decode_category_table:
        assert again == bytes(data)


@settings(max_examples=1000, deadline=None)
@given(data=hs.binary(max_size=300),
       prefix=hs.sampled_from([b"", b"PSGE\x02\x00\x00\x00", b"PSGC\x01\x00\x00\x00"]))
def test_random_version_2_bytes_only_raise_the_documented_error(data, prefix):
    for decode in (decode_envelope, decode_category_table):
        try:
            decode(prefix + data)
        except WireFormatError:
            pass
