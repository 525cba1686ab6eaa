"""Values that the Python and the C side each write down must agree: the release version,
the t-digest compression defaults and scale constants, the digest wire format's version and
sizes, the category bounds and the wire format's category limits (read from the
extension's sources as text, so the tests need no build)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import stat_guard
from stat_guard import categories, tdigest, wire
from stat_guard.scheduled.config import DriftRunConfig
from stat_guard.tdigest import DEFAULT_COMPRESSION, MAX_COMPRESSION, MIN_COMPRESSION

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "pg_extension"
DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(\S+)", re.MULTILINE)
# The boot value of the pg_stat_guard.compression setting: a number or a macro.
COMPRESSION_SETTING = re.compile(
    r'DefineCustomIntVariable\(\s*"pg_stat_guard\.compression"\s*,.*?&\w+\s*,\s*(\w+)\s*,',
    re.DOTALL)


def _defines() -> dict[str, str]:
    """Every object-like #define of the extension's headers, whichever header holds it."""
    found: dict[str, str] = {}
    for header in sorted((EXTENSION / "src").glob("*.h")):
        for name, value in DEFINE.findall(header.read_text()):
            found.setdefault(name, value.strip("()"))
    return found


def _number(value: str, defines: dict[str, str]) -> int:
    """A #define'd value as an integer, following one macro to another."""
    seen = set()
    while not re.fullmatch(r"\d+", value):
        assert value in defines and value not in seen, f"no #define gives {value} a number"
        seen.add(value)
        value = defines[value]
    return int(value)


def test_the_release_version_is_the_same_everywhere():
    control = (EXTENSION / "pg_stat_guard.control").read_text()
    (control_version,) = re.findall(r"^\s*default_version\s*=\s*'([^']+)'", control, re.M)
    scripts = [path.name for path in (EXTENSION / "sql").glob("pg_stat_guard--*.sql")
               if "--" not in path.name.removeprefix("pg_stat_guard--")]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert scripts == [f"pg_stat_guard--{control_version}.sql"]
    assert pyproject["project"]["version"] == control_version
    assert stat_guard.__version__ == control_version
    header_versions = {value.strip('"') for name, value in _defines().items()
                       if name.endswith("_VERSION") and re.fullmatch(r'"[\d.]+"', value)}
    assert header_versions <= {control_version}


def test_compression_defaults_equal_the_extensions():
    defines = _defines()
    settings = [match for source in sorted((EXTENSION / "src").glob("*.c"))
                for match in COMPRESSION_SETTING.findall(source.read_text())]
    assert len(settings) == 1, settings
    (analysis_default,) = settings
    assert _number(analysis_default, defines) == DEFAULT_COMPRESSION
    # one default for tdigest_agg(value) and the analysis alike
    defaults = {name: _number(value, defines) for name, value in defines.items()
                if "COMPRESSION" in name and "DEFAULT" in name}
    assert set(defaults.values()) == {DEFAULT_COMPRESSION}, defaults
    bounds = {name: _number(value, defines) for name, value in defines.items()
              if "COMPRESSION" in name and ("MIN" in name or "MAX" in name)}
    assert sorted(bounds.values()) == [MIN_COMPRESSION, MAX_COMPRESSION], bounds


def test_digest_constants_and_wire_sizes_equal_the_extensions():
    defines = _defines()
    # The scale function and the exactly-kept range: both writers write the same bytes.
    assert _number("TD_EXACT_FACTOR", defines) == tdigest.EXACT_FACTOR
    assert float(defines["TD_MASS_CAP"]) == tdigest.MASS_CAP
    assert _number("TD_MAX_CENTROIDS", defines) == tdigest.MAX_CENTROIDS
    # docs/wire-format.md §1: version 3 written; versions 2 and 1 read
    assert _number("TD_WIRE_VERSION", defines) == wire.DIGEST_VERSION
    assert _number("TD_FIXED_SIZE", defines) == wire.DIGEST_FIXED_SIZE
    assert _number("TD_MIN_SIZE", defines) == wire.DIGEST_MIN_SIZE
    assert _number("TD_HEADER_SIZE_V2", defines) == wire.DIGEST_HEADER_V2_SIZE
    assert _number("TD_HEADER_SIZE_V1", defines) == wire.DIGEST_HEADER_V1_SIZE
    assert _number("TD_MAX_VARINT_BYTES", defines) == wire.MAX_VARINT_BYTES


MAX_CATEGORIES_SETTING = re.compile(
    r'DefineCustomIntVariable\(\s*"pg_stat_guard\.max_categories"\s*,.*?&\w+\s*,\s*(\w+)\s*,',
    re.DOTALL)


def test_category_bounds_and_wire_limits_equal_the_extensions():
    defines = _defines()
    settings = [match for source in sorted((EXTENSION / "src").glob("*.c"))
                for match in MAX_CATEGORIES_SETTING.findall(source.read_text())]
    assert len(settings) == 1, settings
    # one default for the extension's setting, the verdict service and the scheduled engine
    assert _number(settings[0], defines) == categories.DEFAULT_MAX_CATEGORIES
    assert DriftRunConfig().max_categories == categories.DEFAULT_MAX_CATEGORIES
    assert _number("PSG_CATEGORY_SHORTEN_BYTES", defines) == categories.SHORTEN_ABOVE_BYTES
    assert _number("PSG_CATEGORY_PREFIX_CHARS", defines) == categories.SHORTENED_PREFIX_CHARS
    assert _number("CT_MAX_CATEGORIES", defines) == wire.MAX_TABLE_CATEGORIES
    assert _number("CT_MAX_CATEGORY_BYTES", defines) == wire.MAX_CATEGORY_BYTES
    assert _number("CT_HEADER_SIZE", defines) == wire.CATEGORY_HEADER_SIZE
    assert _number("CT_VERSION", defines) == wire.CATEGORY_VERSION
    assert _number("PSG_ENVELOPE_VERSION", defines) == wire.ENVELOPE_VERSION
    assert _number("PSG_NUMERIC_ENVELOPE_VERSION", defines) == wire.NUMERIC_ENVELOPE_VERSION
    # a current table (its baseline's names and as many of its own) fits one table
    assert 2 * _number("PSG_MAX_MAX_CATEGORIES", defines) <= wire.MAX_TABLE_CATEGORIES
    # a shortened name fits within the bound it replaces, at 4 bytes a character
    assert 4 * categories.SHORTENED_PREFIX_CHARS + 3 + 32 <= categories.SHORTEN_ABOVE_BYTES
