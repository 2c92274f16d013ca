"""The catalog's engine: one SQL database (SQLAlchemy Core), its schema version, transactions and locks.

SQLite (``<zoo>/catalog.sqlite``) is the default; a ``postgresql://`` URL works unchanged because the schema uses
portable types only (``JSON``, ``String``, ``Integer``, ``DateTime``) and no dialect-specific SQL.

Durability. Every write is one transaction (``engine.begin()``): it commits whole or not at all. On SQLite the
database runs in WAL mode with ``synchronous=FULL`` and a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` (the write lock is taken up front, so two writers queue instead of failing on a lock upgrade).
A writer killed mid-transaction therefore loses only its own uncommitted transaction.

Read-only. ``Catalog(url, readonly=True)`` (what `Zoo.open` uses for a zoo it cannot write) opens SQLite with
``?mode=ro``, sets no journal mode and refuses every write with a `ZooscopeInputError`; opening never creates
tables. Readers of a writable catalog do not write either: the schema is only created when it is missing.

Schema versions and migrations: see `zooscope.zoo.catalog.schema` (a version table; an older catalog is
upgraded step by step when opened writable; adding a column is one step there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog.schema import MIGRATIONS, SCHEMA_VERSION, metadata, schema_version_table

__all__ = ["SCHEMA_VERSION", "CatalogEngine"]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# what SQLite and PostgreSQL say when a write cannot reach the disk (the database itself is fine)
_WRITE_FAILURES = ("database or disk is full", "disk i/o error", "no space left", "could not extend file",
                   "unable to open database file", "readonly database", "read-only file system")
R = TypeVar("R")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: Any) -> str | None:
    """Timestamps come back naive from SQLite and aware from PostgreSQL: return UTC ISO strings from both."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


def _key(v: str | None) -> str:
    return "" if v is None else str(v)


def _unkey(v: str) -> str | None:
    return None if v == "" else v


def _row(r: Any, record: type[R], *, keyed: tuple[str, ...] = ()) -> R:
    """One SQL row as its typed ``record``: absent keys as None, times as UTC ISO strings, shapes as tuples."""
    d = dict(r._mapping)
    for k in keyed:
        d[k] = _unkey(d[k])
    for k in ("created", "expires"):
        if k in d:
            d[k] = _iso(d[k])
    if d.get("input_shape") is not None:
        d["input_shape"] = tuple(d["input_shape"])
    return record(**d)


def _unwritable_folder(folder: Path) -> bool:
    """Return the folder may not be written (by us, or by anyone per its mode bits, as after ``chmod -R a-w``)."""
    try:
        return not os.access(folder, os.W_OK) or not folder.stat().st_mode & 0o222
    except OSError:
        return True


def _has_wal(db: Path) -> bool:
    """Un-checkpointed writes wait in ``<db>-wal``: an immutable open would not see them."""
    wal = db.with_name(db.name + "-wal")
    return wal.is_file() and wal.stat().st_size > 0


