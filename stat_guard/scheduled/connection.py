"""Short-lived DuckDB connections: lock retries with backoff, phase timing, bytes fetched.

DuckDB allows one writing process per file, and read-only handles block that writer, so
a run opens the file only for the SQL it needs and closes it at once; another process
waiting for the file then waits seconds, not a whole run (docs/scheduled-drift.md, "DuckDB
access and locking").
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from stat_guard.scheduled.config import DriftRunConfig

logger = logging.getLogger(__name__)

_LOCK_MESSAGES = ("could not set lock", "conflicting lock")


class DuckDBBusyError(RuntimeError):
    """The DuckDB file stayed locked by another process through every retry."""


class DuckDBFileMissingError(FileNotFoundError):
    """The DuckDB file does not exist (a missing or mistyped ``duckdb.path``): a run never
    creates an empty database in its place."""


def duckdb_error_text(error: BaseException, limit: int = 500) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters, for error entries."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def quote_ident(name: str) -> str:
    """A DuckDB identifier in double quotes, embedded quotes doubled."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


_HOLDER = re.compile(r"lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def lock_holder(error: BaseException) -> str:
    """Who holds the file, from DuckDB's lock message: ``PID 8711 (python3.11 -m jupyter
    lab)`` with the holder's command line where this process may read it; "" if unknown."""
    match = _HOLDER.search(str(error))
    if match is None:
        return ""
    pid = match["pid"]
    command = ""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(4096).decode(errors="replace")
        command = " ".join(raw.replace("\0", " ").split())
    except OSError:
        pass
    return f"PID {pid} ({(command or match['program'])[:200]})"


def busy_message(db_path: str, attempts: int, waited_s: float, error: BaseException) -> str:
    """The busy error's text: what holds the lock and where readers should look instead.
    DuckDB's own hint (open read-only) is left out: a read-only handle blocks the writer
    too, which is the problem here."""
    holder = lock_holder(error)
    held_by = f"held by {holder}" if holder else duckdb_error_text(error, 300)
    return (f"{db_path} stayed locked after {attempts} attempts over {waited_s:.1f} s, "
            f"{held_by}; "
            f"any open connection, read-only ones too, blocks the drift writer: read the "
            f"Parquet copy of the results or close the connection between queries "
            f"(docs/scheduled-drift.md, \"Reading results while the fleet runs\")")


def is_lock_conflict(error: BaseException) -> bool:
    message = str(error).lower()
    return isinstance(error, duckdb.IOException) and any(m in message for m in _LOCK_MESSAGES)


# The engine's own DuckDB extension (stat_guard/scheduled/native/stat_guard_cells.c, built
# by scripts/build_duckdb_cells.py): counts every feature of a window into its grid's cells
# in one pass, joins the windows' cells, returns a window's first rows.
# STAT_GUARD_NATIVE_CELLS names another file (an installed package keeps no build output).
NATIVE_CELLS = Path(os.environ.get("STAT_GUARD_NATIVE_CELLS") or Path(__file__).resolve().parent
                    / "native" / "stat_guard_cells.duckdb_extension")
_native_failures: set[str] = set()  # extension files that did not load: said once


class Session:
    """One open connection; counts the bytes of every result set it fetches.
    ``native_cells``: the engine's native extension is loaded in this connection."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, native_cells: bool = False
                 ) -> None:
        self.connection = connection
        self.bytes_fetched = 0
        self.native_cells = native_cells

    def fetchall(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None,
                 width: int | None = None) -> list[tuple[Any, ...]]:
        """The statement's rows. With ``width``, rows of that many numbers, counted as 8
        bytes each (the value-by-value count cost more than the query on tens of
        thousands of cells)."""
        rows = self.connection.execute(sql, _used(sql, params)).fetchall()
        if width is None:
            self.bytes_fetched += sum(result_size(row) for row in rows)
        else:
            self.bytes_fetched += 8 * width * len(rows)
        return rows

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
        self.connection.execute(sql, _used(sql, params))

    @contextmanager
    def memory_limit(self, limit: str, restore: str) -> Iterator[None]:
        """Run the block under another DuckDB memory limit, then set ``restore`` again."""
        self.connection.execute(f"SET memory_limit = '{_quoted(limit)}'")
        try:
            yield
        finally:
            self.connection.execute(f"SET memory_limit = '{_quoted(restore)}'")


def _load_native(connection: duckdb.DuckDBPyConnection) -> bool:
    """LOAD the native extension; False (said once a file) when DuckDB refuses it, e.g.
    one built for another DuckDB version: the engine then counts with GROUP BY."""
    try:
        connection.execute(f"LOAD '{_quoted(str(NATIVE_CELLS))}'")
        return True
    except duckdb.Error as exc:
        if str(NATIVE_CELLS) not in _native_failures:
            _native_failures.add(str(NATIVE_CELLS))
            logger.warning("%s not loaded, counting cells with GROUP BY: %s", NATIVE_CELLS,
                           duckdb_error_text(exc))
        return False


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _used(sql: str, params: Mapping[str, Any] | Sequence[Any] | None
          ) -> Mapping[str, Any] | Sequence[Any] | None:
    """Only the named parameters the statement mentions (DuckDB rejects extra ones)."""
    if not isinstance(params, Mapping):
        return params
    return {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}


def result_size(value: Any) -> int:
    """Approximate bytes of a fetched value: 8 per number, string lengths, containers summed."""
    if value is None:
        return 1
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(result_size(k) + result_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(result_size(v) for v in value)
    return 8


class PhaseTimer:
    """How long a phase waited for the lock and how long it held the file."""

    def __init__(self) -> None:
        self.waited_s = 0.0
        self.held_s = 0.0
        self.attempts = 0


@contextmanager
def open_duckdb(db_path: str, config: DriftRunConfig, *, read_only: bool,
                timer: PhaseTimer | None = None, create: bool = False) -> Iterator[Session]:
    """Open ``db_path`` (retrying lock conflicts), yield a session, always close it.

    A file that does not exist raises :class:`DuckDBFileMissingError` unless ``create``
    (only :func:`stat_guard.scheduled.engine.ensure_schema` may make a new database).

    Retries use exponential backoff with equal jitter (a delay drawn from half to all of
    the ceiling), capped at ``lock_max_delay_s``;
    after ``lock_attempts`` failed opens :class:`DuckDBBusyError` is raised.
    """
    if not create and db_path != ":memory:" and not os.path.exists(db_path):
        raise DuckDBFileMissingError(f"DuckDB file {db_path!r} does not exist "
                                     f"(check duckdb.path)")
    timer = timer or PhaseTimer()
    settings = {"threads": config.duckdb_threads, "memory_limit": config.duckdb_memory_limit}
    native = read_only and config.native_cells and NATIVE_CELLS.exists()
    if native:
        # Loading a C extension of our own, unsigned; only the engine's LOAD below names one.
        settings["allow_unsigned_extensions"] = "true"
    wait_started = time.perf_counter()
    connection = None
    for attempt in range(config.lock_attempts):
        timer.attempts = attempt + 1
        try:
            connection = duckdb.connect(db_path, read_only=read_only, config=settings)
            break
        except duckdb.Error as error:
            if not is_lock_conflict(error):
                raise
            if attempt + 1 == config.lock_attempts:
                timer.waited_s = time.perf_counter() - wait_started
                raise DuckDBBusyError(busy_message(db_path, config.lock_attempts,
                                                   timer.waited_s, error)) from error
            ceiling = min(config.lock_max_delay_s, config.lock_base_delay_s * 2 ** attempt)
            time.sleep(random.uniform(0.5, 1.0) * ceiling)
    assert connection is not None
    timer.waited_s = time.perf_counter() - wait_started
    held_from = time.perf_counter()
    try:
        # Settings are per database instance; SET again in case this process already had one.
        connection.execute(f"SET threads = {int(config.duckdb_threads)}")
        connection.execute(f"SET memory_limit = '{_quoted(config.duckdb_memory_limit)}'")
        yield Session(connection, native_cells=native and _load_native(connection))
    finally:
        connection.close()
        timer.held_s = time.perf_counter() - held_from
