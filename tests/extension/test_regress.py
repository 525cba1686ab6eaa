"""The pg_regress suite of the extension (pg_extension/test/sql, expected/), run against
the test run's private cluster (the libpq variables name it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "pg_extension"


def test_pg_regress_suite_passes():
    make = shutil.which("make") or "make"
    result = subprocess.run([make, "-s", "-C", str(EXTENSION_DIR), "installcheck"],
                            capture_output=True, text=True, timeout=600, env=os.environ)
    diffs = EXTENSION_DIR / "regression.diffs"
    assert result.returncode == 0, (result.stdout[-4000:] + result.stderr[-2000:]
                                    + (diffs.read_text()[:6000] if diffs.exists() else ""))
    assert "tests passed" in result.stdout or "ok" in result.stdout, result.stdout
