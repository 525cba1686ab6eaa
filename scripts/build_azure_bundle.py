"""Build the deployable Azure Function zip: function_app.py, host.json, requirements.txt
and the core library ``stat_guard`` (without its DuckDB engine) beside them (what
`func azure functionapp publish` or a zip deploy expects at the root).
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURE_FILES = ["function_app.py", "host.json", "requirements.txt", ".funcignore"]
# The bundle serves digests. The core library ships whole (the local HTTP entry point is
# not needed there but small, and keeps imports identical) except the scheduled drift
# engine: it needs DuckDB and runs in the worker fleet only.
PACKAGE = "stat_guard"
LEFT_OUT = (Path(PACKAGE) / "scheduled",)


def build(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in AZURE_FILES:
            _add(bundle, ROOT / "azure" / name, name)
        for path in sorted((ROOT / PACKAGE).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if not any(relative.is_relative_to(folder) for folder in LEFT_OUT):
                _add(bundle, path, str(relative))
    return output


def _add(bundle: zipfile.ZipFile, path: Path, arcname: str) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))  # reproducible zips
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, path.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "azure-function.zip")
    args = parser.parse_args()
    print(build(args.output))


if __name__ == "__main__":
    main()
