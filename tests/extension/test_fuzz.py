"""Random and mutated digests never crash the server: each is accepted or an ERROR.

Inputs come from valid digests (golden files of versions 1, 2 and 3, and aggregates)
mutated the ways real corruption and hostile input look: bit flips, truncations,
length-field edits, NaN/Inf/-0 injected into doubles, unsorted means, mean steps past max
or onto -0.0, huge centroid counts, non-minimal varints, trailing bytes, spliced headers,
garbage.  They go through the bytea cast in server-side batches,
through the real binary ``recv`` (psycopg binary parameters), and through text input.
Where the Python reader (``stat_guard.wire``) is importable it is the oracle: both readers
must accept and reject the same inputs.  Afterwards the postmaster must not have restarted
and the server log must show no crashed backend.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import struct
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import GOLDEN_DIR
from tests.extension.conftest import DigestBytes

try:
    from stat_guard.wire import decode_digest as python_decode
    from stat_guard.wire import encode_digest as python_encode
except ImportError:  # the oracle is optional; the crash checks are not
    python_decode = python_encode = None

SERVER_LOG = Path(os.environ.get("PSG_SERVER_LOG", "/var/log/postgresql/postgresql-15-main.log"))
CRASH_MARKERS = ("terminated by signal", "server process", "was terminated", "PANIC")
BATCH = 2000
N_CAST = 100_000
N_RECV = 20_000
N_TEXT = 30_000
SPECIAL_DOUBLES = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324,
                   -5e-324, 1.7976931348623157e308]
TEXT_TOKENS = ["NaN", "\"NaN\"", "1e999", "-1e999", "-0", "1e-400", "18446744073709551616",
               "18446744073709551615", "-1", "[", "]", ",", "\"", "{", "}", "Infinity",
               "\"Infinity\"", "0x10", "00", "1.", ".5", "1e", "\\u0000", " ", "\"min\": 1, ",
               "[[1, 1]]", "[]", "65537", "4294967295"]

_TRY = """
CREATE OR REPLACE FUNCTION pg_temp.psg_try_{name}(inputs {kind}[])
RETURNS TABLE (idx int, state text, canonical {kind}) LANGUAGE plpgsql AS $$
DECLARE
  d tdigest;
BEGIN
  FOR k IN 1 .. coalesce(array_length(inputs, 1), 0) LOOP
    idx := k;
    BEGIN
      d := inputs[k]::tdigest;
      state := 'ok';
      canonical := d::{kind};
    EXCEPTION WHEN others THEN
      state := SQLSTATE;
      canonical := NULL;
    END;
    RETURN NEXT;
  END LOOP;
