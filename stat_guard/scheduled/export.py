"""Results readable while the fleet runs: after each write, the drift worker copies what a
reader wants into Parquet files beside the DuckDB file.

DuckDB has one writing process per file, and an open read-only handle blocks it: a
dashboard or notebook that keeps the file open makes drift runs wait and retry. Readers
use the export instead, which no run ever waits for:

- ``<results_dir>/model_metadata.parquet``: every model's row (scores, verdict, flag);
- ``<results_dir>/latest/<model>.parquet``: the rows of the model's newest run in
  ``drift_runs`` (one per feature, the prediction and the model row).

Each file is written under a temporary name and renamed, so a reader sees the old file or
the new one, never half of one. The run history stays in ``drift_runs`` (docs/scheduled-
drift.md, "Reading results while the fleet runs").
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from stat_guard.scheduled.connection import Session

METADATA_FILE = "model_metadata.parquet"
LATEST_DIR = "latest"


def default_results_dir(db_path: str) -> str:
    """``data/x.duckdb`` -> ``data/x.results``."""
    path = Path(db_path)
    return str(path.with_name(path.stem + ".results"))


def latest_file(results_dir: str, model: str) -> Path:
    """The model's file; the name is the model's, percent-encoded where a file name
    could not hold it (``/``, ``%``, control characters, a leading dot)."""
    name = urllib.parse.quote(model, safe=" -_+=,@()[]{}!~")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return Path(results_dir) / LATEST_DIR / f"{name}.parquet"


def export_run(session: Session, results_dir: str, model: str, run_id: str) -> None:
    """Write the run's rows and the metadata table (inside the write phase's session)."""
    export_latest(session, results_dir, model, run_id)
    export_metadata(session, results_dir)


def export_latest(session: Session, results_dir: str, model: str, run_id: str) -> None:
    """Write the run's rows only (a batch writes the metadata table once, after its runs)."""
    target = latest_file(results_dir, model)
    _copy(session, "SELECT * FROM drift_runs WHERE model = $model AND run_id = $run_id "
                   "ORDER BY feature", {"model": model, "run_id": run_id}, target)


def export_metadata(session: Session, results_dir: str) -> None:
    _copy(session, "SELECT * FROM model_metadata ORDER BY name", None,
          Path(results_dir) / METADATA_FILE)


def _copy(session: Session, query: str, params: dict[str, str] | None, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    path = str(temporary).replace("'", "''")
    try:
        session.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)", params)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