def _sqlite_pragmas(engine: Engine, readonly: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cur = dbapi_conn.cursor()
        if not readonly:  # journal_mode=WAL writes the file header: never on a read-only open
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("zooscope_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class CatalogEngine:
    """The connection side of `zooscope.zoo.catalog.Catalog`: engine, schema, one transaction per write, locks."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = str(url)
        self.readonly = bool(readonly)
        engine_url = self.url
        if self.readonly and self.url.startswith("sqlite:///") and self.url != "sqlite:///":
            path = self.url.removeprefix("sqlite:///").partition("?")[0]
            engine_url = f"sqlite:///file:{path}?mode=ro&uri=true"
            if _unwritable_folder(Path(path).parent) and not _has_wal(Path(path)):
                engine_url += "&immutable=1"  # a WAL database in a folder nobody may write: no -shm to create
        self.engine = sa.create_engine(engine_url)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine, readonly=self.readonly)
        self._open_schema()

    @classmethod
    def for_folder(cls, folder: str | Path, *, readonly: bool = False) -> Self:
        """Return the SQLite catalog ``<folder>/catalog.sqlite`` (a writable open creates the folder if needed)."""
        folder = Path(folder).expanduser().resolve()
        if not readonly:
            folder.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{folder / 'catalog.sqlite'}", readonly=readonly)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        """Enter the context."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Leave the context."""
        self.close()

    def __repr__(self) -> str:
        """Return a short description."""
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing -------------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: commits on success, rolls back on any exception."""
        if self.readonly:
            raise ZooscopeInputError(
                f"The catalog {self!r} is open read-only (the zoo folder is not writable); this needs a writable "
                "zoo. Fix the folder's permissions, or run read-only verbs only (similar, select, ls, check).")
        try:
            with self.engine.connect().execution_options(zooscope_write=True) as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as e:
            raise self.write_error(e) or e from None

    def write_error(self, e: BaseException) -> ZooscopeInputError | None:
        """Return a full disk or an I/O error while writing the catalog.

        As a one-line input error naming the database (not "damaged": the catalog is intact, the write was
        rolled back); None for other errors.
        """
        text = str(getattr(e, "orig", e)).splitlines()[0]
        if not any(s in text.lower() for s in _WRITE_FAILURES):
            return None
        where = self.engine.url.database or self.engine.url.render_as_string(hide_password=True)
        return ZooscopeInputError(f"Writing the zoo catalog {where} failed ({text}): is its disk full or not "
                                  "writable? Nothing was committed and the catalog is intact; free space and run "
                                  "the command again.")

    def _read(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def _stored_versions(self) -> list[int] | None:
        """Return the schema versions recorded, or None when the catalog has no schema yet (reads only)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(schema_version_table.name):
                return None
            return list(conn.execute(sa.select(schema_version_table.c.version)).scalars().all())

    def _open_schema(self) -> None:
        found = self._stored_versions()
        if not found:
            if self.readonly:
                raise ZooscopeInputError(f"{self!r} holds no zoo catalog (no tables), and it is open read-only.")
            with self._write() as conn:
                self._lock_schema(conn)
                metadata.create_all(conn, checkfirst=True)
                found = conn.execute(sa.select(schema_version_table.c.version)).scalars().all()
                if not found:
                    conn.execute(schema_version_table.insert().values(version=SCHEMA_VERSION))
                    return
        version = max(found)
        if version > SCHEMA_VERSION:
            raise ZooscopeInputError(
                f"The catalog at {self!r} has schema version {version}, newer than this zooscope understands "
                f"({SCHEMA_VERSION}). Upgrade zooscope (pip install -U zooscope) to open it."
            )
        if version < SCHEMA_VERSION:
            if self.readonly:
                raise ZooscopeInputError(
                    f"The catalog at {self!r} has schema version {version} and this zooscope needs "
                    f"{SCHEMA_VERSION}; it is upgraded on the first writable open (it is read-only here).")
            self.upgrade()

    def _lock_schema(self, conn: Connection) -> None:
        """Serialise schema creation/upgrades: SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes a lock."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7310001)")

    def upgrade(self) -> list[int]:
        """Apply the missing migration steps (`zooscope.zoo.catalog.schema.MIGRATIONS`); returns those applied."""
        with self._write() as conn:
            self._lock_schema(conn)
            have = max(conn.execute(sa.select(schema_version_table.c.version)).scalars().all())
            steps = [v for v in sorted(MIGRATIONS) if v > have]
            for v in steps:
                log.info("upgrading the catalog schema to version %d", v)
                MIGRATIONS[v](conn)
                conn.execute(schema_version_table.insert().values(version=v))
        return steps

    @property
    def schema_version(self) -> int:
        """The schema version stored in the catalog."""
        return int(max(self._read(sa.select(schema_version_table.c.version)))[0])


    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Return an exclusive lock across processes for ``name`` (e.g.

        updating one kind's FAISS index): a PostgreSQL session advisory lock, or for SQLite a `fcntl.flock` on
        a file beside the database (one machine). A writer that has to wait says so in one warning line, then
        waits.
        """
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    log.warning("waiting for another zooscope writer (%s) to finish", name)
                    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        db = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not db or db == ":memory:":
            yield
            return
        import fcntl

        path = Path(db).with_name(Path(db).name + f".lock-{key & 0xFFFFFFFF:08x}")
        with open(path, "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another writer holds it: say so once, then wait for it
                log.warning("waiting for another zooscope writer (%s) to finish", name)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
