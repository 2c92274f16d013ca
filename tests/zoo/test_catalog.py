"""The SQL catalog: CRUD, unique names, embeddings, failures, settings, indices, schema version, durability."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from zooscope import ZooscopeInputError
from zooscope.zoo._catalog_schema import metadata, models_table
from zooscope.zoo.catalog import SCHEMA_VERSION, Catalog, params_hash


@pytest.fixture
def cat(tmp_path):
    c = Catalog.for_folder(tmp_path / "zoo")
    yield c
    c.close()


def test_for_folder_creates_sqlite_in_wal_mode(tmp_path, cat):
    path = tmp_path / "zoo" / "catalog.sqlite"
    assert path.is_file()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"models", "datasets", "embeddings", "failures", "settings", "indices", "schema_version"} <= tables
    assert cat.schema_version == SCHEMA_VERSION


def test_model_crud_round_trip(cat):
    mid = cat.add_model("mnv3", spec="timm:mobilenetv3_small_050", kwargs={"num_classes": 10, "in_chans": 1},
                        checkpoint="w.safetensors", checkpoint_sha256="ab" * 32, trained_on="digits",
                        metrics={"acc": 0.9}, tags=["small"], input_shape=(1, 28, 28))
    m = cat.get_model("mnv3")
    assert m["id"] == mid and m["spec"] == "timm:mobilenetv3_small_050"
    assert m["kwargs"] == {"num_classes": 10, "in_chans": 1} and m["metrics"] == {"acc": 0.9}
    assert m["tags"] == ["small"] and m["input_shape"] == (1, 28, 28) and m["trained_on"] == "digits"
    assert m["created"].endswith("+00:00")
    cat.add_model("a-first", spec="x:y")
    assert [r["name"] for r in cat.models()] == ["a-first", "mnv3"]
    cat.update_model("mnv3", metrics={"acc": 0.95})
    assert cat.get_model("mnv3")["metrics"] == {"acc": 0.95}
    with pytest.raises(ZooscopeInputError, match="valid fields"):
        cat.update_model("mnv3", name="other")


def test_model_names_are_unique_unless_replace(cat):
    mid = cat.add_model("m", spec="a:b")
    with pytest.raises(ZooscopeInputError, match=r"already in the zoo.*replace=True"):
        cat.add_model("m", spec="c:d")
    assert cat.add_model("m", spec="c:d", replace=True) == mid
    assert cat.get_model("m")["spec"] == "c:d" and len(cat.models()) == 1


def test_unknown_names_suggest_close_ones(cat):
    cat.add_model("resnet18-digits", spec="timm:resnet18")
    cat.add_dataset("digits", source="builtin:digits", size=1437, num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ZooscopeInputError, match="Did you mean 'resnet18-digits'"):
        cat.get_model("resnet18-digit")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'digits'"):
        cat.remove_dataset("digit")
    with pytest.raises(ZooscopeInputError, match="non-empty"):
        cat.add_model("", spec="a:b")


def test_dataset_crud(cat):
    did = cat.add_dataset("digits", source="builtin:digits", size=1437, num_classes=10, input_shape=(1, 8, 8),
                          probe_sha256="cd" * 32, meta={"split": "train"})
    d = cat.get_dataset("digits")
    assert d["id"] == did and d["size"] == 1437 and d["input_shape"] == (1, 8, 8)
    assert d["meta"] == {"split": "train"} and d["probe_sha256"] == "cd" * 32
    assert [r["name"] for r in cat.datasets()] == ["digits"]
    with pytest.raises(ZooscopeInputError, match="already"):
        cat.add_dataset("digits", source="x.npz", size=1, num_classes=None, input_shape=None)


def _emb(cat, **kw):
    base = dict(kind="cka", model="m", layer="fc", params={"n": 256}, vector_key="k" * 32, dim=8,
                code_version="1")
    return cat.add_embedding(**{**base, **kw})


def test_embedding_rows_and_filters(cat):
    cat.add_model("m", spec="a:b")
    e1 = _emb(cat)
    e2 = _emb(cat, layer="conv1")
    e3 = _emb(cat, kind="task2vec", model=None, dataset="digits", layer=None, params={})
    rows = cat.embeddings()
    assert [r["id"] for r in rows] == [e1, e2, e3]
    assert rows[0]["params"] == {"n": 256} and rows[0]["params_hash"] == params_hash({"n": 256})
    assert rows[2]["model"] is None and rows[2]["layer"] is None and rows[2]["dataset"] == "digits"
    assert [r["id"] for r in cat.embeddings(kind="cka", layer="fc")] == [e1]
    assert [r["id"] for r in cat.embeddings(dataset="digits")] == [e3]
    assert cat.has_embedding(kind="cka", model="m")
    assert cat.has_embedding(kind="cka", model="m", params_hash=params_hash({"n": 256}))
    assert not cat.has_embedding(kind="cka", model="m", params_hash=params_hash({"n": 128}))
    assert cat.has_embedding(kind="task2vec", dataset="digits")
    assert not cat.has_embedding(kind="task2vec", model="m")
    cat.remove_embeddings([e1, 999])
    assert [r["id"] for r in cat.embeddings()] == [e2, e3]


def test_params_hash_is_canonical():
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    assert params_hash(None) == params_hash({})


def test_embedding_unique_constraint_including_absent_keys(cat):
    _emb(cat)
    with pytest.raises(ZooscopeInputError, match="already recorded"):
        _emb(cat, vector_key="z" * 32)
    _emb(cat, params={"n": 128})  # other params: a different embedding
    ds = dict(kind="task2vec", model=None, dataset="digits", layer=None, params={})
    _emb(cat, **ds)
    with pytest.raises(ZooscopeInputError, match="already recorded"):  # NULL-safe: '' sentinels
        _emb(cat, **ds)
    assert len(cat.embeddings()) == 3


def test_remove_model_returns_and_deletes_its_rows(cat):
    cat.add_model("m", spec="a:b")
    cat.add_model("other", spec="a:b")
    e1, e2 = _emb(cat), _emb(cat, layer="conv1")
    keep = _emb(cat, model="other")
    cat.record_failure(kind="cka", model="m", error="boom")
    removed = cat.remove_model("m")
    assert sorted(r["id"] for r in removed) == [e1, e2] and removed[0]["vector_key"] == "k" * 32
    assert [r["id"] for r in cat.embeddings()] == [keep]
    assert cat.failures() == [] and [r["name"] for r in cat.models()] == ["other"]
    with pytest.raises(ZooscopeInputError, match="Unknown model"):
        cat.remove_model("m")


def test_embedding_ids_are_never_reused(cat):
    a = _emb(cat)
    b = _emb(cat, layer="x")
    cat.remove_embeddings([b])
    assert _emb(cat, layer="y") > b > a  # FAISS ids must not come back (sqlite AUTOINCREMENT)


def test_remove_dataset_returns_its_rows(cat):
    cat.add_dataset("d", source="builtin:digits", size=10, num_classes=10, input_shape=(1, 8, 8))
    e = _emb(cat, kind="task2vec", model=None, dataset="d", layer=None)
    assert [r["id"] for r in cat.remove_dataset("d")] == [e]
    assert cat.datasets() == [] and cat.embeddings() == []


def test_failures_record_count_and_clear(cat):
    cat.record_failure(kind="cka", model="m", error="OOM")
    cat.record_failure(kind="cka", model="m", error="OOM again")
    cat.record_failure(kind="task2vec", dataset="d", error="one class")
    f = cat.failures()
    assert [(r["kind"], r["model"], r["dataset"], r["attempts"]) for r in f] == [
        ("cka", "m", None, 2), ("task2vec", None, "d", 1)]
    assert f[0]["error"] == "OOM again"
    cat.clear_failure(kind="cka", model="m")
    cat.clear_failure(kind="cka", model="nothing")
    assert [r["kind"] for r in cat.failures()] == ["task2vec"]


def test_settings_round_trip(cat):
    assert cat.get_setting("probe", default="none") == "none"
    value = {"n": 512, "sources": ["builtin:digits"], "nested": {"x": 1.5, "flag": True, "nothing": None}}
    cat.set_setting("probe", value)
    assert cat.get_setting("probe") == value
    cat.set_setting("probe", 3)
    assert cat.get_setting("probe") == 3
    with pytest.raises(ZooscopeInputError, match="JSON-serialisable"):
        cat.set_setting("bad", {1, 2})


def test_index_records_upsert(cat):
    assert cat.get_index("cka", "all") is None
    cat.record_index(kind="cka", policy="all", path="indices/cka__all.faiss", sha256="a" * 64, n=3,
                     factory="IDMap2,Flat")
    cat.record_index(kind="cka", policy="all", path="indices/cka__all.faiss", sha256="b" * 64, n=4,
                     factory="IDMap2,Flat")
    rec = cat.get_index("cka", "all")
    assert (rec["sha256"], rec["n"]) == ("b" * 64, 4) and len(cat.indices()) == 1
    cat.remove_index("cka", "all")
    assert cat.get_index("cka", "all") is None


def test_a_failed_transaction_leaves_nothing(cat):
    with pytest.raises(RuntimeError, match="midway"), cat._write() as conn:
        conn.execute(models_table.insert().values(
            name="ghost", spec="a:b", kwargs={}, metrics={}, tags=[], created=sa.func.now()))
        raise RuntimeError("midway")
    assert cat.models() == []


def test_remove_model_is_atomic(cat, monkeypatch):
    cat.add_model("m", spec="a:b")
    e = _emb(cat)
    import zooscope.zoo.catalog as mod

    # the model delete is the last statement of the transaction: make it fail after the embeddings went
    monkeypatch.setattr(mod, "models_table", sa.Table("models_missing", sa.MetaData(), sa.Column("name", sa.String)))
    monkeypatch.setattr(Catalog, "_get_named", lambda *a, **k: {})
    with pytest.raises(sa.exc.OperationalError):
        cat.remove_model("m")
    monkeypatch.undo()
    assert [r["id"] for r in cat.embeddings()] == [e] and cat.get_model("m")["name"] == "m"


def test_newer_schema_is_refused(tmp_path):
    Catalog.for_folder(tmp_path).close()
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ZooscopeInputError, match=r"newer than this zooscope.*Upgrade"):
        Catalog.for_folder(tmp_path)


def test_two_handles_share_one_catalog(tmp_path):
    a, b = Catalog.for_folder(tmp_path), Catalog.for_folder(tmp_path)
    a.add_model("m", spec="a:b")
    assert b.get_model("m")["spec"] == "a:b"
    a.close()
    b.close()


def test_killed_writer_loses_nothing_committed(tmp_path):
    """A process killed mid-transaction: its committed rows survive, its open transaction vanishes."""
    script = textwrap.dedent(f"""
        import os
        import sqlalchemy as sa
        from zooscope.zoo.catalog import Catalog
        from zooscope.zoo._catalog_schema import models_table
        cat = Catalog.for_folder({str(tmp_path)!r})
        cat.add_model("committed", spec="a:b")
        with cat._write() as conn:
            conn.execute(models_table.insert().values(name="half", spec="a:b", kwargs={{}}, metrics={{}},
                                                      tags=[], created=sa.func.now()))
            os._exit(9)   # killed: no rollback, no close
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    cat = Catalog.for_folder(tmp_path)
    assert [m["name"] for m in cat.models()] == ["committed"]
    cat.add_model("after", spec="a:b")  # not locked by the dead writer
    cat.close()
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_schema_ddl_is_portable_to_postgresql():
    """The same tables compile for PostgreSQL: portable types only, no SQLite-only SQL."""
    dialect = postgresql.dialect()
    for table in metadata.sorted_tables:
        ddl = str(sa.schema.CreateTable(table).compile(dialect=dialect))
        assert "AUTOINCREMENT" not in ddl.upper()
        assert table.name in ddl
    emb = str(sa.schema.CreateTable(metadata.tables["embeddings"]).compile(dialect=dialect))
    assert "SERIAL" in emb and "JSON" in emb and "UNIQUE (kind, model, dataset, layer, params_hash)" in emb
