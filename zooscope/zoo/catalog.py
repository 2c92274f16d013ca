"""The zoo catalog: models, datasets, embeddings, failures, settings and indices in SQL (SQLAlchemy Core).

SQLite (``<zoo>/catalog.sqlite``) is the default; a ``postgresql://`` URL works unchanged because the schema uses
portable types only (``JSON``, ``String``, ``Integer``, ``DateTime``) and no dialect-specific SQL.

Durability. Every write is one transaction (``engine.begin()``): it commits whole or not at all. On SQLite the
database runs in WAL mode with ``synchronous=FULL`` and a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` (the write lock is taken up front, so two writers queue instead of failing on a lock upgrade).
A writer killed mid-transaction therefore loses only its own uncommitted transaction.

Read-only. ``Catalog(url, readonly=True)`` (what `Zoo.open` uses for a zoo it cannot write) opens SQLite with
``?mode=ro``, sets no journal mode and refuses every write with a `ZooscopeInputError`; opening never creates
tables. Readers of a writable catalog do not write either: the schema is only created when it is missing.

Schema versions and migrations: see `zooscope.zoo._catalog_schema` (a version table; an older catalog is
upgraded step by step when opened writable; adding a column is one step there).

Concurrent writers: row claims. Several `Zoo.embed` processes (or machines) may write one catalog. Before
computing a pair, a writer *claims* it (`claim`): one row in ``claims`` keyed by (kind, model, dataset) with its
owner id (``host:pid:token``) and a lease expiry. A claim is taken when no other live claim exists; a claim is
*dead* when its lease ran out (`DEFAULT_LEASE_S`, renewed by the owner with `renew_claims` as results arrive) or
when its owner is a process of this host that no longer exists, so a killed writer's pairs are taken over at once
on one machine and after the lease elsewhere. Taking over is a compare-and-set on the old owner, so exactly one
writer wins. Claims, not advisory locks: a claim is an ordinary row, identical on SQLite and PostgreSQL, visible to
`zooscope ls`-style readers, and it survives the connection (a writer commits every result in its own short
transaction, so a session-bound PostgreSQL advisory lock would need one connection held open per pair, and
SQLite has none). The catalog's unique constraint stays the last line: a writer whose lease was taken over and
then loses the insert race discards its own vector (`zooscope.zoo.embedrun`).

Absent keys. ``model``, ``dataset`` and ``layer`` of an embedding or failure are stored as ``""`` when absent (and
returned as ``None``): SQL treats NULLs as distinct, so a unique constraint over NULLable columns would not stop
duplicates of a dataset-only embedding.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from zooscope._validation import ZooscopeInputError, unknown_name_error
from zooscope.zoo._catalog_schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    claims_table,
    datasets_table,
    embeddings_table,
    failures_table,
    indices_table,
    metadata,
    models_table,
    schema_version_table,
    settings_table,
)
from zooscope.zoo.integrity import validate_name

__all__ = ["DEFAULT_LEASE_S", "SCHEMA_VERSION", "Catalog", "new_owner", "params_hash"]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_LEASE_S = 600.0


def new_owner() -> str:
    """A writer's claim owner id: ``host:pid:token`` (the token tells two runs of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_dead(owner: str) -> bool:
    """True when ``owner`` names a process of this host that is gone (its claims can be taken over at once)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def params_hash(params: Mapping[str, Any] | None) -> str:
    """sha256 of the canonical JSON of ``params`` (sorted keys): equal parameter dicts hash equal."""
    text = json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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


def _row(r: Any, *, keyed: tuple[str, ...] = ()) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in keyed:
        d[k] = _unkey(d[k])
    if "created" in d:
        d["created"] = _iso(d["created"])
    if d.get("input_shape") is not None:
        d["input_shape"] = tuple(d["input_shape"])
    return d


def _unwritable_folder(folder: Path) -> bool:
    """The folder may not be written (by us, or by anyone per its mode bits, as after ``chmod -R a-w``)."""
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


class Catalog:
    """What the zoo holds: one SQL database, written one transaction at a time.

    Parameters
    ----------
    url : str
        An SQLAlchemy URL: ``"sqlite:///abs/path/catalog.sqlite"`` or ``"postgresql://user@host/db"``.
    readonly : bool, default=False
        Refuse writes; SQLite is opened with ``mode=ro`` (see the module docstring).

    Raises
    ------
    ZooscopeInputError
        If the catalog was written by a newer zooscope (its schema version is above `SCHEMA_VERSION`).

    Examples
    --------
    >>> cat = Catalog("sqlite://")                       # in memory
    >>> cat.add_model("tiny", spec="zooscope.zoo.models:small_cnn", kwargs={"num_classes": 10})
    1
    >>> cat.get_model("tiny")["kwargs"]
    {'num_classes': 10}
    """

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
    def for_folder(cls, folder: str | Path, *, readonly: bool = False) -> Catalog:
        """The SQLite catalog ``<folder>/catalog.sqlite`` (a writable open creates the folder if needed)."""
        folder = Path(folder).expanduser().resolve()
        if not readonly:
            folder.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{folder / 'catalog.sqlite'}", readonly=readonly)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing -------------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: commits on success, rolls back on any exception."""
        if self.readonly:
            raise ZooscopeInputError(
                f"The catalog {self!r} is open read-only (the zoo folder is not writable); this needs a writable "
                "zoo. Fix the folder's permissions, or run read-only verbs only (similar, select, ls, check).")
        with self.engine.connect().execution_options(zooscope_write=True) as conn, conn.begin():
            yield conn

    def _read(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def _stored_versions(self) -> list[int] | None:
        """The schema versions recorded, or None when the catalog has no schema yet (reads only)."""
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
        """Apply the missing migration steps (`zooscope.zoo._catalog_schema.MIGRATIONS`); returns those applied."""
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

    def _names(self, table: sa.Table) -> list[str]:
        return [r[0] for r in self._read(sa.select(table.c.name).order_by(table.c.name))]

    def _get_named(self, table: sa.Table, what: str, name: str) -> dict[str, Any]:
        rows = self._read(sa.select(table).where(table.c.name == name))
        if not rows:
            raise unknown_name_error(what, name, self._names(table))
        return _row(rows[0])

    def _add_named(self, table: sa.Table, what: str, name: str, values: dict[str, Any], replace: bool) -> int:
        validate_name(name, what)  # names are data, never paths (zooscope.zoo.integrity)
        with self._write() as conn:
            old = conn.execute(sa.select(table.c.id).where(table.c.name == name)).scalar()
            if old is not None and not replace:
                raise ZooscopeInputError(
                    f"A {what} named {name!r} is already in the zoo. Pass replace=True to overwrite its "
                    f"record, or choose another name."
                )
            if old is not None:  # overwrite in place: the id (and so the rows that name it) stays
                conn.execute(table.update().where(table.c.id == old).values(**values))
                return int(old)
            return int(conn.execute(table.insert().values(name=name, created=_now(), **values))
                       .inserted_primary_key[0])

    # -- models -----------------------------------------------------------------------------------------------
    def add_model(
        self, name: str, *, spec: str, kwargs: dict | None = None, checkpoint: str | Path | None = None,
        checkpoint_sha256: str | None = None, trained_on: str | None = None, metrics: dict | None = None,
        tags: list | dict | None = None, input_shape: Iterable[int] | None = None, replace: bool = False,
    ) -> int:
        """Record a model; returns its id.

        ``replace=True`` overwrites the record of an existing model of that name (same id) and leaves its
        embedding rows alone: call `remove_model` first when the checkpoint changed and they are stale.
        """
        values = dict(
            spec=str(spec), kwargs=dict(kwargs or {}), checkpoint=None if checkpoint is None else str(checkpoint),
            checkpoint_sha256=checkpoint_sha256, trained_on=trained_on, metrics=dict(metrics or {}),
            tags=tags if tags is not None else [],
            input_shape=None if input_shape is None else [int(s) for s in input_shape],
        )
        return self._add_named(models_table, "model", name, values, replace)

    def has_model(self, name: str) -> bool:
        """Whether a model of that name is recorded."""
        return bool(self._read(sa.select(models_table.c.id).where(models_table.c.name == name).limit(1)))

    def count_models(self) -> int:
        """How many models are recorded (one SQL count, no rows read)."""
        return int(self._read(sa.select(sa.func.count()).select_from(models_table))[0][0])

    def update_model(self, name: str, /, **fields: Any) -> None:
        """Change some fields of a model's record (e.g. ``metrics=…`` after training)."""
        allowed = set(models_table.c.keys()) - {"id", "name", "created"}
        bad = sorted(set(fields) - allowed)
        if bad:
            raise ZooscopeInputError(f"Cannot update {bad} of a model; valid fields: {sorted(allowed)}.")
        if fields.get("input_shape") is not None:
            fields["input_shape"] = [int(s) for s in fields["input_shape"]]
        self.get_model(name)
        with self._write() as conn:
            conn.execute(models_table.update().where(models_table.c.name == name).values(**fields))

    def get_model(self, name: str) -> dict[str, Any]:
        """The model's record as a dict; an unknown name raises with the closest names."""
        return self._get_named(models_table, "model", name)

    def models(self) -> list[dict[str, Any]]:
        """Every model record, sorted by name."""
        return [_row(r) for r in self._read(sa.select(models_table).order_by(models_table.c.name))]

    def remove_model(self, name: str) -> list[dict[str, Any]]:
        """Delete a model, its embedding rows and failures in one transaction; returns the embedding rows.

        The caller deletes the returned rows' vectors from the store and their ids from the indices.
        """
        return self._remove_named(models_table, "model", name, embeddings_table.c.model)

    def _remove_named(self, table: sa.Table, what: str, name: str, col: sa.Column) -> list[dict[str, Any]]:
        self._get_named(table, what, name)
        with self._write() as conn:
            rows = [_row(r, keyed=("model", "dataset", "layer"))
                    for r in conn.execute(sa.select(embeddings_table).where(col == name))]
            conn.execute(embeddings_table.delete().where(col == name))
            conn.execute(failures_table.delete().where(failures_table.c[col.name] == name))
            conn.execute(table.delete().where(table.c.name == name))
        return rows

    # -- datasets ---------------------------------------------------------------------------------------------
    def add_dataset(
        self, name: str, *, source: str, size: int, num_classes: int | None, input_shape: Iterable[int] | None,
        probe_sha256: str | None = None, meta: dict | None = None, replace: bool = False,
    ) -> int:
        """Record a dataset (its source spec, size and the sha256 of its materialised probe); returns its id."""
        values = dict(
            source=str(source), size=int(size), num_classes=None if num_classes is None else int(num_classes),
            input_shape=None if input_shape is None else [int(s) for s in input_shape],
            probe_sha256=probe_sha256, meta=dict(meta or {}),
        )
        return self._add_named(datasets_table, "dataset", name, values, replace)

    def get_dataset(self, name: str) -> dict[str, Any]:
        """The dataset's record; an unknown name raises with the closest names."""
        return self._get_named(datasets_table, "dataset", name)

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset record, sorted by name."""
        return [_row(r) for r in self._read(sa.select(datasets_table).order_by(datasets_table.c.name))]

    def remove_dataset(self, name: str) -> list[dict[str, Any]]:
        """Delete a dataset, its embedding rows and failures in one transaction; returns the embedding rows."""
        return self._remove_named(datasets_table, "dataset", name, embeddings_table.c.dataset)

    # -- embeddings -------------------------------------------------------------------------------------------
    def add_embedding(
        self, *, kind: str, model: str | None = None, dataset: str | None = None, layer: str | None = None,
        params: dict, vector_key: str, dim: int, code_version: str, sha256: str | None = None,
    ) -> int:
        """Record one stored vector; returns its id, which is the vector's id in the FAISS index.

        ``sha256``: of the vector file's bytes (`VectorStore.put_hashed`); readers verify it.

        Raises
        ------
        ZooscopeInputError
            If (kind, model, dataset, layer, params) is already recorded.
        """
        row = dict(kind=kind, model=_key(model), dataset=_key(dataset), layer=_key(layer), params=dict(params),
                   params_hash=params_hash(params), vector_key=str(vector_key), dim=int(dim),
                   code_version=str(code_version), created=_now(), sha256=sha256)
        try:
            with self._write() as conn:
                return int(conn.execute(embeddings_table.insert().values(**row)).inserted_primary_key[0])
        except sa.exc.IntegrityError:
            raise ZooscopeInputError(
                f"An embedding of kind {kind!r} for model={model!r}, dataset={dataset!r}, layer={layer!r} with "
                f"these params is already recorded. Check has_embedding() first, or remove_embeddings() it."
            ) from None

    def embeddings(
        self, kind: str | None = None, model: str | None = None, dataset: str | None = None,
        layer: str | None = None, *, ids: Iterable[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Embedding rows (dicts with id, kind, model, dataset, layer, params, params_hash, vector_key, dim, …).

        Each filter left as None matches anything (``ids``: only these row ids); rows are in id order.
        """
        t = embeddings_table
        stmt = sa.select(t).order_by(t.c.id)
        for col, val in ((t.c.kind, kind), (t.c.model, model), (t.c.dataset, dataset), (t.c.layer, layer)):
            if val is not None:
                stmt = stmt.where(col == val)
        if ids is None:
            return [_row(r, keyed=("model", "dataset", "layer")) for r in self._read(stmt)]
        ids = sorted({int(i) for i in ids})
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            part = stmt.where(t.c.id.in_(ids[start:start + 500]))
            out += [_row(r, keyed=("model", "dataset", "layer")) for r in self._read(part)]
        return out

    def has_embedding(
        self, *, kind: str, model: str | None = None, dataset: str | None = None, params_hash: str | None = None
    ) -> bool:
        """Whether any vector of ``kind`` exists for exactly this (model, dataset) (any layer).

        ``params_hash=None`` matches any parameters; pass `params_hash(params)` to match one setting.
        """
        t = embeddings_table
        stmt = sa.select(t.c.id).where(t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        if params_hash is not None:
            stmt = stmt.where(t.c.params_hash == params_hash)
        return bool(self._read(stmt.limit(1)))

    def remove_embeddings(self, ids: Iterable[int]) -> None:
        """Delete embedding rows by id (unknown ids are ignored)."""
        ids = [int(i) for i in ids]
        with self._write() as conn:
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                conn.execute(embeddings_table.delete().where(embeddings_table.c.id.in_(ids[start:start + 500])))

    # -- failures ---------------------------------------------------------------------------------------------
    def record_failure(self, *, kind: str, model: str | None = None, dataset: str | None = None, error: str) -> None:
        """Remember that embedding (kind, model, dataset) failed; a repeat updates the error and counts it."""
        t = failures_table
        where = (t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        for attempt in range(2):  # another writer may insert the same failure between our read and insert
            try:
                with self._write() as conn:
                    seen = conn.execute(sa.select(t.c.attempts).where(*where)).scalar()
                    if seen is None:
                        conn.execute(t.insert().values(kind=kind, model=_key(model), dataset=_key(dataset),
                                                       error=str(error), attempts=1, created=_now()))
                    else:
                        conn.execute(t.update().where(*where).values(error=str(error), attempts=seen + 1,
                                                                     created=_now()))
                return
            except sa.exc.IntegrityError:
                if attempt:
                    raise

    def failures(self) -> list[dict[str, Any]]:
        """Recorded failures (kind, model, dataset, error, attempts, created), oldest first."""
        stmt = sa.select(failures_table).order_by(failures_table.c.id)
        return [_row(r, keyed=("model", "dataset")) for r in self._read(stmt)]

    def clear_failure(self, *, kind: str, model: str | None = None, dataset: str | None = None) -> None:
        """Forget a recorded failure (no error if there is none)."""
        t = failures_table
        with self._write() as conn:
            conn.execute(t.delete().where(t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset)))

    # -- settings ---------------------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        """A JSON setting, or ``default`` when unset."""
        rows = self._read(sa.select(settings_table.c.value).where(settings_table.c.key == key))
        return rows[0][0] if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` (overwrites)."""
        try:
            json.dumps(value)
        except TypeError as e:
            raise ZooscopeInputError(f"Setting {key!r} must be JSON-serialisable: {e}.") from None
        t = settings_table
        with self._write() as conn:
            if conn.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                conn.execute(t.insert().values(key=key, value=value))
            else:
                conn.execute(t.update().where(t.c.key == key).values(value=value))

    # -- indices ----------------------------------------------------------------------------------------------
    def record_index(self, *, kind: str, policy: str, path: str | Path, sha256: str, n: int, factory: str) -> None:
        """Record (or update) the FAISS file of (kind, policy) with its sha256, checked before every load."""
        t = indices_table
        values = dict(path=str(path), sha256=str(sha256), n=int(n), factory=str(factory), created=_now())
        with self._write() as conn:
            where = (t.c.kind == kind, t.c.policy == policy)
            if conn.execute(sa.select(t.c.id).where(*where)).first() is None:
                conn.execute(t.insert().values(kind=kind, policy=policy, **values))
            else:
                conn.execute(t.update().where(*where).values(**values))

    def get_index(self, kind: str, policy: str) -> dict[str, Any] | None:
        """The record of (kind, policy)'s index, or None when none was saved."""
        t = indices_table
        rows = self._read(sa.select(t).where(t.c.kind == kind, t.c.policy == policy))
        return _row(rows[0]) if rows else None

    def indices(self) -> list[dict[str, Any]]:
        """Every index record."""
        return [_row(r) for r in self._read(sa.select(indices_table).order_by(indices_table.c.id))]

    def remove_index(self, kind: str, policy: str) -> None:
        """Forget the record of (kind, policy)'s index (the file is the caller's)."""
        t = indices_table
        with self._write() as conn:
            conn.execute(t.delete().where(t.c.kind == kind, t.c.policy == policy))

    # -- claims (concurrent writers; see the module docstring) --------------------------------------------------
    def claim(self, *, kind: str, model: str | None = None, dataset: str | None = None, owner: str,
              lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Claim (kind, model, dataset) for ``owner`` for ``lease_s`` seconds; False when another live writer
        holds it. Re-claiming one's own pair renews it."""
        t = claims_table
        where = (t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        expires = _now() + dt.timedelta(seconds=float(lease_s))
        try:
            with self._write() as conn:
                cur = conn.execute(sa.select(t.c.owner, t.c.expires).where(*where)).first()
                if cur is None:
                    conn.execute(t.insert().values(kind=kind, model=_key(model), dataset=_key(dataset),
                                                   owner=owner, expires=expires))
                    return True
                held_by, until = cur
                if until.tzinfo is None:
                    until = until.replace(tzinfo=dt.UTC)
                if held_by != owner and until > _now() and not _owner_dead(held_by):
                    return False
                # compare-and-set on the previous owner: of two writers taking over one dead claim, one wins
                res = conn.execute(t.update().where(*where, t.c.owner == held_by).values(owner=owner,
                                                                                         expires=expires))
                return res.rowcount == 1
        except sa.exc.IntegrityError:  # PostgreSQL: another writer inserted the same claim first
            return False

    def renew_claims(self, owner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Push back the expiry of every claim of ``owner`` (a writer calls this as its results arrive)."""
        t = claims_table
        with self._write() as conn:
            conn.execute(t.update().where(t.c.owner == owner)
                         .values(expires=_now() + dt.timedelta(seconds=float(lease_s))))

    def release_claims(self, owner: str, *, kind: str | None = None, model: str | None = None,
                       dataset: str | None = None) -> None:
        """Drop ``owner``'s claim on one pair (``kind`` given), or all of its claims."""
        t = claims_table
        stmt = t.delete().where(t.c.owner == owner)
        if kind is not None:
            stmt = stmt.where(t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset))
        with self._write() as conn:
            conn.execute(stmt)

    def claims(self, *, live_only: bool = False) -> list[dict[str, Any]]:
        """Claim rows (kind, model, dataset, owner, expires); ``live_only``: those whose owner may still write."""
        rows = [_row(r, keyed=("model", "dataset")) for r in self._read(sa.select(claims_table))]
        for r in rows:
            r["expires"] = _iso(r["expires"])
        if live_only:
            now = _now()
            rows = [r for r in rows if dt.datetime.fromisoformat(r["expires"]) > now and not _owner_dead(r["owner"])]
        return rows

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock across processes for ``name`` (e.g. updating one kind's FAISS index): a PostgreSQL
        session advisory lock, or for SQLite a `fcntl.flock` on a file beside the database (one machine)."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
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
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
