"""Write the golden vectors of the wire format (docs/wire-format.md, section 6).

Run once when the format changes: ``python -m tests.golden.generate``. Version 2 files are
written to ``pg_extension/test/golden/``, beside the extension that reads them in its
pg_regress suite; the Python tests check that the current writer still reproduces every
committed file byte for byte. The version 1 files in ``golden/v1/`` were written by the
version 1 writer and are kept as they are: this script only describes them (what they
read as, and the version 2 bytes a writer gives back for them).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from stat_guard.tdigest import TDigest
from stat_guard.wire import (
    ColumnDigests,
    Envelope,
    decode_digest,
    decode_envelope,
    encode_digest,
    encode_envelope,
)

OUT_DIR = Path(__file__).resolve().parents[2] / "pg_extension" / "test" / "golden"
V1_DIR = OUT_DIR / "v1"
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
        # past the exactly-kept range (50·δ values): a compressed digest
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
        ("unsupported version", patch(4, "<B", 3)),
        ("version 0", patch(4, "<B", 0)),
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
    empty_bytes = encode_digest(empty) if version == 2 else _v1_empty()
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
        huge_varint = encode_digest(TDigest.from_values([1.0]))[:-1] + b"\xff" * 9 + b"\x02"
        cases.append(("varint over 64 bits", huge_varint))
    out = []
    for reason, data in cases:
        try:
            decode_digest(data)
        except ValueError:
            out.append({"reason": f"v{version}: {reason}", "hex": data.hex()})
            continue
        raise AssertionError(f"malformed case {reason!r} was accepted")
    return out


def _v1_empty() -> bytes:
    """The version 1 empty digest (compression 100)."""
    return struct.pack("<4sBBHQQQQQddddI", b"PSGD", 1, 0, 100, 0, 0, 0, 0, 0,
                       0.0, 0.0, 0.0, 0.0, 0)


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


def main() -> None:
    digests = golden_digests()
    manifest: dict = {"format": "pg_stat_guard wire format: digests version 2 (written), "
                                "version 1 (read, in v1/)", "digests": {}}
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
    # Version 1 files, as the version 1 writer wrote them: what they read as.
    manifest["v1_digests"] = {}
    for path in sorted(V1_DIR.glob("*.psgd")):
        data = path.read_bytes()
        digest = decode_digest(data)
        manifest["v1_digests"][path.stem] = {
            "file": f"v1/{path.name}", "size": len(data), "hex": data.hex(),
            "reads_as_hex": encode_digest(digest).hex()} | describe(digest)
    v1_envelope = (V1_DIR / "envelope.psge").read_bytes()
    manifest["v1_envelope"] = {"file": "v1/envelope.psge", "size": len(v1_envelope),
                               "reads_as": "envelope.psge",
                               "columns": ENVELOPE_COLUMNS}
    assert encode_envelope(decode_envelope(v1_envelope)) == envelope_bytes
    manifest["malformed_digests"] = (
        malformed(encode_digest(digests["normal_20000"]))
        + malformed((V1_DIR / "normal_20000.psgd").read_bytes()))
    (OUT_DIR / "golden.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
