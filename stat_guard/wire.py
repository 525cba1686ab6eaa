"""The wire format (docs/wire-format.md): digests (``PSGD``), category count tables
(``PSGC``) and request envelopes (``PSGE``).

Writing is canonical and writes digest version 2, and envelope version 1 when every column
is numeric, version 2 when one is categorical: one value, one byte string. Reading is
strict and reads digest versions 1 and 2 (a version 1 digest becomes a version 2 one, as
the extension converts it) and envelope versions 1 and 2: every malformed input raises
:class:`WireFormatError` with a message that says what is wrong, and no length field can
make the reader allocate more than the input itself justifies.
"""

from __future__ import annotations

import json
import math
import struct
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
DIGEST_VERSION = 2  # written; versions 1 and 2 are read
ENVELOPE_VERSION = 2  # written when a column is categorical; version 1 when none is
NUMERIC_ENVELOPE_VERSION = 1
DIGEST_HEADER = struct.Struct("<4sBBHQQQQQdddddI")
DIGEST_HEADER_SIZE = DIGEST_HEADER.size  # 92
DIGEST_HEADER_V1 = struct.Struct("<4sBBHQQQQQddddI")
DIGEST_HEADER_V1_SIZE = DIGEST_HEADER_V1.size  # 84
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

assert DIGEST_HEADER_SIZE == 92 and DIGEST_HEADER_V1_SIZE == 84 and CATEGORY_HEADER_SIZE == 36


class WireFormatError(ValueError):
    """Raised for any input that is not valid wire format."""


# ---- varints ----------------------------------------------------------------------


