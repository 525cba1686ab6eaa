"""A private PostgreSQL cluster with the pg_stat_guard extension, for the fleet's tests and
benchmark: the extension's URL is a server-wide setting, so pointing it at our verdict
service on the shared server would disturb whoever else uses that server.

Uses the installed PostgreSQL binaries (``pg_config --bindir``), runs as the ``postgres``
system user when started by root, listens on 127.0.0.1 on a free port, and is removed
afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.local import free_port


@dataclass(frozen=True)
class PrivatePostgres:
    port: int
    user: str = "postgres"
    database: str = "postgres"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.database}"


def _bindir() -> Path:
    pg_config = shutil.which("pg_config") or "/usr/bin/pg_config"
    return Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                               check=True).stdout.strip())


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def private_postgres(function_url: str) -> Iterator[PrivatePostgres]:
    """Start a throw-away cluster with the extension created and its function URL set."""
    bindir = _bindir()
    datadir = Path(tempfile.mkdtemp(prefix="psg-fleet-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    port = free_port()
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(datadir), "-U",
                                 "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                   f"unix_socket_directories = '{datadir}'\nfsync = off\n"
                   f"shared_buffers = 64MB\nmax_connections = 40\n"
                   f"pg_stat_guard.function_url = '{function_url}'\n")
    log = datadir / "server.log"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log),
                                 "-w", "-t", "60", "start"]), check=True, capture_output=True)
    server = PrivatePostgres(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(server.dsn, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_guard")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(datadir), "-m",
                                     "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)
