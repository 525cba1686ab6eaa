"""The wire format (docs/wire-format.md): digests (``PSGD``), category count tables
(``PSGC``) and request envelopes (``PSGE``).

Writing is canonical and writes digest version 3, and envelope version 1 when every column
is numeric, version 2 when one is categorical: one value, one byte string. Reading is
strict and reads digest versions 1, 2 and 3 (a version 1 digest is converted as the
extension converts it; every version reads into the same digest) and envelope versions 1
and 2: every malformed input raises :class:`WireFormatError` with a message that says what
is wrong, and no length field can make the reader allocate more than the input itself
justifies.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stat_guard.categories import CategoryCounts
from stat_guard.tdigest import (
    MAX_CENTROIDS,
    MAX_COMPRESSION,
    MIN_COMPRESSION,
    TDigest,
    exact_moments,
    ulp,
)

DIGEST_MAGIC = b"PSGD"
ENVELOPE_MAGIC = b"PSGE"
DIGEST_VERSION = 3  # written; versions 1, 2 and 3 are read
ENVELOPE_VERSION = 2  # written when a column is categorical; version 1 when none is
NUMERIC_ENVELOPE_VERSION = 1
# Version 3: magic, version, flags, compression, min, max, mean, mean_residual, m2; then
# the varints (count, the four invalid counts, n_centroids, n mean steps, n weights).
DIGEST_FIXED = struct.Struct("<4sBBHddddd")
DIGEST_FIXED_SIZE = DIGEST_FIXED.size  # 48
DIGEST_HEADER_COUNTS = 6  # varints after the fixed part: count ... n_centroids
DIGEST_MIN_SIZE = DIGEST_FIXED_SIZE + DIGEST_HEADER_COUNTS  # 54: the empty digest
DIGEST_HEADER_V2 = struct.Struct("<4sBBHQQQQQdddddI")
DIGEST_HEADER_V2_SIZE = DIGEST_HEADER_V2.size  # 92
DIGEST_HEADER_V1 = struct.Struct("<4sBBHQQQQQddddI")
DIGEST_HEADER_V1_SIZE = DIGEST_HEADER_V1.size  # 84
# The fewest bytes one centroid takes, checked before anything is allocated: a mean step
# and a weight of a byte each (version 3), or a double and a weight (versions 1 and 2).
_CENTROID_MIN_BYTES = {1: 9, 2: 9, 3: 2}
ENVELOPE_HEADER = struct.Struct("<4sBBHI")
MAX_METADATA_BYTES = 65536
MAX_ENTRIES = 4096
MAX_NAME_BYTES = 1024
ROLE_CURRENT = 0
ROLE_BASELINE = 1
_ROLE_NAMES = {ROLE_CURRENT: "current", ROLE_BASELINE: "baseline"}
KIND_NUMERIC = 0  # a version 2 entry's body is a digest ...
KIND_CATEGORICAL = 1  # ... or a category count table
_KIND_NAMES = {KIND_NUMERIC: "numeric", KIND_CATEGORICAL: "categorical"}
CATEGORY_MAGIC = b"PSGC"
CATEGORY_VERSION = 1
CATEGORY_HEADER = struct.Struct("<4sBBHQQQI")
CATEGORY_HEADER_SIZE = CATEGORY_HEADER.size  # 36
CATEGORY_ENTRY_MIN = 10  # u16 length, no bytes, u64 count
MAX_TABLE_CATEGORIES = 4096
MAX_CATEGORY_BYTES = 1024
_U64_MAX = 2**64 - 1
_SIGN_BIT = 1 << 63
_NEGATIVE_ZERO_KEY = _SIGN_BIT - 1  # key(-0.0); key(+0.0) is one more
MAX_VARINT_BYTES = 10

assert (DIGEST_FIXED_SIZE, DIGEST_MIN_SIZE, DIGEST_HEADER_V2_SIZE, DIGEST_HEADER_V1_SIZE,
        CATEGORY_HEADER_SIZE) == (48, 54, 92, 84, 36)


class WireFormatError(ValueError):
    """Raised for any input that is not valid wire format."""


# ---- varints ----------------------------------------------------------------------

_VARINT_SHIFTS = np.arange(MAX_VARINT_BYTES, dtype=np.uint64) * np.uint64(7)
_VARINT_GROUPS = np.arange(MAX_VARINT_BYTES)


def encode_varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of every value, minimal length (vectorised: one row of up to ten
    7-bit groups per value, the groups a value needs kept in order)."""
    v = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    if v.size == 0:
        return b""
    shifted = v[:, None] >> _VARINT_SHIFTS  # (n, 10)
    lengths = 1 + np.count_nonzero(shifted[:, 1:], axis=1)
    groups = (shifted & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(_VARINT_GROUPS < (lengths - 1)[:, None], 0x80, 0).astype(np.uint8)
    return groups[_VARINT_GROUPS < lengths[:, None]].tobytes()


def _read_varint(view: memoryview, pos: int, name: str) -> tuple[int, int]:
    """One minimal varint at ``pos`` (``name`` says which field); the value and the
    position after it."""
    value = 0
    for index in range(MAX_VARINT_BYTES):
        if pos >= len(view):
            raise WireFormatError(f"digest ends inside the {name} varint")
        byte = view[pos]
        pos += 1
        if index == MAX_VARINT_BYTES - 1 and byte > 1:
            raise WireFormatError(f"{name} varint exceeds 64 bits")
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if index and byte == 0:
                raise WireFormatError(f"{name} varint is not minimally encoded")
            return value, pos
    raise WireFormatError(f"{name} varint longer than {MAX_VARINT_BYTES} bytes")


def _decode_varints(buf: np.ndarray, count: int, what: str,
                    name: Callable[[int], str]) -> tuple[np.ndarray, int]:
    """Decode ``count`` varints from the start of ``buf``; return them and bytes used.

    ``what`` names them all (for a truncation), ``name(i)`` the i-th one."""
    if count == 0:
        return np.empty(0, dtype=np.uint64), 0
    ends = np.flatnonzero((buf & 0x80) == 0)
    if ends.size < count:
        raise WireFormatError(f"truncated {what}: {count} expected, {ends.size} found")
    ends = ends[:count]
    used = int(ends[-1]) + 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    for bad, message in (
            (lengths > MAX_VARINT_BYTES, f"varint longer than {MAX_VARINT_BYTES} bytes"),
            ((lengths > 1) & (buf[ends] == 0), "varint is not minimally encoded"),
            ((lengths == MAX_VARINT_BYTES) & (buf[ends] > 1), "varint exceeds 64 bits")):
        if np.any(bad):
            raise WireFormatError(f"{name(int(np.argmax(bad)))} {message}")
    body = buf[:used]
    position = np.arange(used) - np.repeat(starts, lengths)
    parts = (body & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    values = np.bitwise_or.reduceat(parts, starts)
    return values.astype(np.uint64), used


# ---- digests ----------------------------------------------------------------------


def _keys(values: np.ndarray) -> np.ndarray:
    """key(x) of every double: its bits with the sign bit set when it is clear, all bits
    flipped when it is set; keys are in the order of the values, consecutive doubles
    have consecutive keys (docs/wire-format.md §1.1)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)) != 0
    return np.where(negative, ~bits, bits | np.uint64(_SIGN_BIT))


def _key(value: float) -> int:
    (bits,) = struct.unpack("<Q", struct.pack("<d", value))
    return (~bits & _U64_MAX) if bits & _SIGN_BIT else bits | _SIGN_BIT


def _doubles_from_keys(keys: np.ndarray) -> np.ndarray:
    positive = keys >= np.uint64(_SIGN_BIT)
    bits = np.where(positive, keys & np.uint64(_SIGN_BIT - 1), ~keys)
    return bits.view(np.float64)


def encode_digest(digest: TDigest) -> bytes:
    """The canonical wire bytes of a digest (version 3)."""
    empty = digest.count == 0
    vmin = 0.0 if empty else digest.min + 0.0
    fixed = DIGEST_FIXED.pack(
        DIGEST_MAGIC,
        DIGEST_VERSION,
        0,
        digest.compression,
        vmin,
        0.0 if empty else digest.max + 0.0,
        0.0 if empty else digest.mean + 0.0,
        0.0 if empty else digest.mean_residual + 0.0,
        0.0 if empty else digest.m2 + 0.0,
    )
    means = np.asarray(digest.means, dtype=np.float64) + 0.0
    # Mean steps: key distances from min to the first mean, then from mean to mean.
    steps = np.diff(_keys(np.concatenate(([vmin], means))))
    counts = np.array([digest.count, digest.null_count, digest.nan_count,
                       digest.pos_inf_count, digest.neg_inf_count, means.size],
                      dtype=np.uint64)
    weights = np.asarray(digest.weights, dtype=np.uint64)
    return fixed + encode_varints(np.concatenate((counts, steps, weights)))


def decode_digest(data: bytes | bytearray | memoryview) -> TDigest:
    """Parse and fully validate one digest (version 1, 2 or 3); the input must hold
    exactly one."""
    digest, used = _decode_digest_prefix(memoryview(data).cast("B"), 0)
    if used != len(data):
        raise WireFormatError(f"{len(data) - used} trailing bytes after the digest")
    return digest


def _is_negative_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) < 0


def _decode_digest_prefix(view: memoryview, offset: int) -> tuple[TDigest, int]:
    size = len(view) - offset
    if size < 5:
        raise WireFormatError(
            f"digest too short: {size} bytes, the smallest digest is {DIGEST_MIN_SIZE}"
        )
    magic = bytes(view[offset:offset + 4])
    if magic != DIGEST_MAGIC:
        raise WireFormatError(f"bad digest magic {magic!r}, expected {DIGEST_MAGIC!r}")
    version = view[offset + 4]
    smallest = {1: DIGEST_HEADER_V1_SIZE, 2: DIGEST_HEADER_V2_SIZE, 3: DIGEST_MIN_SIZE}.get(
        version)
    if smallest is None:
        raise WireFormatError(f"unsupported digest version {version}, expected 1, 2 or 3")
    if size < smallest:
        what = "smallest digest" if version == 3 else "header"
        raise WireFormatError(f"digest too short: {size} bytes, the {what} is {smallest}")
    vmean = vres = vm2 = vsum = vsum_sq = 0.0
    if version == 1:
        (_, _, flags, compression, count, nulls, nans, pinf, ninf,
         vmin, vmax, vsum, vsum_sq, n) = DIGEST_HEADER_V1.unpack_from(view, offset)
        start = offset + DIGEST_HEADER_V1_SIZE
    elif version == 2:
        (_, _, flags, compression, count, nulls, nans, pinf, ninf,
         vmin, vmax, vmean, vres, vm2, n) = DIGEST_HEADER_V2.unpack_from(view, offset)
        start = offset + DIGEST_HEADER_V2_SIZE
    else:
        (_, _, flags, compression, vmin, vmax, vmean, vres,
         vm2) = DIGEST_FIXED.unpack_from(view, offset)
    if flags != 0:
        raise WireFormatError(f"reserved digest flags must be 0, got {flags}")
    if not MIN_COMPRESSION <= compression <= MAX_COMPRESSION:
        raise WireFormatError(
            f"compression {compression} outside {MIN_COMPRESSION}..{MAX_COMPRESSION}"
        )
    if version == 3:
        pos = offset + DIGEST_FIXED_SIZE
        count, pos = _read_varint(view, pos, "count")
        nulls, pos = _read_varint(view, pos, "null_count")
        nans, pos = _read_varint(view, pos, "nan_count")
        pinf, pos = _read_varint(view, pos, "pos_inf_count")
        ninf, pos = _read_varint(view, pos, "neg_inf_count")
        n, start = _read_varint(view, pos, "n_centroids")
    if n > MAX_CENTROIDS:
        raise WireFormatError(f"{n} centroids exceed the limit of {MAX_CENTROIDS}")
    if n > count:
        raise WireFormatError(f"{n} centroids for only {count} values")
    if start + _CENTROID_MIN_BYTES[version] * n > offset + size:
        raise WireFormatError(f"{n} centroids cannot fit in {size} bytes")
    if version == 1:
        if math.isnan(vsum) or math.isnan(vsum_sq):
            raise WireFormatError("sum and sum of squares must not be NaN")
        if vsum_sq < 0:
            raise WireFormatError("sum of squares must not be negative")
    else:
        if not (math.isfinite(vmean) and math.isfinite(vres)):
            raise WireFormatError("mean and mean_residual must be finite")
        if math.isnan(vm2) or vm2 < 0:
            raise WireFormatError("m2 must be a number >= 0")
        if any(_is_negative_zero(v) for v in (vmean, vres, vm2)):
            raise WireFormatError("mean, mean_residual and m2 of -0.0 are not canonical")
        if not 2.0 * abs(vres) <= ulp(vmean):
            raise WireFormatError("mean_residual exceeds half an ulp of mean")
    if count == 0:
        if n != 0:
            raise WireFormatError("an empty digest has no centroids")
        zeros = (("min", vmin), ("max", vmax), ("sum", vsum), ("sum_sq", vsum_sq)) \
            if version == 1 else (("min", vmin), ("max", vmax), ("mean", vmean),
                                  ("mean_residual", vres), ("m2", vm2))
        for name, value in zeros:
            if value != 0.0 or math.copysign(1.0, value) < 0:
                raise WireFormatError(f"an empty digest must have {name} = +0.0")
        empty = TDigest.empty(compression)
        digest = TDigest(compression=compression, means=empty.means, weights=empty.weights,
                         count=0, null_count=nulls, nan_count=nans, pos_inf_count=pinf,
                         neg_inf_count=ninf)
        return digest, start - offset
    if n == 0:
        raise WireFormatError(f"a digest of {count} values needs at least one centroid")
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        raise WireFormatError("min and max must be finite")
    if vmin > vmax:
        raise WireFormatError(f"min {vmin!r} is greater than max {vmax!r}")
    if version == 3:
        means, weights, end = _decode_centroids_v3(view, start, n, vmin, vmax)
    else:
        means = _decode_means_v1_v2(view, start, n, vmin, vmax)
    for name, value in (("min", vmin), ("max", vmax)) + ((("sum", vsum),) if version == 1
                                                          else ()):
        if _is_negative_zero(value):
            raise WireFormatError(f"{name} of -0.0 is not canonical; write +0.0")
    if version != 1 and not vmin <= vmean <= vmax:
        raise WireFormatError("mean must lie within [min, max]")
    if version != 3:
        weight_start = start + 8 * n
        raw = np.frombuffer(view, dtype=np.uint8, offset=weight_start)
        weights, used = _decode_varints(raw[: 10 * n], n, "centroid weights",
                                        lambda _: "centroid weight")
        end = weight_start + used
    if np.any(weights == 0):
        raise WireFormatError("centroid weights must be at least 1")
    approx = float(np.sum(weights, dtype=np.float64))
    total = sum(int(w) for w in weights.tolist()) if approx > 2**62 else int(
        np.sum(weights, dtype=np.uint64))
    if total != count:
        raise WireFormatError(f"centroid weights sum to {total}, but count is {count}")
    if version == 1:
        vmean, vres, vm2 = _moments_from_v1(means, weights, count, vmin, vmax, vsum, vsum_sq)
    digest = TDigest(compression=compression, means=means, weights=weights, count=count,
                     min=vmin, max=vmax, mean=vmean, mean_residual=vres, m2=vm2,
                     null_count=nulls, nan_count=nans, pos_inf_count=pinf,
                     neg_inf_count=ninf)
    return digest, end - offset


def _decode_means_v1_v2(view: memoryview, start: int, n: int, vmin: float,
                        vmax: float) -> np.ndarray:
    """Versions 1 and 2: n doubles, finite, non-decreasing, in [min, max], never -0.0."""
    means = np.frombuffer(view, dtype="<f8", count=n, offset=start).astype(np.float64)
    if not np.all(np.isfinite(means)):
        raise WireFormatError("centroid means must be finite")
    if n > 1 and np.any(means[1:] < means[:-1]):
        raise WireFormatError("centroid means must be sorted in non-decreasing order")
    if means[0] < vmin or means[-1] > vmax:
        raise WireFormatError("centroid means must lie within [min, max]")
    if np.any(np.signbit(means) & (means == 0.0)):
        raise WireFormatError("a centroid mean of -0.0 is not canonical; write +0.0")
    return means


def _decode_centroids_v3(view: memoryview, start: int, n: int, vmin: float,
                         vmax: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Version 3: n mean steps and n weights (2n varints); the means rebuilt as running
    key sums from key(min), never past key(max) and never onto -0.0. Returns the means,
    the weights and the position after the last weight."""
    for name, value in (("min", vmin), ("max", vmax)):
        if _is_negative_zero(value):  # before the keys: key(-0.0) < key(+0.0)
            raise WireFormatError(f"{name} of -0.0 is not canonical; write +0.0")
    raw = np.frombuffer(view, dtype=np.uint8, offset=start)

    def name(i: int) -> str:
        return f"centroid {i} mean step" if i < n else f"centroid {i - n} weight"

    values, used = _decode_varints(raw[: 2 * MAX_VARINT_BYTES * n], 2 * n,
                                   "centroid mean steps and weights", name)
    steps, weights = values[:n], values[n:]
    key_min = _key(vmin)
    budget = np.uint64(_key(vmax) - key_min)  # >= 0: min <= max, neither -0.0
    # Running sums of the steps; a sum past 2^64 wraps, and then it decreases (every step
    # is below 2^64): either way the running key has passed key(max).
    offsets = np.cumsum(steps, dtype=np.uint64)
    past = (offsets > budget) | (offsets < np.concatenate(([np.uint64(0)], offsets[:-1])))
    if np.any(past):
        raise WireFormatError(f"centroid {int(np.argmax(past))} mean step runs past max")
    keys = offsets + np.uint64(key_min)
    negative_zero = keys == np.uint64(_NEGATIVE_ZERO_KEY)
    if np.any(negative_zero):
        raise WireFormatError(f"centroid {int(np.argmax(negative_zero))} mean step lands on "
                              "-0.0, which is not canonical")
    return _doubles_from_keys(keys), weights, start + used


def _moments_from_v1(means: np.ndarray, weights: np.ndarray, count: int, vmin: float,
                     vmax: float, vsum: float, vsum_sq: float) -> tuple[float, float, float]:
    """Version 1 sums to the moments of versions 2 and 3 (docs/wire-format.md, section
    1.4), the same operations as the extension's td_convert_v1."""
    if means.size == count:  # every value is a centroid: the exact moments
        return exact_moments(means, vmin, vmax)
    n = float(count)
    if math.isfinite(vsum):
        mean = min(max(vsum / n, vmin), vmax) + 0.0
    else:
        mean = 0.0
        for m, w in zip(means.tolist(), weights.tolist(), strict=True):
            mean += m * (float(w) / n)
        mean = min(max(mean, vmin), vmax) + 0.0
    if math.isfinite(vsum) and math.isfinite(vsum_sq):
        m2 = vsum_sq - vsum * (vsum / n)
        m2 = m2 if m2 > 0.0 else 0.0
    else:
        m2 = math.inf
    return mean, 0.0, m2


# ---- category count tables --------------------------------------------------------


def encode_category_table(table: CategoryCounts) -> bytes:
    """The canonical wire bytes of a count table (docs/wire-format.md §3.2)."""
    if len(table.categories) > MAX_TABLE_CATEGORIES:
        raise WireFormatError(f"more than {MAX_TABLE_CATEGORIES} categories in one table")
    parts = [CATEGORY_HEADER.pack(CATEGORY_MAGIC, CATEGORY_VERSION, 0, 0, table.missing,
                                  table.other_count, table.other_distinct,
                                  len(table.categories))]
    for name, count in table.categories:
        encoded = name.encode("utf-8")
        if len(encoded) > MAX_CATEGORY_BYTES:
            raise WireFormatError(f"category of {len(encoded)} bytes exceeds "
                                  f"{MAX_CATEGORY_BYTES}")
        parts.append(struct.pack("<H", len(encoded)) + encoded + struct.pack("<Q", count))
    return b"".join(parts)


def decode_category_table(data: bytes | bytearray | memoryview) -> CategoryCounts:
    """Parse and fully validate one count table; the input must hold exactly one."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < CATEGORY_HEADER_SIZE:
        raise WireFormatError(f"category table too short: {size} bytes, the header alone "
                              f"is {CATEGORY_HEADER_SIZE}")
    (magic, version, flags, reserved, missing, other_count, other_distinct,
     n) = CATEGORY_HEADER.unpack_from(view, 0)
    if magic != CATEGORY_MAGIC:
        raise WireFormatError(f"bad category table magic {magic!r}, expected "
                              f"{CATEGORY_MAGIC!r}")
    if version != CATEGORY_VERSION:
        raise WireFormatError(f"unsupported category table version {version}, expected "
                              f"{CATEGORY_VERSION}")
    if flags != 0 or reserved != 0:
        raise WireFormatError("reserved category table fields must be 0")
    if n > MAX_TABLE_CATEGORIES:
        raise WireFormatError(f"{n} categories exceed the limit of {MAX_TABLE_CATEGORIES}")
    if CATEGORY_HEADER_SIZE + CATEGORY_ENTRY_MIN * n > size:
        raise WireFormatError(f"{n} categories cannot fit in {size} bytes")
    if other_distinct > other_count or (other_count == 0) != (other_distinct == 0):
        raise WireFormatError("other_distinct must be 0 exactly when other_count is, and "
                              "at most other_count")
    offset = CATEGORY_HEADER_SIZE
    categories = []
    previous: tuple[int, bytes] | None = None
    total = missing + other_count
    for index in range(n):
        if offset + 2 > size:
            raise WireFormatError(f"category table truncated at category {index}")
        (length,) = struct.unpack_from("<H", view, offset)
        offset += 2
        if length > MAX_CATEGORY_BYTES:
            raise WireFormatError(f"category {index}: {length} bytes exceed "
                                  f"{MAX_CATEGORY_BYTES}")
        if offset + length + 8 > size:
            raise WireFormatError(f"category table truncated at category {index}")
        raw = bytes(view[offset:offset + length])
        (count,) = struct.unpack_from("<Q", view, offset + length)
        offset += length + 8
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError(f"category {index} is not UTF-8") from None
        if "\x00" in name:
            raise WireFormatError(f"category {index} contains NUL")
        if count < 1:
            raise WireFormatError(f"category {index} has count 0")
        key = (-count, raw)
        if previous is not None and key <= previous:
            raise WireFormatError(f"category {index} is out of order: categories go by "
                                  "count, most frequent first, ties by their bytes")
        previous = key
        total += count
        categories.append((name, count))
    if offset != size:
        raise WireFormatError(f"{size - offset} trailing bytes after the category table")
    if total > _U64_MAX:
        raise WireFormatError("category table counts sum beyond 2^64-1")
    return CategoryCounts(tuple(categories), other_count, other_distinct, missing)


# ---- envelopes --------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDigests:
    """The current window's digest of one numeric column and the baseline it is compared
    with."""

    current: TDigest
    baseline: TDigest


@dataclass(frozen=True)
class ColumnCategories:
    """The current window's count table of one categorical column and the baseline's.

    The current table counts every category the baseline table names (absent: 0)."""

    current: CategoryCounts
    baseline: CategoryCounts


Column = ColumnDigests | ColumnCategories


@dataclass(frozen=True)
class Envelope:
    """One analysis request: metadata and, per column, two digests or two count tables."""

    metadata: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Column] = field(default_factory=dict)


def envelope_version(envelope: Envelope) -> int:
    """The version a writer writes: 2 when a column is categorical, else 1."""
    if any(isinstance(pair, ColumnCategories) for pair in envelope.columns.values()):
        return ENVELOPE_VERSION
    return NUMERIC_ENVELOPE_VERSION


def encode_envelope(envelope: Envelope) -> bytes:
    """Canonical envelope bytes: compact sorted-key metadata, columns in order."""
    meta = json.dumps(envelope.metadata, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()
    if len(meta) > MAX_METADATA_BYTES:
        raise WireFormatError(f"metadata of {len(meta)} bytes exceeds {MAX_METADATA_BYTES}")
    if len(envelope.columns) * 2 > MAX_ENTRIES:
        raise WireFormatError(f"more than {MAX_ENTRIES // 2} columns")
    version = envelope_version(envelope)
    parts = [ENVELOPE_HEADER.pack(ENVELOPE_MAGIC, version, 0, 0, len(meta)), meta,
             struct.pack("<I", 2 * len(envelope.columns))]
    for name, pair in envelope.columns.items():
        encoded_name = _check_name(name)
        if isinstance(pair, ColumnCategories):
            kind = KIND_CATEGORICAL
            bodies = (encode_category_table(pair.current), encode_category_table(pair.baseline))
        else:
            kind = KIND_NUMERIC
            bodies = (encode_digest(pair.current), encode_digest(pair.baseline))
        for role, body in zip((ROLE_CURRENT, ROLE_BASELINE), bodies, strict=True):
            parts.append(struct.pack("<H", len(encoded_name)))
            parts.append(encoded_name)
            parts.append(struct.pack("<B", role))
            if version == ENVELOPE_VERSION:
                parts.append(struct.pack("<B", kind))
            parts.append(struct.pack("<I", len(body)))
            parts.append(body)
    return b"".join(parts)


def _check_name(name: str) -> bytes:
    encoded = name.encode("utf-8")
    if not 1 <= len(encoded) <= MAX_NAME_BYTES:
        raise WireFormatError(f"column name must be 1..{MAX_NAME_BYTES} bytes")
    if b"\x00" in encoded:
        raise WireFormatError("column name must not contain NUL")
    return encoded


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse and fully validate a request envelope (version 1 or 2)."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < ENVELOPE_HEADER.size:
        raise WireFormatError(f"envelope too short: {size} bytes")
    magic, version, flags, reserved, meta_len = ENVELOPE_HEADER.unpack_from(view, 0)
    if magic != ENVELOPE_MAGIC:
        raise WireFormatError(f"bad envelope magic {magic!r}, expected {ENVELOPE_MAGIC!r}")
    if version not in (NUMERIC_ENVELOPE_VERSION, ENVELOPE_VERSION):
        raise WireFormatError(f"unsupported envelope version {version}, expected "
                              f"{NUMERIC_ENVELOPE_VERSION} or {ENVELOPE_VERSION}")
    if flags != 0 or reserved != 0:
        raise WireFormatError("reserved envelope fields must be 0")
    if meta_len > MAX_METADATA_BYTES:
        raise WireFormatError(f"metadata of {meta_len} bytes exceeds {MAX_METADATA_BYTES}")
    offset = ENVELOPE_HEADER.size
    if offset + meta_len + 4 > size:
        raise WireFormatError("envelope truncated inside the metadata")
    try:
        metadata = json.loads(bytes(view[offset:offset + meta_len]).decode("utf-8"),
                              parse_constant=_reject_constant, parse_float=_finite_float)
    except WireFormatError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireFormatError(f"metadata is not UTF-8 JSON: {exc}") from None
    except ValueError as exc:  # an integer past sys.get_int_max_str_digits()
        raise WireFormatError(f"metadata holds an unreadable number: {exc}") from None
    if not isinstance(metadata, dict):
        raise WireFormatError("metadata must be a JSON object")
    offset += meta_len
    (n_entries,) = struct.unpack_from("<I", view, offset)
    offset += 4
    if n_entries > MAX_ENTRIES:
        raise WireFormatError(f"{n_entries} entries exceed the limit of {MAX_ENTRIES}")
    # The fixed part of an entry after its name: role, (kind,) body length.
    fixed = 5 if version == NUMERIC_ENVELOPE_VERSION else 6
    found: dict[str, dict[int, tuple[int, Any]]] = {}
    for index in range(n_entries):
        if offset + 2 > size:
            raise WireFormatError(f"envelope truncated at entry {index}")
        (name_len,) = struct.unpack_from("<H", view, offset)
        offset += 2
        if not 1 <= name_len <= MAX_NAME_BYTES:
            raise WireFormatError(f"entry {index}: column name length {name_len} out of range")
        if offset + name_len + fixed > size:
            raise WireFormatError(f"envelope truncated at entry {index}")
        raw_name = bytes(view[offset:offset + name_len])
        offset += name_len
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError(f"entry {index}: column name is not UTF-8") from None
        if "\x00" in name:
            raise WireFormatError(f"entry {index}: column name contains NUL")
        role = view[offset]
        kind = KIND_NUMERIC if version == NUMERIC_ENVELOPE_VERSION else view[offset + 1]
        (body_len,) = struct.unpack_from("<I", view, offset + fixed - 4)
        offset += fixed
        if role not in _ROLE_NAMES:
            raise WireFormatError(f"entry {index}: unknown role {role}")
        if kind not in _KIND_NAMES:
            raise WireFormatError(f"entry {index}: unknown kind {kind}")
        smallest = DIGEST_MIN_SIZE if kind == KIND_NUMERIC else CATEGORY_HEADER_SIZE
        if body_len < smallest or offset + body_len > size:
            what = "digest" if kind == KIND_NUMERIC else "category table"
            raise WireFormatError(f"entry {index}: {what} length {body_len} out of range")
        body = view[offset:offset + body_len]
        try:
            value = decode_digest(body) if kind == KIND_NUMERIC else decode_category_table(body)
        except WireFormatError as exc:
            raise WireFormatError(f"entry {index} ({name!r}, {_ROLE_NAMES[role]}): {exc}") \
                from None
        offset += body_len
        roles = found.setdefault(name, {})
        if role in roles:
            raise WireFormatError(f"column {name!r} has two {_ROLE_NAMES[role]} entries")
        if roles and next(iter(roles.values()))[0] != kind:
            raise WireFormatError(f"column {name!r} has a numeric and a categorical entry")
        roles[role] = (kind, value)
    if offset != size:
        raise WireFormatError(f"{size - offset} trailing bytes after the last entry")
    columns: dict[str, Column] = {}
    for name, roles in found.items():
        if len(roles) != 2:
            missing = _ROLE_NAMES[ROLE_BASELINE if ROLE_CURRENT in roles else ROLE_CURRENT]
            what = "digest" if next(iter(roles.values()))[0] == KIND_NUMERIC else "table"
            raise WireFormatError(f"column {name!r} has no {missing} {what}")
        (kind, current), (_, baseline) = roles[ROLE_CURRENT], roles[ROLE_BASELINE]
        columns[name] = (ColumnDigests(current=current, baseline=baseline)
                         if kind == KIND_NUMERIC
                         else ColumnCategories(current=current, baseline=baseline))
    return Envelope(metadata=metadata, columns=columns)


def _reject_constant(name: str) -> None:
    raise WireFormatError(f"metadata must not contain {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireFormatError(f"metadata number {text[:40]} overflows a double")
    return value
