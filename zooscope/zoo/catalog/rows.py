"""The catalog's rows: models, datasets, embeddings, failures, settings and index records.

Absent keys. ``model``, ``dataset`` and ``layer`` of an embedding or failure are stored as ``""`` when absent (and
returned as ``None``): SQL treats NULLs as distinct, so a unique constraint over NULLable columns would not stop
duplicates of a dataset-only embedding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zooscope._validation import ZooscopeInputError, unknown_name_error
from zooscope.zoo.catalog.claims import CatalogClaims
from zooscope.zoo.catalog.engine import _key, _now, _row
from zooscope.zoo.catalog.records import DatasetRecord, EmbeddingRecord, FailureRecord, IndexRecord, ModelRecord
from zooscope.zoo.catalog.schema import (
    datasets_table,
    embeddings_table,
    failures_table,
    indices_table,
    models_table,
    settings_table,
)
from zooscope.zoo.integrity import validate_name

__all__ = ["Catalog", "SubjectGoneError", "params_hash"]

_RECORDS = {"models": ModelRecord, "datasets": DatasetRecord}


class SubjectGoneError(ZooscopeInputError):
    """A row for a model or dataset that is not in the catalog (e.g. removed while it was being embedded)."""


def params_hash(params: Mapping[str, Any] | None) -> str:
    """sha256 of the canonical JSON of ``params`` (sorted keys): equal parameter dicts hash equal."""
    text = json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Catalog(CatalogClaims):
    """What the zoo holds: one SQL database, written one transaction at a time.

    Parameters
    ----------
    url : str
        An SQLAlchemy URL: ``"sqlite:///abs/path/catalog.sqlite"`` or ``"postgresql://user@host/db"``.
    readonly : bool, default=False
        Refuse writes; SQLite is opened with ``mode=ro`` (see `zooscope.zoo.catalog.engine`).

    Raises
    ------
    ZooscopeInputError
        If the catalog was written by a newer zooscope (its schema version is above `SCHEMA_VERSION`).

    Examples
    --------
    >>> cat = Catalog("sqlite://")                       # in memory
    >>> cat.add_model("tiny", spec="zooscope.zoo.models:small_cnn", kwargs={"num_classes": 10})
    1
    >>> cat.get_model("tiny").kwargs
    {'num_classes': 10}
    """

    def _names(self, table: sa.Table) -> list[str]:
        return [r[0] for r in self._read(sa.select(table.c.name).order_by(table.c.name))]

    def _get_named(self, table: sa.Table, what: str, name: str) -> Any:
        rows = self._read(sa.select(table).where(table.c.name == name))
        if not rows:
            raise unknown_name_error(what, name, self._names(table))
        return _row(rows[0], _RECORDS[table.name])

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
        values = self._model_values(spec=spec, kwargs=kwargs, checkpoint=checkpoint,
                                    checkpoint_sha256=checkpoint_sha256, trained_on=trained_on, metrics=metrics,
                                    tags=tags, input_shape=input_shape)
        return self._add_named(models_table, "model", name, values, replace)

    @staticmethod
    def _model_values(*, spec: str, kwargs: dict | None = None, checkpoint: str | Path | None = None,
                      checkpoint_sha256: str | None = None, trained_on: str | None = None,
                      metrics: dict | None = None, tags: list | dict | None = None,
                      input_shape: Iterable[int] | None = None) -> dict[str, Any]:
        return dict(
            spec=str(spec), kwargs=dict(kwargs or {}), checkpoint=None if checkpoint is None else str(checkpoint),
            checkpoint_sha256=checkpoint_sha256, trained_on=trained_on, metrics=dict(metrics or {}),
            tags=tags if tags is not None else [],
            input_shape=None if input_shape is None else [int(s) for s in input_shape],
        )

    def replace_model(self, name: str, **values: Any) -> tuple[int, list[EmbeddingRecord]]:
        """Overwrite the record of model ``name`` (same id.

        ``values`` as `add_model` takes them) and delete its embedding rows and failures, in ONE transaction:
        a kill leaves the old model or the new, never neither. Returns (its id, the deleted embedding rows:
        the caller deletes their files and index entries).
        """
        validate_name(name, "model")
        new = self._model_values(**values)
        t, e = models_table, embeddings_table
        with self._write() as conn:
            rid = self._lock_named(conn, t, name)
            if rid is None:
                raise unknown_name_error("model", name, [])
            rows = [_row(r, EmbeddingRecord, keyed=("model", "dataset", "layer"))
                    for r in conn.execute(sa.select(e).where(e.c.model == name))]
            conn.execute(e.delete().where(e.c.model == name))
            conn.execute(failures_table.delete().where(failures_table.c.model == name))
            conn.execute(t.update().where(t.c.id == rid).values(**new))
        return int(rid), rows

    @staticmethod
    def _lock_named(conn: Any, table: sa.Table, name: str) -> int | None:
        """Return the id of ``name`` in ``table``, its row locked until the transaction ends.

        (PostgreSQL ``FOR SHARE``; SQLite's write transactions are serialised already), so a concurrent delete
        waits for our commit.
        """
        stmt = sa.select(table.c.id).where(table.c.name == name)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(read=True)
        return conn.execute(stmt).scalar()

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

    def get_model(self, name: str) -> ModelRecord:
        """Return the model's record; an unknown name raises with the closest names."""
        return self._get_named(models_table, "model", name)

    def models(self) -> list[ModelRecord]:
        """Every model record, sorted by name."""
        return [_row(r, ModelRecord) for r in self._read(sa.select(models_table).order_by(models_table.c.name))]

    def remove_model(self, name: str) -> list[EmbeddingRecord]:
        """Delete a model, its embedding rows and failures in one transaction; returns the embedding rows.

        The caller deletes the returned rows' vectors from the store and their ids from the indices.
        """
        return self._remove_named(models_table, "model", name, embeddings_table.c.model)

    def _remove_named(self, table: sa.Table, what: str, name: str, col: sa.Column) -> list[EmbeddingRecord]:
        self._get_named(table, what, name)
        with self._write() as conn:
            rows = [_row(r, EmbeddingRecord, keyed=("model", "dataset", "layer"))
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

    def get_dataset(self, name: str) -> DatasetRecord:
        """Return the dataset's record; an unknown name raises with the closest names."""
        return self._get_named(datasets_table, "dataset", name)

    def datasets(self) -> list[DatasetRecord]:
        """Every dataset record, sorted by name."""
        return [_row(r, DatasetRecord) for r in self._read(sa.select(datasets_table).order_by(datasets_table.c.name))]

    def remove_dataset(self, name: str) -> list[EmbeddingRecord]:
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
        SubjectGoneError
            If the model or dataset is not (or no longer) in the catalog: checked in the same transaction as the
            insert, so a row for a removed model is never committed.
        """
        row = dict(kind=kind, model=_key(model), dataset=_key(dataset), layer=_key(layer), params=dict(params),
                   params_hash=params_hash(params), vector_key=str(vector_key), dim=int(dim),
                   code_version=str(code_version), created=_now(), sha256=sha256)
        try:
            with self._write() as conn:
                for table, what, name in ((models_table, "model", model), (datasets_table, "dataset", dataset)):
                    if name and self._lock_named(conn, table, name) is None:
                        raise SubjectGoneError(f"The {what} {name!r} is not in the zoo (removed meanwhile?); its "
                                               f"{kind} vector was not recorded.")
                return int(conn.execute(embeddings_table.insert().values(**row)).inserted_primary_key[0])
        except sa.exc.IntegrityError:
            raise ZooscopeInputError(
                f"An embedding of kind {kind!r} for model={model!r}, dataset={dataset!r}, layer={layer!r} with "
                f"these params is already recorded. Check has_embedding() first, or remove_embeddings() it."
            ) from None

    def embeddings(
        self, kind: str | None = None, model: str | None = None, dataset: str | None = None,
        layer: str | None = None, *, ids: Iterable[int] | None = None,
    ) -> list[EmbeddingRecord]:
        """Embedding rows (records with id, kind, model, dataset, layer, params, params_hash, vector_key, dim, …).

        Each filter left as None matches anything (``ids``: only these row ids); rows are in id order.
        """
        t = embeddings_table
        stmt = sa.select(t).order_by(t.c.id)
        for col, val in ((t.c.kind, kind), (t.c.model, model), (t.c.dataset, dataset), (t.c.layer, layer)):
            if val is not None:
                stmt = stmt.where(col == val)
        if ids is None:
            return [_row(r, EmbeddingRecord, keyed=("model", "dataset", "layer")) for r in self._read(stmt)]
        ids = sorted({int(i) for i in ids})
        out: list[EmbeddingRecord] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            part = stmt.where(t.c.id.in_(ids[start:start + 500]))
            out += [_row(r, EmbeddingRecord, keyed=("model", "dataset", "layer")) for r in self._read(part)]
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

    def failures(self) -> list[FailureRecord]:
        """Return recorded failures (kind, model, dataset, error, attempts, created), oldest first."""
        stmt = sa.select(failures_table).order_by(failures_table.c.id)
        return [_row(r, FailureRecord, keyed=("model", "dataset")) for r in self._read(stmt)]

    def clear_failure(self, *, kind: str, model: str | None = None, dataset: str | None = None) -> None:
        """Forget a recorded failure (no error if there is none)."""
        t = failures_table
        with self._write() as conn:
            conn.execute(t.delete().where(t.c.kind == kind, t.c.model == _key(model), t.c.dataset == _key(dataset)))

    # -- settings ---------------------------------------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        """Return a JSON setting, or ``default`` when unset."""
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

    def get_index(self, kind: str, policy: str) -> IndexRecord | None:
        """Return the record of (kind, policy)'s index, or None when none was saved."""
        t = indices_table
        rows = self._read(sa.select(t).where(t.c.kind == kind, t.c.policy == policy))
        return _row(rows[0], IndexRecord) if rows else None

    def indices(self) -> list[IndexRecord]:
        """Every index record."""
        return [_row(r, IndexRecord) for r in self._read(sa.select(indices_table).order_by(indices_table.c.id))]

    def remove_index(self, kind: str, policy: str) -> None:
        """Forget the record of (kind, policy)'s index (the file is the caller's)."""
        t = indices_table
        with self._write() as conn:
            conn.execute(t.delete().where(t.c.kind == kind, t.c.policy == policy))
