"""Values that the Python and the C side each write down must agree: the release version
and the t-digest compression defaults (read from the extension's sources as text, so the
tests need no build)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import stat_guard
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
