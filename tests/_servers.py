"""Throwaway servers for tests: a private PostgreSQL cluster (and the "skip here, fail in CI" rule).

`PostgresServer.start()` runs ``initdb`` in a fresh temp folder, then ``pg_ctl start`` on a free loopback port with
the socket in that folder, as an unprivileged user: PostgreSQL refuses to run as root, so under root (CI
containers) the commands run as ``nobody`` via ``setpriv`` (or ``runuser``), with the folder chowned to it.
Authentication is ``trust`` on 127.0.0.1 only, superuser ``zooscope``. `stop()` (also registered with `atexit`)
stops the server immediately and deletes the folder. Each test gets its own database (`new_database`).

Set ``ZOOSCOPE_TEST_POSTGRES_URL=postgresql+psycopg://user@host:port/db`` to use an existing server instead
(databases are created and dropped in it).

`require(what, reason)`: ``pytest.skip(reason)`` on a developer machine, ``pytest.fail`` when ``CI`` is set
(``.ci/run`` exports ``CI=true``), so a missing PostgreSQL or Ray cannot pass CI silently.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BINARIES = ("initdb", "pg_ctl", "postgres")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip (developer machine) or fail (CI) because a server or package is missing."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bindir() -> Path | None:
    """The folder holding initdb/pg_ctl/postgres: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    on_path = [shutil.which(b) for b in PG_BINARIES]
    if all(on_path):
        return Path(os.path.realpath(on_path[0])).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if all(Path(d, b).is_file() for b in PG_BINARIES):
            return Path(d)
    return None


def _as_unprivileged() -> tuple[list[str], int | None, int | None]:
    """Command prefix that drops root to ``nobody`` (and its uid/gid), or nothing when not root."""
    if os.geteuid() != 0:
        return [], None, None
    import pwd

    pw = pwd.getpwnam("nobody")
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
    elif shutil.which("runuser"):
        prefix = ["runuser", "-u", "nobody", "--"]
    else:
        raise RuntimeError("running as root without setpriv or runuser: cannot drop to an unprivileged user")
    return prefix, pw.pw_uid, pw.pw_gid


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1:<free port>; `url(db)` gives an SQLAlchemy psycopg URL."""

    _counter = itertools.count()

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = bool(durable)  # False (tests): fsync and synchronous_commit off, for speed
        self.port = free_port()
        self.user = "zooscope"
        self.folder = Path(tempfile.mkdtemp(prefix="zooscope-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.started = False
        self._prefix, uid, gid = _as_unprivileged()
        if uid is not None:
            os.chown(self.folder, uid, gid)
            os.chmod(self.folder, 0o700)
        self._env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC", "PGTZ": "UTC", "HOME": str(self.folder)}

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*self._prefix, *cmd], env=self._env, cwd=self.folder, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self) -> PostgresServer:
        r = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                      "--encoding=UTF8", *(() if self.durable else ("--no-sync",)))
        if r.returncode:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stderr[-2000:]}")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
                "-c max_connections=100")
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                      "-w", "-t", "60", "start")
        if r.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed ({r.returncode}): {r.stderr[-1000:]}\n{log}")
        self.started = True
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def new_database(self, prefix: str = "zoo") -> str:
        """Create an empty database and return its URL."""
        return _create_database(self.admin_conninfo(), self.url, prefix)


class ExternalPostgres:
    """An existing server from ``ZOOSCOPE_TEST_POSTGRES_URL``; each test still gets a new database."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self._url = make_url(url)
        if not self._url.drivername.startswith("postgresql"):
            raise ValueError(f"ZOOSCOPE_TEST_POSTGRES_URL must be a postgresql URL; got {url!r}")
        self._url = self._url.set(drivername="postgresql+psycopg")

    def url(self, database: str = "postgres") -> str:
        return self._url.set(database=database).render_as_string(hide_password=False)

    def admin_conninfo(self) -> str:
        u = self._url
        parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password,
                 "dbname": u.database or "postgres"}
        return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)

    def new_database(self, prefix: str = "zoo") -> str:
        return _create_database(self.admin_conninfo(), self.url, prefix)

    def stop(self) -> None:
        pass


def _create_database(conninfo: str, url_of, prefix: str) -> str:
    import psycopg

    name = f"{prefix}_{os.getpid()}_{next(PostgresServer._counter)}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name built above from digits and the caller's prefix
    return url_of(name)


def start_postgres():
    """A running server (external or private), or skip/fail (`unavailable`) with the reason it cannot be had."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'zooscope[pg]'); PostgreSQL catalog tests need it")
    external = os.environ.get("ZOOSCOPE_TEST_POSTGRES_URL")
    if external:
        return ExternalPostgres(external)
    bindir = find_pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the Debian "
                    "'postgresql' package (.ci/run does) or set ZOOSCOPE_TEST_POSTGRES_URL")
    server = PostgresServer(bindir)
    try:
        return server.start()
    except Exception as e:
        server.stop()
        if in_ci():
            raise
        pytest.skip(f"could not start a throwaway PostgreSQL: {e}")
