"""uv.lock pins every Python package the project installs: it must agree with
pyproject.toml, and this environment must hold exactly what it pins (scripts/bootstrap.sh
installs from it; `make lock` refreshes it)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def _uv(*args: str) -> subprocess.CompletedProcess:
    assert UV.exists(), f"{UV} is missing: uv is a dev requirement (make setup installs it)"
    return subprocess.run([str(UV), *args, "--offline"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_the_lock_agrees_with_pyproject():
    result = _uv("lock", "--check")
    assert result.returncode == 0, (
        "uv.lock does not match pyproject.toml; run `make lock` and commit uv.lock:\n"
        + result.stderr[-2000:])


def test_this_environment_holds_the_locked_versions_of_the_dev_packages():
    result = _uv("sync", "--locked", "--check", "--inexact", "--extra", "dev")
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_locked_package_has_an_exact_version_and_hashes():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = [p for p in lock["package"] if p.get("source", {}).get("registry")]
    assert len(packages) > 50
    for package in packages:
        assert package["version"], package["name"]
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package
                                               else [])]
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), \
            package["name"]
    locked: dict[str, set[str]] = {}  # a package may have one version per Python range
    for package in packages:
        locked.setdefault(package["name"], set()).add(package["version"])
    # the packages whose releases broke a clean clone before are among them, as installed
    for name in ("duckdb", "numpy", "celery", "redis", "psycopg"):
        assert metadata.version(name) in locked[name], name
