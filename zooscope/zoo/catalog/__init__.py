"""The zoo catalog: models, datasets, embeddings, failures, settings, indices and claims in SQL.

One file per job: `engine` (the database, schema version, transactions, locks), `schema` (the tables and their
migrations), `claims` (concurrent writers' row claims), `rows` (`Catalog`: the rows themselves), `records` (the
typed rows it returns).
"""

from zooscope.zoo.catalog.claims import DEFAULT_LEASE_S, new_owner
from zooscope.zoo.catalog.engine import SCHEMA_VERSION
from zooscope.zoo.catalog.records import (
    ClaimRecord,
    DatasetRecord,
    EmbeddingRecord,
    FailureRecord,
    IndexRecord,
    ModelRecord,
)
from zooscope.zoo.catalog.rows import Catalog, SubjectGoneError, params_hash

__all__ = ["DEFAULT_LEASE_S", "SCHEMA_VERSION", "Catalog", "ClaimRecord", "DatasetRecord", "EmbeddingRecord",
           "FailureRecord", "IndexRecord", "ModelRecord", "SubjectGoneError", "new_owner", "params_hash"]
