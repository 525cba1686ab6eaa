"""Throwaway servers for the test suite, so that it never changes the servers a user runs.

``PostgresCluster`` is a cluster of its own (``initdb`` in a temporary directory, listening
on a free port of 127.0.0.1, the extension preloaded when its library is installed);
``RedisServer`` a ``redis-server`` on a free port that keeps nothing on disk. Both are
stopped and their directories removed by ``stop()``; a small reaper process does the same
if the process that started them dies without calling it (SIGKILL, a crash).

``local_servers_snapshot`` records what the suite must leave as it found on the user's own
servers: PostgreSQL's ``postgresql.auto.conf``, its databases, roles and the extensions of
every database, and the keys of Redis database 0.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from tests.local import free_port

SUPERUSER = "postgres"
TEST_DATABASE = "test"
# What every private cluster of the suite runs with: fast (no durability needed), the
# English messages and C.UTF-8 collation the expected outputs were written with.
BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "100",
    "lc_messages": "'C.UTF-8'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}
REAPER_DONE = b"done"


def _bindir() -> Path:
    pg_config = shutil.which("pg_config") or "/usr/bin/pg_config"
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _pkglibdir() -> Path:
    pg_config = shutil.which("pg_config") or "/usr/bin/pg_config"
    out = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def extension_library_installed() -> bool:
    """True once ``make -C pg_extension install`` has put the library in place."""
    return (_pkglibdir() / "pg_stat_guard.so").exists()


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as ``postgres`` then."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _start_reaper(paths: list[Path], pg_datadir: Path | None, pids: list[int]
                  ) -> subprocess.Popen:
    """A process that waits for our end of its stdin to close, then stops what is left."""
    argv = [sys.executable, "-m", "tests.servers", "reap", "--pids",
            ",".join(str(p) for p in pids), "--pg-datadir", str(pg_datadir or ""),
            *[str(p) for p in paths]]
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(argv, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@dataclass
class PostgresCluster:
    """A running private cluster; ``stop()`` removes it."""

    datadir: Path
    port: int
    preloaded: bool
    user: str = SUPERUSER
    reaper: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.datadir / "server.log"

    def dsn(self, database: str = TEST_DATABASE, user: str | None = None) -> str:
        return (f"host=127.0.0.1 port={self.port} user={user or self.user} "
                f"dbname={database}")

    def libpq_env(self, database: str = TEST_DATABASE) -> dict[str, str]:
        """The libpq variables that point psql, pg_regress and psycopg at this cluster."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": database}

    @classmethod
    def start(cls, settings: dict[str, str] | None = None, databases: tuple[str, ...] = (
              TEST_DATABASE,), preload: bool = True, prefix: str = "psg-test-pg-",
              environment: dict[str, str] | None = None) -> PostgresCluster:
        """initdb, start on a free port, create ``databases``. ``settings`` are
        postgresql.conf lines (values quoted as the file wants them). The library is
        preloaded (session_preload_libraries) when asked and installed. ``environment``
        is added to the server's environment (its backends see it)."""
        bindir = _bindir()
        datadir = Path(tempfile.mkdtemp(prefix=prefix))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(datadir, entry.pw_uid, entry.pw_gid)
        preloaded = preload and extension_library_installed()
        cluster = cls(datadir, free_port(), preloaded)
        try:
            subprocess.run(_as_server_user([
                str(bindir / "initdb"), "-D", str(datadir), "-U", SUPERUSER, "--auth=trust",
                "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]), check=True,
                capture_output=True)
            conf = {**BASE_SETTINGS, "port": str(cluster.port),
                    "unix_socket_directories": f"'{datadir}'"}
            if preloaded:
                conf["session_preload_libraries"] = "'pg_stat_guard'"
            conf.update(settings or {})
            with open(datadir / "postgresql.conf", "a") as file:
                file.write("\n# pg_stat_guard test suite\n")
                file.writelines(f"{name} = {value}\n" for name, value in conf.items())
            # A session of its own: Ctrl-C in the terminal reaches the tests, not the server.
            with_environment = ["env", *(f"{k}={v}" for k, v in (environment or {}).items())]
            subprocess.run(_as_server_user([
                *with_environment, str(bindir / "pg_ctl"), "-D", str(datadir), "-l",
                str(cluster.log_path), "-w", "-t", "60", "start"]), check=True,
                capture_output=True, start_new_session=True)
            cluster.reaper = _start_reaper([datadir], datadir, [])
            cluster._wait_ready()
            with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
                for database in databases:
                    conn.execute(f'CREATE DATABASE "{database}"')
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        _stop_postgres(self.datadir)
        shutil.rmtree(self.datadir, ignore_errors=True)
        _release_reaper(self.reaper)
        self.reaper = None


def _stop_postgres(datadir: Path) -> None:
    if (datadir / "postmaster.pid").exists():
        subprocess.run(_as_server_user([str(_bindir() / "pg_ctl"), "-D", str(datadir), "-m",
                                        "immediate", "-w", "-t", "30", "stop"]),
                       capture_output=True)


def _release_reaper(reaper: subprocess.Popen | None) -> None:
    """Everything is stopped already: the reaper is told so and ends doing nothing."""
    if reaper is None:
        return
    try:
        reaper.stdin.write(REAPER_DONE)  # type: ignore[union-attr]
        reaper.stdin.close()  # type: ignore[union-attr]
        reaper.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        reaper.kill()


@dataclass
class RedisServer:
    """A running private ``redis-server``; ``stop()`` removes it."""

    port: int
    workdir: Path
    process: subprocess.Popen
    reaper: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    def start(cls) -> RedisServer:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        workdir = Path(tempfile.mkdtemp(prefix="psg-test-redis-"))
        port = free_port()
        with open(workdir / "redis.log", "wb") as log:
            process = subprocess.Popen(
                [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
                 "--databases", "16"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        server = cls(port, workdir, process)
        server.reaper = _start_reaper([workdir], None, [process.pid])
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.client().ping():
                    return server
            except redis.RedisError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (workdir / "redis.log").read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}: {log_text}")
            time.sleep(0.05)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, decode_responses=True,
                           socket_timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        _release_reaper(self.reaper)
        self.reaper = None


# ---- what the suite must leave as it found on the user's own servers ------------------


def local_servers_snapshot(pg_conninfo: str, redis_host: str = "127.0.0.1",
                           redis_port: int = 6379) -> dict[str, object]:
    """The state of the user's servers that a test run must not change. A server that
    cannot be reached is recorded as unreachable, and compared like any other value."""
    return {"postgres": _postgres_state(pg_conninfo),
            "redis_db0_keys": _redis_keys(redis_host, redis_port)}


def _postgres_state(conninfo: str) -> object:
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            auto_conf = conn.execute(
                "SELECT pg_read_file('postgresql.auto.conf')").fetchone()[0]
            databases = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database ORDER BY datname").fetchall()]
            roles = [r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles ORDER BY rolname").fetchall()]
            connectable = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname"
            ).fetchall()]
    except psycopg.Error as exc:
        return f"not reachable: {type(exc).__name__}"
    extensions: dict[str, object] = {}
    base = psycopg.conninfo.conninfo_to_dict(conninfo)
    for database in connectable:
        try:
            with psycopg.connect(**{**base, "dbname": database}, autocommit=True,
                                 connect_timeout=3) as conn:
                extensions[database] = [f"{name} {version}" for name, version in conn.execute(
                    "SELECT extname, extversion FROM pg_extension ORDER BY extname")]
        except psycopg.Error as exc:
            extensions[database] = f"not readable: {type(exc).__name__}"
    return {"postgresql.auto.conf": auto_conf, "databases": databases, "roles": roles,
            "extensions": extensions}


def _redis_keys(host: str, port: int) -> object:
    try:
        client = redis.Redis(host=host, port=port, db=0, socket_timeout=3,
                             socket_connect_timeout=3)
        try:
            return sorted(key.decode(errors="replace") for key in client.scan_iter(count=1000))
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"not reachable: {type(exc).__name__}"


def snapshot_differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    differences: list[str] = []

    def walk(path: str, old: object, new: object) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                walk(f"{path}/{key}", old.get(key), new.get(key))
        elif isinstance(old, list) and isinstance(new, list):
            gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
            if gone or added:
                differences.append(f"{path}: removed {gone}, added {added}")
        elif old != new:
            differences.append(f"{path}: {old!r} became {new!r}")

    walk("", before, after)
    return differences


# ---- the servers of one test run ------------------------------------------------------


@dataclass
class SuiteServers:
    """The private PostgreSQL and Redis of this test process, and the user's servers as
    they were before anything started."""

    postgres: PostgresCluster
    redis: RedisServer
    local_conninfo: str
    local_redis_port: int
    local_before: dict[str, object]

    def local_now(self) -> dict[str, object]:
        return local_servers_snapshot(self.local_conninfo, redis_port=self.local_redis_port)

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


_suite: SuiteServers | None = None


def suite_servers() -> SuiteServers:
    """Start this process's private servers on the first call (the same ones after).

    The libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE), ``PSG_TEST_DSN`` and
    ``PSG_SERVER_LOG`` then name the private cluster, and ``PSG_TEST_REDIS_PORT`` the private
    Redis, for this process and every process it starts. The user's own servers are
    recorded first, from the libpq variables and Redis port (``REDIS_PORT``, default 6379)
    this process was started with.
    """
    global _suite
    if _suite is not None:
        return _suite
    local_conninfo = (f"host={os.environ.get('PGHOST', '127.0.0.1')} "
                      f"port={os.environ.get('PGPORT', '5432')} "
                      f"user={os.environ.get('PGUSER', SUPERUSER)} dbname=postgres")
    local_redis_port = int(os.environ.get("REDIS_PORT", "6379"))
    before = local_servers_snapshot(local_conninfo, redis_port=local_redis_port)
    postgres = PostgresCluster.start()
    try:
        redis_server = RedisServer.start()
    except BaseException:
        postgres.stop()
        raise
    for name in ("PGHOSTADDR", "PGSERVICE", "PGPASSWORD", "PGOPTIONS", "PGSSLMODE"):
        os.environ.pop(name, None)
    os.environ.update(postgres.libpq_env())
    os.environ["PSG_TEST_DSN"] = postgres.dsn()
    os.environ["PSG_SERVER_LOG"] = str(postgres.log_path)
    os.environ["PSG_TEST_REDIS_PORT"] = str(redis_server.port)
    _suite = SuiteServers(postgres, redis_server, local_conninfo, local_redis_port, before)
    return _suite


def stop_suite_servers() -> None:
    global _suite
    if _suite is not None:
        _suite.stop()
        _suite = None


def private_redis_port() -> int:
    """The private Redis of this test run (``suite_servers()`` must have started it)."""
    return int(os.environ["PSG_TEST_REDIS_PORT"])


# ---- the reaper ---------------------------------------------------------------------------


def _reap(argv: list[str]) -> int:
    """Wait for stdin to close; unless told all is done, stop the cluster and the
    processes and remove the paths."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--pids", default="")
    parser.add_argument("--pg-datadir", default="")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.stdin.buffer.read() == REAPER_DONE:
        return 0
    if args.pg_datadir:
        _stop_postgres(Path(args.pg_datadir))
    for pid in filter(None, args.pids.split(",")):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    for path in args.paths:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["reap"]:
        sys.exit(_reap(sys.argv[2:]))
    sys.exit("usage: python -m tests.servers reap [--pids P,...] [--pg-datadir D] PATH...")
