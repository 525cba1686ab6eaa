"""Random and mutated category tables never crash the server: each is read or refused
(22P03), and the extension's reader (``category_counts_json``, the same code that checks
stored baselines) agrees with Python's (``stat_guard.wire.decode_category_table``) on
every input: same verdict, same categories and counts when both accept.

Inputs come from the golden tables and random valid ones, mutated the ways corruption and
hostile input look: bit flips, byte insertions and deletions, truncations, length and
count fields set to edge values, invalid UTF-8 and NUL spliced into names, entries
swapped. Afterwards the postmaster must not have restarted.
"""

from __future__ import annotations

import random
import struct
import time

import pytest

from stat_guard.categories import CategoryCounts
from stat_guard.wire import WireFormatError, decode_category_table, encode_category_table
from tests.conftest import GOLDEN_DIR

BATCH = 2000
N_INPUTS = 200_000
EDGE_U16 = [0, 1, 1024, 1025, 0xFFFF]
EDGE_U32 = [0, 1, 4096, 4097, 0xFFFFFFFF]
EDGE_U64 = [0, 1, 2**63, 2**64 - 1]
BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe6\x97", b"\x00"]

TRY_TABLES = """
CREATE OR REPLACE FUNCTION pg_temp.psg_try_tables(inputs bytea[])
RETURNS TABLE (idx int, state text, decoded jsonb) LANGUAGE plpgsql AS $$
BEGIN
  FOR k IN 1 .. coalesce(array_length(inputs, 1), 0) LOOP
    idx := k;
    BEGIN
      decoded := category_counts_json(inputs[k]);
      state := 'ok';
    EXCEPTION WHEN others THEN
      state := SQLSTATE;
      decoded := NULL;
    END;
    RETURN NEXT;
  END LOOP;
END $$;
"""


def _seeds(rng: random.Random) -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted(GOLDEN_DIR.glob("*.psgc"))]
    alphabet = ["a", "b", "", "Zürich", "日本", "x" * 40, "é", "😀", "a b", "A"]
    for _ in range(30):
        counts = {rng.choice(alphabet) + str(rng.randrange(50)): rng.choice(
            [1, 2, 3, rng.randrange(1, 10**6), 2**40]) for _ in range(rng.randrange(0, 30))}
        table = CategoryCounts.bounded(counts, rng.randrange(1, 20),
                                       missing=rng.choice([0, 3, 2**50]))
        seeds.append(encode_category_table(table))
    return seeds


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(9)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[at % len(data)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data.insert(at, rng.randrange(256))
        elif kind == 2 and data:
            del data[at % len(data)]
        elif kind == 3:
            del data[rng.randrange(len(data) + 1):]
        elif kind == 4 and len(data) >= 36:
            struct.pack_into("<I", data, 32, rng.choice(EDGE_U32))
        elif kind == 5 and len(data) >= 36:
            struct.pack_into("<Q", data, rng.choice([8, 16, 24]), rng.choice(EDGE_U64))
        elif kind == 6 and len(data) >= 38:
            struct.pack_into("<H", data, 36, rng.choice(EDGE_U16))
        elif kind == 7 and len(data) > 38:
            data[38:38] = rng.choice(BAD_UTF8)
        elif kind == 8 and len(data) >= 36:
            data[36:] = data[36:][::-1]  # entries (and their fields) scrambled
    return bytes(data)


def _python(data: bytes) -> dict | None:
    try:
        table = decode_category_table(data)
    except WireFormatError:
        return None
    return {"categories": [list(c) for c in table.categories], "other_count": table.other_count,
            "other_distinct": table.other_distinct, "missing": table.missing}


@pytest.mark.slow
def test_fuzzed_category_tables_never_crash_and_both_readers_agree(pg):
    started = time.monotonic()
    postmaster_start = pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    pg.execute(TRY_TABLES)
    rng = random.Random(20261206)
    seeds = _seeds(rng)
    stats = {"ok": 0, "rejected": 0}
    disagreements: list[tuple[str, str]] = []
    for _ in range(N_INPUTS // BATCH):
        inputs = [_mutate(rng, seeds) if rng.random() < 0.9 else rng.choice(seeds)
                  for _ in range(BATCH)]
        rows = pg.execute("SELECT idx, state, decoded FROM pg_temp.psg_try_tables(%s)",
                          [inputs]).fetchall()
        assert len(rows) == BATCH
        for idx, state, decoded in rows:
            data = inputs[idx - 1]
            expected = _python(data)
            if state == "ok":
                stats["ok"] += 1
                if decoded != expected:
                    disagreements.append((data.hex(), "accepted differently"))
            else:
                stats["rejected"] += 1
                assert state == "22P03", (state, data.hex())
                if expected is not None:
                    disagreements.append((data.hex(), "only python accepts"))
    assert pg.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == postmaster_start
    assert disagreements == [], disagreements[:5]
    assert stats["ok"] > 10_000 and stats["rejected"] > 100_000, stats
    print(f"\ncategory table fuzz: {sum(stats.values())} inputs in "
          f"{time.monotonic() - started:.1f} s: {stats}")