def encode_varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of every value, minimal length."""
    out = bytearray()
    for value in values.tolist():
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _decode_varints(buf: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """Decode ``count`` varints from the start of ``buf``; return them and bytes used."""
    if count == 0:
        return np.empty(0, dtype=np.uint64), 0
    ends = np.flatnonzero((buf & 0x80) == 0)
    if ends.size < count:
        raise WireFormatError(f"truncated centroid weights: {count} expected, {ends.size} found")
    ends = ends[:count]
    used = int(ends[-1]) + 1
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if int(lengths.max()) > 10:
        raise WireFormatError("centroid weight varint longer than 10 bytes")
    if np.any((lengths > 1) & (buf[ends] == 0)):
        raise WireFormatError("centroid weight varint is not minimally encoded")
    if np.any((lengths == 10) & (buf[ends] > 1)):
        raise WireFormatError("centroid weight varint exceeds 64 bits")
    body = buf[:used]
    group = np.repeat(np.arange(count), lengths)
    position = np.arange(used) - np.repeat(starts, lengths)
    parts = (body & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    values = np.bitwise_or.reduceat(parts, starts) if count else parts
    del group
    return values.astype(np.uint64), used


# ---- digests ----------------------------------------------------------------------


def encode_digest(digest: TDigest) -> bytes:
    """The canonical wire bytes of a digest."""
    empty = digest.count == 0
    header = DIGEST_HEADER.pack(
        DIGEST_MAGIC,
        DIGEST_VERSION,
        0,
        digest.compression,
        digest.count,
        digest.null_count,
        digest.nan_count,
        digest.pos_inf_count,
        digest.neg_inf_count,
        0.0 if empty else digest.min + 0.0,
        0.0 if empty else digest.max + 0.0,
        0.0 if empty else digest.mean + 0.0,
        0.0 if empty else digest.mean_residual + 0.0,
        0.0 if empty else digest.m2 + 0.0,
        digest.means.size,
    )
    means = (np.ascontiguousarray(digest.means, dtype="<f8") + 0.0).tobytes()
    return header + means + encode_varints(np.asarray(digest.weights, dtype=np.uint64))


def decode_digest(data: bytes | bytearray | memoryview) -> TDigest:
    """Parse and fully validate one digest; the input must hold exactly one."""
    digest, used = _decode_digest_prefix(memoryview(data).cast("B"), 0)
    if used != len(data):
        raise WireFormatError(f"{len(data) - used} trailing bytes after the digest")
    return digest


def _is_negative_zero(value: float) -> bool:
    return value == 0.0 and math.copysign(1.0, value) < 0


def _decode_digest_prefix(view: memoryview, offset: int) -> tuple[TDigest, int]:
    size = len(view) - offset
    if size < DIGEST_HEADER_V1_SIZE:
        raise WireFormatError(
            f"digest too short: {size} bytes, the header alone is {DIGEST_HEADER_V1_SIZE}"
        )
    magic = bytes(view[offset:offset + 4])
    if magic != DIGEST_MAGIC:
        raise WireFormatError(f"bad digest magic {magic!r}, expected {DIGEST_MAGIC!r}")
    version = view[offset + 4]
    if version == 1:
        header = DIGEST_HEADER_V1
        (_, _, flags, compression, count, nulls, nans, pinf, ninf,
         vmin, vmax, vsum, vsum_sq, n) = header.unpack_from(view, offset)
        vmean = vres = vm2 = 0.0
    elif version == 2:
        header = DIGEST_HEADER
        if size < header.size:
            raise WireFormatError(f"digest too short: {size} bytes, the header is {header.size}")
        (_, _, flags, compression, count, nulls, nans, pinf, ninf,
         vmin, vmax, vmean, vres, vm2, n) = header.unpack_from(view, offset)
        vsum = vsum_sq = 0.0
    else:
        raise WireFormatError(f"unsupported digest version {version}, expected 1 or 2")
    if flags != 0:
        raise WireFormatError(f"reserved digest flags must be 0, got {flags}")
    if not MIN_COMPRESSION <= compression <= MAX_COMPRESSION:
        raise WireFormatError(
            f"compression {compression} outside {MIN_COMPRESSION}..{MAX_COMPRESSION}"
        )
    if n > MAX_CENTROIDS:
        raise WireFormatError(f"{n} centroids exceed the limit of {MAX_CENTROIDS}")
    if n > count:
        raise WireFormatError(f"{n} centroids for only {count} values")
    if header.size + 9 * n > size:
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
    start = offset + header.size
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
    means = np.frombuffer(view, dtype="<f8", count=n, offset=start).astype(np.float64)
    if not np.all(np.isfinite(means)):
        raise WireFormatError("centroid means must be finite")
    if n > 1 and np.any(means[1:] < means[:-1]):
        raise WireFormatError("centroid means must be sorted in non-decreasing order")
    if means[0] < vmin or means[-1] > vmax:
        raise WireFormatError("centroid means must lie within [min, max]")
    if np.any(np.signbit(means) & (means == 0.0)):
        raise WireFormatError("a centroid mean of -0.0 is not canonical; write +0.0")
    for name, value in (("min", vmin), ("max", vmax)) + ((("sum", vsum),) if version == 1
                                                          else ()):
        if _is_negative_zero(value):
            raise WireFormatError(f"{name} of -0.0 is not canonical; write +0.0")
    if version == 2 and not vmin <= vmean <= vmax:
        raise WireFormatError("mean must lie within [min, max]")
    weight_start = start + 8 * n
    raw = np.frombuffer(view, dtype=np.uint8, offset=weight_start)
    weights, used = _decode_varints(raw[: 10 * n], n)
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
    return digest, weight_start + used - offset


def _moments_from_v1(means: np.ndarray, weights: np.ndarray, count: int, vmin: float,
                     vmax: float, vsum: float, vsum_sq: float) -> tuple[float, float, float]:
    """Version 1 sums to version 2 moments (docs/wire-format.md, section 1.3), the same
    operations as the extension's td_convert_v1."""
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
        smallest = DIGEST_HEADER_V1_SIZE if kind == KIND_NUMERIC else CATEGORY_HEADER_SIZE
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
