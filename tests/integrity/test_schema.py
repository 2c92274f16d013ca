"""Schema step 3 (embeddings.sha256): a v1 catalog is migrated on a writable open; its old rows read unverified."""

from __future__ import annotations

import sqlite3

from zooscope.zoo.catalog import SCHEMA_VERSION, Catalog


def test_a_v1_catalog_gains_the_sha256_column(tmp_path):
    path = tmp_path / "catalog.sqlite"
    cat = Catalog(f"sqlite:///{path}")
    cat.add_model("m", spec="a:b")
    cat.add_model("n", spec="a:b")
    cat.add_embedding(kind="cka", model="m", params={}, vector_key="0" * 32, dim=3, code_version="1")
    cat.close()
    with sqlite3.connect(path) as con:  # make it what zooscope 0.x (schema 1) wrote
        con.execute("ALTER TABLE embeddings DROP COLUMN sha256")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (1)")
    cat = Catalog(f"sqlite:///{path}")
    assert cat.schema_version == SCHEMA_VERSION >= 3  # step 3 of MIGRATIONS adds embeddings.sha256
    (row,) = cat.embeddings()
    assert row.sha256 is None and row.vector_key == "0" * 32
    cat.add_embedding(kind="cka", model="n", params={}, vector_key="1" * 32, dim=3, code_version="1", sha256="ab")
    assert [r.sha256 for r in cat.embeddings()] == [None, "ab"]
