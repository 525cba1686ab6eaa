"""Build the scheduled engine's DuckDB aggregate (stat_guard/scheduled/native/stat_guard_cells.c).

DuckDB loads C extensions built against its C extension API. The headers of that API
(duckdb.h, duckdb_extension.h) ship in the source distribution of the ``duckdb`` Python
package, not in its wheel: this script takes them from the source distribution of the
installed version on PyPI (the archive, 17 MB for 2.0.1, is kept in build/ for the next
build), compiles the aggregate with the system's C compiler and appends the 512-byte
metadata footer DuckDB reads before it loads an unsigned extension. The result goes next
to the source (``stat_guard_cells.duckdb_extension``); the engine uses it when it is
there and counts with a GROUP BY when it is not (docs/scheduled-drift.md, "The native
cell aggregate").

    .venv/bin/python scripts/build_duckdb_cells.py [--force]

Exit status 0 when the extension is built (or already up to date), 1 when it could not
be (no network, no compiler): the engine still works then, only slower.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "stat_guard" / "scheduled" / "native"
SOURCE = NATIVE / "stat_guard_cells.c"
TARGET = NATIVE / "stat_guard_cells.duckdb_extension"
BUILD = ROOT / "build" / "duckdb-cells"
HEADERS = ("duckdb.h", "duckdb_extension.h")
FOOTER_FIELD = 32
SIGNATURE_BYTES = 256
CFLAGS = ["-O3", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wextra", "-Werror",
          # the key must be computed exactly as DuckDB computes the SQL key: no fused
          # multiply-add, no reordering
          "-ffp-contract=off", "-fno-fast-math",
          # no value changes: lets the compiler compute the keys' comparisons and selects
          # for two rows at once (it may not assume a comparison of a NaN raises nothing)
          "-fno-trapping-math"]


def duckdb_facts() -> tuple[str, str]:
    import duckdb

    [(platform,)] = duckdb.execute("PRAGMA platform").fetchall()
    return duckdb.__version__, platform


def sdist_url(version: str) -> tuple[str, str]:
    """The source distribution's URL and sha256, from PyPI's simple index."""
    with urllib.request.urlopen("https://pypi.org/simple/duckdb/", timeout=60) as response:
        page = response.read().decode("utf-8", "replace")
    name = re.escape(f"duckdb-{version}.tar.gz")
    match = re.search(rf'href="([^"#]*/{name})#sha256=([0-9a-f]{{64}})"', page)
    if not match:
        raise RuntimeError(f"duckdb {version} has no source distribution on PyPI")
    return match.group(1), match.group(2)


def headers(version: str) -> Path:
    """A directory holding the C API headers of duckdb ``version``."""
    include = BUILD / f"duckdb-{version}" / "include"
    if all((include / name).exists() for name in HEADERS):
        return include
    url, sha256 = sdist_url(version)
    archive = BUILD / f"duckdb-{version}.tar.gz"
    if not archive.exists() or hashlib.sha256(archive.read_bytes()).hexdigest() != sha256:
        BUILD.mkdir(parents=True, exist_ok=True)
        print(f"downloading the duckdb {version} source distribution for its C API headers")
        with urllib.request.urlopen(url, timeout=300) as response, \
                tempfile.NamedTemporaryFile(dir=BUILD, delete=False) as partial:
            shutil.copyfileobj(response, partial)
        if hashlib.sha256(Path(partial.name).read_bytes()).hexdigest() != sha256:
            os.unlink(partial.name)
            raise RuntimeError(f"{url}: sha256 mismatch")
        os.replace(partial.name, archive)
    include.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name in HEADERS and member.name.endswith(f"/src/include/{name}"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                (include / name).write_bytes(extracted.read())
    missing = [n for n in HEADERS if not (include / n).exists()]
    if missing:
        raise RuntimeError(f"duckdb {version} source distribution lacks {missing}")
    return include


def api_version(include: Path) -> str:
    """The C API version the headers request (DUCKDB_EXTENSION_API_VERSION_*)."""
    text = (include / "duckdb_extension.h").read_text()
    parts = [re.search(rf"#define DUCKDB_EXTENSION_API_VERSION_{p} (\d+)", text)
             for p in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        raise RuntimeError("no DUCKDB_EXTENSION_API_VERSION in duckdb_extension.h")
    return "v" + ".".join(m.group(1) for m in parts if m)


def footer(platform: str, capi_version: str, extension_version: str) -> bytes:
    """DuckDB's extension metadata: eight 32-byte fields, last one first (magic "4",
    platform, C API version, extension version, ABI type, three unused), then an empty
    signature (an unsigned extension)."""
    fields = ["", "", "", "C_STRUCT", extension_version, capi_version, platform, "4"]
    encoded = [f.encode().ljust(FOOTER_FIELD, b"\0") for f in fields]
    if any(len(f) != FOOTER_FIELD for f in encoded):
        raise ValueError("a metadata field is longer than 32 bytes")
    return b"".join(encoded) + b"\0" * SIGNATURE_BYTES


# A copy for fuzzing under AddressSanitizer and UndefinedBehaviorSanitizer
# (scripts/fuzz_native_cells.py): any error aborts the process.
SANITIZER_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=undefined"]


def build(force: bool = False, target: Path = TARGET, sanitize: bool = False) -> Path:
    version, platform = duckdb_facts()
    stamp = target.with_suffix(".stamp")
    flags = ([f for f in CFLAGS if f != "-O3"] + SANITIZER_FLAGS) if sanitize else CFLAGS
    want = (f"{version} {platform} {hashlib.sha256(SOURCE.read_bytes()).hexdigest()} "
            f"{' '.join(flags)}")
    if not force and target.exists() and stamp.exists() and stamp.read_text() == want:
        return target
    include = headers(version)
    compiler = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as work:
        library = Path(work) / "stat_guard_cells.so"
        subprocess.run([compiler, *flags, f"-I{include}", "-o", str(library), str(SOURCE),
                        "-lm"], check=True)
        data = library.read_bytes() + footer(platform, api_version(include), "v1")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    stamp.write_text(want)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    try:
        path = build(args.force)
    except (OSError, RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
        print(f"stat_guard_cells not built: {exc}; the scheduled engine counts with "
              "GROUP BY instead", file=sys.stderr)
        return 1
    print(f"stat_guard_cells: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
