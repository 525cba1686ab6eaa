"""The wire format (docs/wire-format.md): digests (``PSGD``) and request envelopes (``PSGE``).

Writing is canonical and writes digest version 2: one digest, one byte string. Reading is
strict and reads digest versions 1 and 2 (a version 1 digest becomes a version 2 one, as
the extension converts it): every malformed input raises :class:`WireFormatError` with a
message that says what is wrong, and no length field can make the reader allocate more
than the input itself justifies.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
ENVELOPE_VERSION = 1
VERSION = ENVELOPE_VERSION
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
_U64_MAX = 2**64 - 1

assert DIGEST_HEADER_SIZE == 92 and DIGEST_HEADER_V1_SIZE == 84


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


# ---- envelopes --------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDigests:
    """The current window's digest of one column and the baseline it is compared with."""

    current: TDigest
    baseline: TDigest


@dataclass(frozen=True)
class Envelope:
    """One analysis request: metadata and, per column, two digests."""

    metadata: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, ColumnDigests] = field(default_factory=dict)


def encode_envelope(envelope: Envelope) -> bytes:
    """Canonical envelope bytes: compact sorted-key metadata, columns in order."""
    meta = json.dumps(envelope.metadata, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()
    if len(meta) > MAX_METADATA_BYTES:
        raise WireFormatError(f"metadata of {len(meta)} bytes exceeds {MAX_METADATA_BYTES}")
    if len(envelope.columns) * 2 > MAX_ENTRIES:
        raise WireFormatError(f"more than {MAX_ENTRIES // 2} columns")
    parts = [ENVELOPE_HEADER.pack(ENVELOPE_MAGIC, ENVELOPE_VERSION, 0, 0, len(meta)), meta,
             struct.pack("<I", 2 * len(envelope.columns))]
    for name, pair in envelope.columns.items():
        encoded_name = _check_name(name)
        for role, digest in ((ROLE_CURRENT, pair.current), (ROLE_BASELINE, pair.baseline)):
            body = encode_digest(digest)
            parts.append(struct.pack("<H", len(encoded_name)))
            parts.append(encoded_name)
            parts.append(struct.pack("<BI", role, len(body)))
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
    """Parse and fully validate a request envelope."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < ENVELOPE_HEADER.size:
        raise WireFormatError(f"envelope too short: {size} bytes")
    magic, version, flags, reserved, meta_len = ENVELOPE_HEADER.unpack_from(view, 0)
    if magic != ENVELOPE_MAGIC:
        raise WireFormatError(f"bad envelope magic {magic!r}, expected {ENVELOPE_MAGIC!r}")
    if version != ENVELOPE_VERSION:
        raise WireFormatError(
            f"unsupported envelope version {version}, expected {ENVELOPE_VERSION}")
    if flags != 0 or reserved != 0:
        raise WireFormatError("reserved envelope fields must be 0")
    if meta_len > MAX_METADATA_BYTES:
        raise WireFormatError(f"metadata of {meta_len} bytes exceeds {MAX_METADATA_BYTES}")
    offset = ENVELOPE_HEADER.size
    if offset + meta_len + 4 > size:
        raise WireFormatError("envelope truncated inside the metadata")
    try:
        metadata = json.loads(bytes(view[offset:offset + meta_len]).decode("utf-8"),
                              parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WireFormatError(f"metadata is not UTF-8 JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise WireFormatError("metadata must be a JSON object")
    offset += meta_len
    (n_entries,) = struct.unpack_from("<I", view, offset)
    offset += 4
    if n_entries > MAX_ENTRIES:
        raise WireFormatError(f"{n_entries} entries exceed the limit of {MAX_ENTRIES}")
    found: dict[str, dict[int, TDigest]] = {}
    for index in range(n_entries):
        if offset + 2 > size:
            raise WireFormatError(f"envelope truncated at entry {index}")
        (name_len,) = struct.unpack_from("<H", view, offset)
        offset += 2
        if not 1 <= name_len <= MAX_NAME_BYTES:
            raise WireFormatError(f"entry {index}: column name length {name_len} out of range")
        if offset + name_len + 5 > size:
            raise WireFormatError(f"envelope truncated at entry {index}")
        raw_name = bytes(view[offset:offset + name_len])
        offset += name_len
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError(f"entry {index}: column name is not UTF-8") from None
        if "\x00" in name:
            raise WireFormatError(f"entry {index}: column name contains NUL")
        role, digest_len = struct.unpack_from("<BI", view, offset)
        offset += 5
        if role not in _ROLE_NAMES:
            raise WireFormatError(f"entry {index}: unknown role {role}")
        if digest_len < DIGEST_HEADER_V1_SIZE or offset + digest_len > size:
            raise WireFormatError(f"entry {index}: digest length {digest_len} out of range")
        try:
            digest = decode_digest(view[offset:offset + digest_len])
        except WireFormatError as exc:
            raise WireFormatError(f"entry {index} ({name!r}, {_ROLE_NAMES[role]}): {exc}") \
                from None
        offset += digest_len
        roles = found.setdefault(name, {})
        if role in roles:
            raise WireFormatError(f"column {name!r} has two {_ROLE_NAMES[role]} digests")
        roles[role] = digest
    if offset != size:
        raise WireFormatError(f"{size - offset} trailing bytes after the last entry")
    columns = {}
    for name, roles in found.items():
        if len(roles) != 2:
            missing = _ROLE_NAMES[ROLE_BASELINE if ROLE_CURRENT in roles else ROLE_CURRENT]
            raise WireFormatError(f"column {name!r} has no {missing} digest")
        columns[name] = ColumnDigests(current=roles[ROLE_CURRENT], baseline=roles[ROLE_BASELINE])
    return Envelope(metadata=metadata, columns=columns)


def _reject_constant(name: str) -> None:
    raise WireFormatError(f"metadata must not contain {name}")
