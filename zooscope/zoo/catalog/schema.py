"""The catalog's tables (SQLAlchemy Core, portable types only.

SQLite and PostgreSQL run the same DDL), and the migrations that bring an older catalog up to them.

Versions. The ``schema_version`` table holds one row per version applied. A new catalog gets every table below
(``create_all``) and the row `SCHEMA_VERSION`. An older one is upgraded when opened for writing
(`zooscope.zoo.catalog.Catalog`): each missing step of `MIGRATIONS`, in order, inside one write transaction that
also records its version (PostgreSQL and SQLite both run DDL inside transactions, so a killed upgrade leaves the
old version whole); two processes upgrading at once serialise on the write lock and the second finds nothing to
do. A catalog from a newer zooscope is refused; a read-only open of an older one says to open it writable once.

Changing the schema = one migration step:

1. change the table below (e.g. a new ``sa.Column("sha256", _Hash)`` on ``embeddings``; new columns must be
   NULLable or have a ``server_default``, since existing rows get them too);
2. add the step ``N: lambda conn: add_column(conn, embeddings_table, "sha256")`` to `MIGRATIONS`, N = the last
   version + 1 (a new table: ``N: lambda conn: create_table(conn, results_table)``). `SCHEMA_VERSION` is
   ``max(MIGRATIONS)``, nothing else to bump;
3. tests/zoo/test_catalog.py::test_an_older_catalog_is_upgraded_and_answers opens a version-1 catalog built by
   hand and checks it is upgraded (it follows every step, nothing to change there).

Steps are idempotent (`add_column` / `create_table` skip what exists), so two branches that each added a step can
be merged by renumbering one of them.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

_Name = sa.String(255)
_Hash = sa.String(64)
_When = sa.DateTime(timezone=True)

schema_version_table = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

models_table = sa.Table(
    "models", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _Name, nullable=False, unique=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("kwargs", sa.JSON, nullable=False),
    sa.Column("checkpoint", sa.Text),
    sa.Column("checkpoint_sha256", _Hash),
    sa.Column("trained_on", _Name),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("input_shape", sa.JSON),
    sa.Column("created", _When, nullable=False),
    sqlite_autoincrement=True,
)

datasets_table = sa.Table(
    "datasets", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _Name, nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("num_classes", sa.Integer),
    sa.Column("input_shape", sa.JSON),
    sa.Column("probe_sha256", _Hash),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("created", _When, nullable=False),
    sqlite_autoincrement=True,
)

embeddings_table = sa.Table(
    "embeddings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # = the vector id in FAISS
    sa.Column("kind", _Name, nullable=False),
    sa.Column("model", _Name, nullable=False),  # "" when absent (see `zooscope.zoo.catalog.rows`)
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("layer", _Name, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("params_hash", _Hash, nullable=False),
    sa.Column("vector_key", sa.String(64), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("created", _When, nullable=False),
    sa.Column("sha256", _Hash),  # of the vector file's bytes, verified on every read (NULL: written before v3)
    sa.UniqueConstraint("kind", "model", "dataset", "layer", "params_hash", name="uq_embedding"),
    sa.Index("ix_embeddings_model", "model"),
    sa.Index("ix_embeddings_dataset", "dataset"),
    sqlite_autoincrement=True,  # ids are FAISS ids: never reuse one after a delete (PostgreSQL never does)
)

failures_table = sa.Table(
    "failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", _Name, nullable=False),
    sa.Column("model", _Name, nullable=False),
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created", _When, nullable=False),
    sa.UniqueConstraint("kind", "model", "dataset", name="uq_failure"),
)

settings_table = sa.Table(
    "settings", metadata,
    sa.Column("key", _Name, primary_key=True),
    sa.Column("value", sa.JSON),
)

indices_table = sa.Table(
    "indices", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", _Name, nullable=False),
    sa.Column("policy", _Name, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", _Hash, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("factory", _Name, nullable=False),
    sa.Column("created", _When, nullable=False),
    sa.UniqueConstraint("kind", "policy", name="uq_index"),
)

# Row claims of the concurrent writers (`Catalog.claim`): one row per (kind, model, dataset) being computed, with its
# owner (host:pid:token) and the time the lease runs out. Added by schema version 2.
claims_table = sa.Table(
    "claims", metadata,
    sa.Column("kind", _Name, nullable=False),
    sa.Column("model", _Name, nullable=False),
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("owner", _Name, nullable=False),
    sa.Column("expires", _When, nullable=False),
    sa.PrimaryKeyConstraint("kind", "model", "dataset", name="pk_claims"),
)


# Fine-tuning outcomes recorded by the user (`zooscope.zoo.history`). Added by schema version 4.
results_table = sa.Table(
    "results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", _Name, nullable=False),
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("metric", _Name, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("created", _When, nullable=False),
    sa.UniqueConstraint("model", "dataset", "metric", name="uq_result"),
)


# -- migrations ------------------------------------------------------------------------------------------------------
def add_column(conn: Connection, table: sa.Table, name: str) -> None:
    """``ALTER TABLE … ADD COLUMN`` for ``table.c[name]`` as declared above (skipped when already there)."""
    if name in {c["name"] for c in sa.inspect(conn).get_columns(table.name)}:
        return
    ddl = sa.schema.CreateColumn(table.c[name]).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(table.name)} ADD COLUMN {ddl}")


def create_table(conn: Connection, table: sa.Table) -> None:
    """``CREATE TABLE`` (and its indexes) for a table declared above (skipped when already there)."""
    table.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    # 1: the first released schema (models, datasets, embeddings, failures, settings, indices)
    2: lambda conn: create_table(conn, claims_table),
    3: lambda conn: add_column(conn, embeddings_table, "sha256"),  # integrity: vector files verified on read
    4: lambda conn: create_table(conn, results_table),  # recorded fine-tuning outcomes (select's history)
}

SCHEMA_VERSION = max(MIGRATIONS)
