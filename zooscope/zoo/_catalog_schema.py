"""The catalog's tables (SQLAlchemy Core, portable types only: SQLite and PostgreSQL run the same DDL).

Bump `SCHEMA_VERSION` with any change here; `zooscope.zoo.catalog.Catalog` refuses a catalog from a newer
version.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 1

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
    sa.Column("model", _Name, nullable=False),  # "" when absent (see module docstring)
    sa.Column("dataset", _Name, nullable=False),
    sa.Column("layer", _Name, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("params_hash", _Hash, nullable=False),
    sa.Column("vector_key", sa.String(64), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("created", _When, nullable=False),
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

# Fine-tuning outcomes recorded by the user (`zooscope.zoo.history`). An additive table: a catalog written before
# it existed has none, and `history` creates it (checkfirst) on the first `record_result`, so no version bump.
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