END $$;
"""
# psg_try_digests(bytea[]) and psg_try_texts(text[]): each input cast to tdigest in its
# own exception block, so one statement tries a whole batch.
TRY_DIGESTS = _TRY.format(name="digests", kind="bytea") + _TRY.format(name="texts", kind="text")


# ---- valid seeds and mutations --------------------------------------------------------


def _seed_digests(pg: psycopg.Connection) -> list[bytes]:
    """Version 3 digests (golden files, aggregates) and the version 1 and 2 golden files."""
    seeds = [p.read_bytes() for p in sorted(GOLDEN_DIR.glob("*.psgd"))]
    for version in ("v1", "v2"):
        seeds += [p.read_bytes() for p in sorted((GOLDEN_DIR / version).glob("*.psgd"))]
    cur = pg.cursor(binary=True)
    for sql in [
        "SELECT tdigest_agg(x) FROM generate_series(1, 5) x",
        "SELECT tdigest_agg(sin(x) * 1e3) FROM generate_series(1, 100000) x",
        "SELECT tdigest_agg(exp(x % 50), 10) FROM generate_series(1, 20000) x",
        "SELECT tdigest_agg(x * 1e300, 10000) FROM generate_series(-3000, 3000) x",
        "SELECT tdigest_agg(CASE WHEN x % 3 = 0 THEN NULL ELSE x % 7 END) "
        "FROM generate_series(1, 1000) x",
        "SELECT tdigest_agg(NULL::float8) FROM generate_series(1, 3)",
        "SELECT tdigest_agg(x * 5e-324) FROM generate_series(1, 300) x",
    ]:
        cur.execute(sql)
        seeds.append(bytes(cur.fetchone()[0]))
    return seeds


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def _spans(buf: bytes, pos: int, count: int) -> list[tuple[int, int]]:
    """(start, end) of count varints from pos (IndexError when the input ends first)."""
    spans = []
    for _ in range(count):
        _, end = _read_varint(buf, pos)
        spans.append((pos, end))
        pos = end
    return spans


def _header(data: bytes | bytearray) -> int:
    """Where the centroids start: 84 for version 1, 92 for version 2, after the six
    header varints for version 3 (48 when they cannot be read)."""
    if data[4] == 1:
        return 84
    if data[4] != 3:
        return 92
    try:
        return _spans(data, 48, 6)[-1][1]
    except IndexError:
        return 48


def _key(value: float) -> int:
    (bits,) = struct.unpack("<Q", struct.pack("<d", value))
    return (bits ^ (2**64 - 1)) if bits >> 63 else bits | 2**63


@functools.cache  # the seeds are few and fixed
def _seed_header(seed: bytes) -> int:
    return _header(seed)


@functools.cache  # the seeds are few and fixed; callers only read the spans
def _layout(seed: bytes) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """Centroid count, (start, end) of every weight varint and of every other varint
    (version 3: the header counts and the mean steps) of a valid digest."""
    if seed[4] == 3:
        header = _spans(seed, 48, 6)
        n = _read_varint(seed, header[5][0])[0]
        if n > 65536:
            raise IndexError("too many centroids")
        steps = _spans(seed, header[-1][1], n)
        weights = _spans(seed, steps[-1][1] if steps else header[-1][1], n)
        return n, weights, header + steps
    header = _header(seed)
    n = struct.unpack_from("<I", seed, header - 4)[0]
    return n, _spans(seed, header + 8 * n, n), []


def _set_varint(data: bytearray, span: tuple[int, int], value: int) -> None:
    """Replace the varint at span by the minimal varint of value (mod 2^64)."""
    value %= 2**64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    data[span[0]:span[1]] = out


def _mutate_v3(rng: random.Random, data: bytearray, kind: int, n: int,
               weights: list[tuple[int, int]], others: list[tuple[int, int]]) -> bool:
    """The version 3 forms of the field edits (kinds 3 to 8); False for other kinds.
    Spans are edited from the last one back, so earlier offsets stay valid."""
    header, steps = others[:6], others[6:]
    if kind == 3:  # centroid-count varint
        _set_varint(data, header[5], rng.choice([0, 1, n - 1, n + 1, 2 * n, 65536, 65537,
                                                 2**32, 2**64 - 1, rng.randrange(2**64)]))
    elif kind == 4:  # one of the count varints
        span = header[rng.randrange(5)]
        old = _read_varint(data, span[0])[0]
        _set_varint(data, span, rng.choice([0, 1, 2**63, 2**64 - 1, rng.randrange(2**64),
                                            old + rng.choice([-1, 1])]))
    elif kind == 5 and n:  # a mean step: to a special double, past max, onto -0.0
        i = rng.randrange(n)
        previous = _key(struct.unpack_from("<d", data, 8)[0]) + sum(
            _read_varint(data, s[0])[0] for s in steps[:i])
        old = _read_varint(data, steps[i][0])[0]
        target = rng.choice([*SPECIAL_DOUBLES, struct.unpack_from("<d", data, 16)[0]])
        _set_varint(data, steps[i], rng.choice([
            _key(target) - previous, _key(target) - previous + 1, old + 1, 0, 2**63,
            2**64 - 1, _key(-0.0) - previous]))
    elif kind == 6:  # special or nudged double in min / max / mean, residual, m2
        offset = rng.choice([8, 16, 24, 32, 40])
        old = struct.unpack_from("<d", data, offset)[0]
        nudged = [old * (1 + 1e-16), old + 1e-300, old * 2.0, -old, old + 3e-16 * abs(old)]
        struct.pack_into("<d", data, offset, rng.choice(SPECIAL_DOUBLES + nudged))
    elif kind == 7 and n >= 2:  # two mean steps swapped
        i, j = sorted(rng.sample(range(n), 2))
        a, b = bytes(data[slice(*steps[i])]), bytes(data[slice(*steps[j])])
        data[slice(*steps[j])] = a
        data[slice(*steps[i])] = b
    elif kind == 8:  # non-minimal varint, anywhere
        start, end = rng.choice(header + steps + weights)
        data[start:end] = bytes(data[start:end - 1]) + bytes([data[end - 1] | 0x80, 0x00])
    else:
        return False
    return True


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    seed = rng.choice(seeds)
    data = bytearray(seed)
    n, spans, others = _layout(seed)
    header = _seed_header(seed)
    kind = rng.randrange(15)
    if seed[4] == 3 and 3 <= kind <= 8 and _mutate_v3(rng, data, kind, n, spans, others):
        pass
    elif kind == 0:  # bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del data[rng.randrange(len(data)):]
    elif kind == 2:  # trailing bytes
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 3:  # centroid-count field
        value = rng.choice([0, 1, n - 1, n + 1, 2 * n, 65536, 65537, 2**31, 2**32 - 1,
                            rng.randrange(2**32)])
        struct.pack_into("<I", data, header - 4, value % 2**32)
    elif kind == 4:  # one of the u64 counters
        off = rng.choice([8, 16, 24, 32, 40])
        value = rng.choice([0, 1, 2**63, 2**64 - 1, rng.randrange(2**64),
                            struct.unpack_from("<Q", data, off)[0] + rng.choice([-1, 1])])
        struct.pack_into("<Q", data, off, value % 2**64)
    elif kind == 5 and n:  # special double in a mean
        struct.pack_into("<d", data, header + 8 * rng.randrange(n), rng.choice(SPECIAL_DOUBLES))
    elif kind == 6:  # special or nudged double in min / max / sum, sum_sq or mean, residual, m2
        offset = rng.choice([48, 56, 64, 72] + ([80] if header == 92 else []))
        old = struct.unpack_from("<d", data, offset)[0]
        nudged = [old * (1 + 1e-16), old + 1e-300, old * 2.0, -old, old + 3e-16 * abs(old)]
        struct.pack_into("<d", data, offset, rng.choice(SPECIAL_DOUBLES + nudged))
    elif kind == 7 and n >= 2:  # unsorted means
        i, j = sorted(rng.sample(range(n), 2))
        a, b = data[header + 8 * i:header + 8 + 8 * i], data[header + 8 * j:header + 8 + 8 * j]
        data[header + 8 * i:header + 8 + 8 * i], data[header + 8 * j:header + 8 + 8 * j] = b, a
    elif kind == 8 and n:  # non-minimal varint
        start, end = rng.choice(spans)
        padded = bytes(data[start:end - 1]) + bytes([data[end - 1] | 0x80, 0x00])
        data[start:end] = padded
    elif kind == 9:  # compression
        struct.pack_into("<H", data, 6, rng.choice([0, 9, 10, 10000, 10001, 65535,
                                                    rng.randrange(65536)]))
    elif kind == 10:  # garbage behind a valid-looking prefix
        data = bytearray(data[:rng.randint(4, header)]) + bytes(
            rng.randrange(256) for _ in range(rng.randint(0, 200)))
    elif kind == 11:  # splice header of one digest onto the body of another
        other = rng.choice(seeds)
        data = bytearray(data[:header]) + bytearray(other[_seed_header(other):])
    elif kind == 14:  # another version's layout read over the same bytes
        data[4] = rng.choice([1, 2, 3, 0, 4, 255])
    elif kind == 12 and n:  # weight edits: zero, huge, one more byte
        start, end = rng.choice(spans)
        data[start:end] = rng.choice([b"\x00", b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01",
                                      b"\x80" * 10, b"\x02"])
    else:  # random bytes, sometimes with the magic
        prefix = rng.choice([b"PSGD\x01\x00", b"PSGD\x02\x00", b"PSGD\x03\x00", b""])
        data = bytearray(prefix + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))))
    if rng.random() < 0.2:  # stack a second mutation
        return _mutate(rng, [bytes(data)]) if len(data) >= 54 and _parses(bytes(data)) \
            else bytes(data)
    return bytes(data)


def _parses(data: bytes) -> bool:
    try:
        _layout(data)
        return True
    except (IndexError, struct.error):
        return False


def _python_accepts(data: bytes) -> bool | None:
    if python_decode is None:
        return None
    try:
        python_decode(data)
        return True
    except Exception:  # any rejection: WireFormatError and friends
        return False


def _mutate_text(rng: random.Random, texts: list[str]) -> str:
    text = rng.choice(texts)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        i = rng.randrange(len(text) + 1)
        if kind == 0:
            text = text[:i] + chr(rng.randrange(32, 127)) + text[i + 1:]
        elif kind == 1:
            text = text[:i] + text[i + rng.randint(1, 20):]
        elif kind == 2:
            text = text[:i] + rng.choice(TEXT_TOKENS) + text[i:]
        elif kind == 3:
            text = text[:i]
        elif kind == 4:  # replace one number with a token
            starts = [k for k, c in enumerate(text) if c in "-0123456789"
                      and (k == 0 or text[k - 1] in " [,:")]
            if starts:
                k = rng.choice(starts)
                end = k
                while end < len(text) and text[end] in "-+.eE0123456789":
                    end += 1
                text = text[:k] + rng.choice([*TEXT_TOKENS, repr(rng.uniform(-1e9, 1e9))]) \
                    + text[end:]
        else:
            j = rng.randrange(len(text) + 1)
            text = text[:i] + text[min(i, j):max(i, j)] + text[i:]
    return text.replace("\x00", "")


# ---- server health --------------------------------------------------------------------


def _log_size() -> int | None:
    try:
        return SERVER_LOG.stat().st_size
    except OSError:
        return None


def _new_crash_lines(since: int | None) -> list[str]:
    if since is None:
        return []
    with SERVER_LOG.open("rb") as f:
        f.seek(since)
        new = f.read().decode("utf-8", "replace")
    return [line for line in new.splitlines() if any(m in line for m in CRASH_MARKERS)]


# ---- reading odd but valid digests ---------------------------------------------------

QS = [0.0, 1e-9, 0.001, 0.25, 0.5, 0.75, 0.999, 1.0]
XS = [-math.inf, -1e308, -1.0, -5e-324, 0.0, 5e-324, 1.0, 42.5, 1e308, math.inf]


def _check_accepted_digests(pg: psycopg.Connection, digests: list[bytes]) -> None:
    for start in range(0, len(digests), BATCH):
        chunk = digests[start:start + BATCH]
        rows = pg.execute(
            "SELECT (b::tdigest)::bytea, tdigest_quantile(b::tdigest, %s::float8[]), "
            "tdigest_cdf(b::tdigest, %s::float8[]), tdigest_mean(b::tdigest), "
            "tdigest_stddev(b::tdigest), (b::tdigest)::text::tdigest::bytea "
            "FROM unnest(%s::bytea[]) WITH ORDINALITY u(b, i) ORDER BY i",
            [QS, XS, chunk]).fetchall()
        for data, (again, quantiles, cdf, mean, stddev, via_text) in zip(chunk, rows,
                                                                          strict=True):
            assert bytes(again) == data and bytes(via_text) == data
            if quantiles is None:  # empty digest
                assert cdf is None and mean is None
                continue
            assert all(a <= b for a, b in itertools.pairwise(quantiles)), quantiles
            assert all(0.0 <= c <= 1.0 for c in cdf) and cdf == sorted(cdf), cdf
            assert math.isfinite(mean) and (stddev is None or stddev >= 0.0)
            if python_decode is not None:
                digest = python_decode(data)
                for got, want in zip(quantiles, digest.quantile(QS), strict=True):
                    assert got == want or abs(got - want) <= 4 * math.ulp(max(abs(got),
                                                                               abs(want)))
                for got, want in zip(cdf, digest.cdf(XS), strict=True):
                    assert got == want or abs(got - want) <= 4 * math.ulp(max(got, want))
    # Rolling all of them up either works or reports a 64-bit count overflow.
    try:
        pg.execute("SELECT tdigest_merge(b::tdigest)::bytea FROM unnest(%s::bytea[]) b",
                   [digests]).fetchone()
    except psycopg.errors.NumericValueOutOfRange:
        pass


# ---- the test -------------------------------------------------------------------------


@pytest.mark.slow
def test_fuzzed_digests_never_crash_and_are_rejected_exactly_when_invalid(pg):
    started = time.monotonic()
    postmaster_start = pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    log_offset = _log_size()
    pg.execute(TRY_DIGESTS)
    rng = random.Random(20261122)
    seeds = _seed_digests(pg)
    oracle_disagreements: list[tuple[str, str]] = []
    accepted: list[bytes] = []
    stats = {"cast_ok": 0, "cast_rejected": 0, "recv_ok": 0, "recv_rejected": 0,
             "text_ok": 0, "text_rejected": 0}

    # 1. Server-side batches through the bytea cast.
    for _ in range(N_CAST // BATCH):
        inputs = [_mutate(rng, seeds) for _ in range(BATCH)]
        rows = pg.execute("SELECT idx, state, canonical FROM pg_temp.psg_try_digests(%s)",
                          [inputs]).fetchall()
        assert len(rows) == BATCH
        for idx, state, canonical in rows:
            data = inputs[idx - 1]
            if state == "ok":
                stats["cast_ok"] += 1
                accepted.append(bytes(canonical))
            else:
                stats["cast_rejected"] += 1
                assert state == "22P03", (state, data.hex())
            verdict = _python_accepts(data)
            if verdict is not None and verdict != (state == "ok"):
                oracle_disagreements.append((data.hex(), state))
            elif verdict and python_encode(python_decode(data)) != bytes(canonical):
                # Both writers give the same canonical version 3 bytes (a version 1 input
                # converted the same way, to the bit; a version 2 one read as it is).
                oracle_disagreements.append((data.hex(), "canonical bytes differ"))

    # Accepted inputs are valid digests, often odd ones (huge weights, ±1e308, subnormal
    # means): their canonical form reads back unchanged, and every reader works on them.
    _check_accepted_digests(pg, accepted[:5000])

    # 2. The real binary recv, one statement per input (psycopg binary parameters).
    with pg.cursor() as cur:
        for _ in range(N_RECV):
            data = _mutate(rng, seeds)
            try:
                cur.execute("SELECT tdigest_send(%s)", [DigestBytes(data)], prepare=True)
                sent = bytes(cur.fetchone()[0])
                stats["recv_ok"] += 1
                assert _python_accepts(data) in (True, None), data.hex()
                # send writes the canonical form: a fixed point that decodes to the same
                # digest (it differs from the input only by -0.0 written as +0.0).
                cur.execute("SELECT tdigest_send(%s)", [DigestBytes(sent)], prepare=True)
                assert bytes(cur.fetchone()[0]) == sent
                if python_decode is not None:
                    assert python_decode(sent) == python_decode(data)
            except psycopg.Error as exc:
                stats["recv_rejected"] += 1
                assert exc.sqlstate == "22P03", (exc.sqlstate, str(exc), data.hex())
                assert _python_accepts(data) in (False, None), data.hex()

    # 3. Text input: mutated text forms of the seeds.
    texts = [r[0] for r in pg.execute(
        "SELECT (b::tdigest)::text FROM unnest(%s::bytea[]) b", [seeds]).fetchall()]
    for _ in range(N_TEXT // BATCH):
        inputs = [_mutate_text(rng, texts) for _ in range(BATCH)]
        rows = pg.execute("SELECT idx, state, canonical FROM pg_temp.psg_try_texts(%s)",
                          [inputs]).fetchall()
        for idx, state, canonical in rows:
            if state == "ok":
                stats["text_ok"] += 1
                again = pg.execute("SELECT %s::tdigest::text", [canonical]).fetchone()[0]
                assert again == canonical
            else:
                stats["text_rejected"] += 1
                assert state == "22P02", (state, inputs[idx - 1])

    # 4. The server survived: same postmaster, no crashed backend in the log.
    assert pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == postmaster_start
    assert _new_crash_lines(log_offset) == []
    assert not oracle_disagreements, oracle_disagreements[:5]
    total = sum(stats.values())
    assert total >= N_CAST + N_RECV + N_TEXT
    # Mutations must exercise both outcomes, or the fuzzer is not testing much.
    assert stats["cast_ok"] > 100 and stats["cast_rejected"] > 50_000, stats
    assert stats["recv_rejected"] > 10_000 and stats["text_rejected"] > 10_000, stats
    print(f"\nfuzz: {total} inputs in {time.monotonic() - started:.1f} s: {stats}; "
          f"python oracle {'used' if python_decode else 'not available'}")


def test_hostile_arguments_give_errors_not_crashes(pg):
    postmaster_start = pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    for compression in [-2**31, -1, 0, 9, 10001, 2**31 - 1]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            pg.execute("SELECT tdigest_agg(x, %s) FROM generate_series(1, 10) x",
                       [compression])
    for q in [-1e-300, 1.0000000000000002, math.nan, math.inf, -math.inf]:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            pg.execute("SELECT tdigest_quantile(tdigest_agg(x), %s::float8) "
                       "FROM generate_series(1, 10) x", [q])
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        pg.execute("SELECT tdigest_cdf(tdigest_agg(x), 'NaN'::float8) FROM generate_series(1, 3) x")
    # Deserialize and combine are unreachable from SQL without an aggregate context.
    with pytest.raises(psycopg.Error):
        pg.execute("SELECT tdigest_agg_combine(NULL::internal, NULL::internal)")
    with pytest.raises(psycopg.Error):
        pg.execute("SELECT tdigest_agg_deserialize('\\x00'::bytea, NULL::internal)")
    assert pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == postmaster_start


def test_aggregate_over_random_bit_patterns_is_valid(pg):
    """Every double bit pattern (NaN payloads, subnormals, ±0, ±Inf, extremes) aggregates
    to a valid digest with exact counts and extremes."""
    import numpy as np

    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64, size=200_000, dtype=np.uint64)
    values = bits.view(np.float64)
    values[::97] = -0.0
    values[::89] = 5e-324
    finite = values[np.isfinite(values)]
    cur = pg.cursor(binary=True)
    for compression in (10, 100, 10000):
        cur.execute("SELECT tdigest_agg(x, %s) FROM unnest(%s::float8[]) x",
                    [compression, values.tolist()])
        data = bytes(cur.fetchone()[0])
        row = pg.execute(
            "SELECT tdigest_count(d), (tdigest_invalid_counts(d)).*, tdigest_min(d), "
            "tdigest_max(d) FROM (SELECT %s::tdigest AS d) s", [DigestBytes(data)]).fetchone()
        assert row[0] == finite.size
        assert int(row[2]) == int(np.isnan(values).sum())
        assert int(row[3]) == int((values == np.inf).sum())
        assert int(row[4]) == int((values == -np.inf).sum())
        assert (row[5], row[6]) == (finite.min(), finite.max())
        if python_decode is not None:
            digest = python_decode(data)
            assert digest.count == finite.size
