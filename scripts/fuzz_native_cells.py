"""The native library's fuzz tests under AddressSanitizer and UndefinedBehaviorSanitizer.

Builds a sanitized copy of stat_guard/scheduled/native/stat_guard_cells.c into
build/sanitized/ (scripts/build_duckdb_cells.py), then runs the direct-call tests of
tests/scheduled/test_native_cells.py (random columns and grids, unreadable arguments,
grouped use, first rows, merges of random and malformed answers) against it in an
in-memory DuckDB, in a child process with the sanitizers' runtimes preloaded: an
out-of-bounds access, a use after free or undefined behaviour in the library aborts it.

    make fuzz-native        # or: .venv/bin/python scripts/fuzz_native_cells.py

Exit status 0 when every test passed with no sanitizer report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZED = ROOT / "build" / "sanitized" / "stat_guard_cells.duckdb_extension"
TESTS = ["test_the_aggregate_counts_exactly_and_never_crashes",
         "test_grids_it_cannot_read_give_null",
         "test_arguments_that_change_or_are_null_give_null",
         "test_first_rows_come_back_finite_and_sorted",
         "test_merging_two_answers_equals_the_python_merge"]


def runtime(name: str) -> str:
    found = subprocess.run([os.environ.get("CC", "cc"), f"-print-file-name={name}"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isabs(found):
        raise RuntimeError(f"{name} not found (the C compiler's sanitizer runtime)")
    return found


def child() -> None:
    """Runs in the preloaded process: the tests against the sanitized library."""
    import duckdb

    sys.path.insert(0, str(ROOT))
    from tests.scheduled import test_native_cells as tests

    connection = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": "1"})
    connection.execute(f"LOAD '{SANITIZED}'")
    for name in TESTS:
        getattr(tests, name)(connection)
        print(f"passed: {name}", flush=True)


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        child()
        return 0
    sys.path.insert(0, str(ROOT))
    from scripts.build_duckdb_cells import build

    build(target=SANITIZED, sanitize=True)
    environment = {**os.environ, "STAT_GUARD_NATIVE_CELLS": str(SANITIZED),
                   "LD_PRELOAD": f"{runtime('libasan.so')} {runtime('libubsan.so')}",
                   # DuckDB and Python keep memory to the end: only errors matter here.
                   "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                   "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    done = subprocess.run([sys.executable, __file__, "--child"], env=environment, cwd=ROOT,
                          timeout=1800)
    print("the native library passed its fuzz tests under ASan and UBSan" if done.returncode == 0
          else f"failed (exit status {done.returncode})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
