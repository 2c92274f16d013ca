"""The SQL catalog: CRUD, unique names, embeddings, failures, settings, indices, schema version and migrations,
claims, durability. Every test taking `cat` / `catalog_url` runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import datetime as dt
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from zooscope import ZooscopeInputError
from zooscope.zoo.catalog import SCHEMA_VERSION, Catalog, new_owner, params_hash
from zooscope.zoo.catalog.schema import MIGRATIONS, metadata, models_table


@pytest.fixture
def cat(catalog_url):
    c = Catalog(catalog_url)
    yield c
    c.close()


def test_for_folder_creates_sqlite_in_wal_mode(tmp_path):
    cat = Catalog.for_folder(tmp_path / "zoo")
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
    assert m.id == mid and m.spec == "timm:mobilenetv3_small_050"
    assert m.kwargs == {"num_classes": 10, "in_chans": 1} and m.metrics == {"acc": 0.9}
    assert m.tags == ["small"] and m.input_shape == (1, 28, 28) and m.trained_on == "digits"
    assert m.created.endswith("+00:00")
    cat.add_model("a-first", spec="x:y")
    assert [r.name for r in cat.models()] == ["a-first", "mnv3"]
    cat.update_model("mnv3", metrics={"acc": 0.95})
    assert cat.get_model("mnv3").metrics == {"acc": 0.95}
    with pytest.raises(ZooscopeInputError, match="valid fields"):
        cat.update_model("mnv3", name="other")


def test_model_names_are_unique_unless_replace(cat):
    mid = cat.add_model("m", spec="a:b")
    with pytest.raises(ZooscopeInputError, match=r"already in the zoo.*replace=True"):
        cat.add_model("m", spec="c:d")
    assert cat.add_model("m", spec="c:d", replace=True) == mid
    assert cat.get_model("m").spec == "c:d" and len(cat.models()) == 1


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
    assert d.id == did and d.size == 1437 and d.input_shape == (1, 8, 8)
    assert d.meta == {"split": "train"} and d.probe_sha256 == "cd" * 32
    assert [r.name for r in cat.datasets()] == ["digits"]
    with pytest.raises(ZooscopeInputError, match="already"):
        cat.add_dataset("digits", source="x.npz", size=1, num_classes=None, input_shape=None)


def _emb(cat, **kw):
    """An embedding row (its model / dataset registered first: a row for an unknown one is refused)."""
    row = {**dict(kind="cka", model="m", layer="fc", params={"n": 256}, vector_key="k" * 32, dim=8,
                  code_version="1"), **kw}
    if row.get("model") and not cat.has_model(row["model"]):
        cat.add_model(row["model"], spec="a:b")
    if row.get("dataset") and row["dataset"] not in {d.name for d in cat.datasets()}:
        cat.add_dataset(row["dataset"], source="x.npz", size=1, num_classes=None, input_shape=None)
    return cat.add_embedding(**row)


def test_a_row_for_a_model_or_dataset_not_in_the_catalog_is_never_committed(cat):
    from zooscope.zoo.catalog import SubjectGoneError

    with pytest.raises(SubjectGoneError, match="'ghost'"):
        cat.add_embedding(kind="cka", model="ghost", params={}, vector_key="k" * 32, dim=8, code_version="1")
    with pytest.raises(SubjectGoneError, match="'nodata'"):
        cat.add_embedding(kind="t", dataset="nodata", params={}, vector_key="k" * 32, dim=8, code_version="1")
    _emb(cat)
    cat.remove_model("m")
    with pytest.raises(SubjectGoneError):  # removed: the row of a late writer is refused in its transaction
        cat.add_embedding(kind="cka", model="m", params={}, vector_key="k" * 32, dim=8, code_version="1")
    assert cat.embeddings() == []


def test_replace_model_is_one_transaction(cat):
    _emb(cat)
    rid = cat.get_model("m").id
    new_id, rows = cat.replace_model("m", spec="c:d", kwargs={"w": 2})
    assert new_id == rid and len(rows) == 1 and cat.embeddings() == []
    assert cat.get_model("m").spec == "c:d" and cat.get_model("m").kwargs == {"w": 2}


def test_embedding_rows_and_filters(cat):
    cat.add_model("m", spec="a:b")
    e1 = _emb(cat)
    e2 = _emb(cat, layer="conv1")
    e3 = _emb(cat, kind="task2vec", model=None, dataset="digits", layer=None, params={})
    rows = cat.embeddings()
    assert [r.id for r in rows] == [e1, e2, e3]
    assert rows[0].params == {"n": 256} and rows[0].params_hash == params_hash({"n": 256})
    assert rows[2].model is None and rows[2].layer is None and rows[2].dataset == "digits"
    assert [r.id for r in cat.embeddings(kind="cka", layer="fc")] == [e1]
    assert [r.id for r in cat.embeddings(dataset="digits")] == [e3]
    assert cat.has_embedding(kind="cka", model="m")
    assert cat.has_embedding(kind="cka", model="m", params_hash=params_hash({"n": 256}))
    assert not cat.has_embedding(kind="cka", model="m", params_hash=params_hash({"n": 128}))
    assert cat.has_embedding(kind="task2vec", dataset="digits")
    assert not cat.has_embedding(kind="task2vec", model="m")
    cat.remove_embeddings([e1, 999])
    assert [r.id for r in cat.embeddings()] == [e2, e3]


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
    assert sorted(r.id for r in removed) == [e1, e2] and removed[0].vector_key == "k" * 32
    assert [r.id for r in cat.embeddings()] == [keep]
    assert cat.failures() == [] and [r.name for r in cat.models()] == ["other"]
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
    assert [r.id for r in cat.remove_dataset("d")] == [e]
    assert cat.datasets() == [] and cat.embeddings() == []


def test_failures_record_count_and_clear(cat):
    cat.record_failure(kind="cka", model="m", error="OOM")
    cat.record_failure(kind="cka", model="m", error="OOM again")
    cat.record_failure(kind="task2vec", dataset="d", error="one class")
    f = cat.failures()
    assert [(r.kind, r.model, r.dataset, r.attempts) for r in f] == [
        ("cka", "m", None, 2), ("task2vec", None, "d", 1)]
    assert f[0].error == "OOM again"
    cat.clear_failure(kind="cka", model="m")
    cat.clear_failure(kind="cka", model="nothing")
    assert [r.kind for r in cat.failures()] == ["task2vec"]


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
    assert (rec.sha256, rec.n) == ("b" * 64, 4) and len(cat.indices()) == 1
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
    import zooscope.zoo.catalog.rows as mod

    # the model delete is the last statement of the transaction: make it fail after the embeddings went
    monkeypatch.setattr(mod, "models_table", sa.Table("models_missing", sa.MetaData(), sa.Column("name", sa.String)))
    monkeypatch.setattr(Catalog, "_get_named", lambda *a, **k: {})
    with pytest.raises((sa.exc.OperationalError, sa.exc.ProgrammingError)):  # no such table (SQLite | PostgreSQL)
        cat.remove_model("m")
    monkeypatch.undo()
    assert [r.id for r in cat.embeddings()] == [e] and cat.get_model("m").name == "m"


def test_newer_schema_is_refused(cat, catalog_url):
    with cat.engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(ZooscopeInputError, match=r"newer than this zooscope.*Upgrade"):
        Catalog(catalog_url)


def _version_1_catalog(url):
    """A catalog as zooscope's schema version 1 wrote it (frozen here, as released), with one model and one
    embedding row."""
    md = sa.MetaData()
    when = sa.DateTime(timezone=True)
    sa.Table("schema_version", md, sa.Column("version", sa.Integer, nullable=False))
    sa.Table("models", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("name", sa.String(255), nullable=False, unique=True), sa.Column("spec", sa.Text, nullable=False),
             sa.Column("kwargs", sa.JSON, nullable=False), sa.Column("checkpoint", sa.Text),
             sa.Column("checkpoint_sha256", sa.String(64)), sa.Column("trained_on", sa.String(255)),
             sa.Column("metrics", sa.JSON, nullable=False), sa.Column("tags", sa.JSON, nullable=False),
             sa.Column("input_shape", sa.JSON), sa.Column("created", when, nullable=False), sqlite_autoincrement=True)
    sa.Table("datasets", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("name", sa.String(255), nullable=False, unique=True),
             sa.Column("source", sa.Text, nullable=False), sa.Column("size", sa.Integer, nullable=False),
             sa.Column("num_classes", sa.Integer), sa.Column("input_shape", sa.JSON),
             sa.Column("probe_sha256", sa.String(64)), sa.Column("meta", sa.JSON, nullable=False),
             sa.Column("created", when, nullable=False), sqlite_autoincrement=True)
    sa.Table("embeddings", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             *[sa.Column(c, sa.String(255), nullable=False) for c in ("kind", "model", "dataset", "layer")],
             sa.Column("params", sa.JSON, nullable=False), sa.Column("params_hash", sa.String(64), nullable=False),
             sa.Column("vector_key", sa.String(64), nullable=False), sa.Column("dim", sa.Integer, nullable=False),
             sa.Column("code_version", sa.String(64), nullable=False), sa.Column("created", when, nullable=False),
             sa.UniqueConstraint("kind", "model", "dataset", "layer", "params_hash", name="uq_embedding"),
             sqlite_autoincrement=True)
    sa.Table("failures", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             *[sa.Column(c, sa.String(255), nullable=False) for c in ("kind", "model", "dataset")],
             sa.Column("error", sa.Text, nullable=False), sa.Column("attempts", sa.Integer, nullable=False),
             sa.Column("created", when, nullable=False),
             sa.UniqueConstraint("kind", "model", "dataset", name="uq_failure"))
    sa.Table("settings", md, sa.Column("key", sa.String(255), primary_key=True), sa.Column("value", sa.JSON))
    sa.Table("indices", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             *[sa.Column(c, sa.String(255), nullable=False) for c in ("kind", "policy")],
             sa.Column("path", sa.Text, nullable=False), sa.Column("sha256", sa.String(64), nullable=False),
             sa.Column("n", sa.Integer, nullable=False), sa.Column("factory", sa.String(255), nullable=False),
             sa.Column("created", when, nullable=False), sa.UniqueConstraint("kind", "policy", name="uq_index"))
    engine = sa.create_engine(url)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        md.create_all(conn)
        conn.execute(md.tables["schema_version"].insert().values(version=1))
        conn.execute(md.tables["models"].insert().values(name="old", spec="a:b", kwargs={"w": 1}, metrics={},
                                                         tags=[], created=now))
        conn.execute(md.tables["embeddings"].insert().values(
            kind="cka", model="old", dataset="", layer="", params={"n": 1}, params_hash=params_hash({"n": 1}),
            vector_key="k" * 32, dim=4, code_version="1", created=now))
    engine.dispose()


def test_an_older_catalog_is_upgraded_and_answers(catalog_url):
    _version_1_catalog(catalog_url)
    cat = Catalog(catalog_url)  # a writable open applies every migration step
    assert cat.schema_version == SCHEMA_VERSION == max(MIGRATIONS)
    with cat.engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT version FROM schema_version")).scalars()) == \
            list(range(1, SCHEMA_VERSION + 1))
        assert set(metadata.tables) <= set(sa.inspect(conn).get_table_names())
        for name, table in metadata.tables.items():  # every column the code declares is there now
            assert {c.name for c in table.columns} <= {c["name"] for c in sa.inspect(conn).get_columns(name)}
    assert cat.get_model("old").kwargs == {"w": 1}
    assert [r.model for r in cat.embeddings(kind="cka")] == ["old"]
    assert cat.claim(kind="cka", model="new", owner=new_owner())  # the table version 2 added works
    cat.add_model("new", spec="a:b")
    assert [m.name for m in Catalog(catalog_url).models()] == ["new", "old"]  # reopened: nothing to do
    assert Catalog(catalog_url).upgrade() == []


def test_claims_split_pairs_between_writers_and_expire(cat):
    a, b = new_owner(), "elsewhere:1:tok"  # b: a writer on another host (only its lease can end its claims)
    assert cat.claim(kind="cka", model="m", owner=a)
    assert not cat.claim(kind="cka", model="m", owner=b)
    assert cat.claim(kind="cka", model="m", owner=a)  # one's own claim: renewed
    assert cat.claim(kind="task2vec", dataset="d", owner=b, lease_s=0.2)
    assert {(c.kind, c.owner) for c in cat.claims(live_only=True)} == {("cka", a), ("task2vec", b)}
    time.sleep(0.4)
    assert [c.owner for c in cat.claims(live_only=True)] == [a]
    assert cat.claim(kind="task2vec", dataset="d", owner=a)  # b's lease ran out: taken over
    cat.release_claims(a, kind="cka", model="m")
    assert cat.claim(kind="cka", model="m", owner=b)
    cat.renew_claims(b)
    cat.release_claims(a)
    assert [(c.kind, c.owner) for c in cat.claims()] == [("cka", b)]


def test_a_dead_writers_claims_are_taken_over_at_once(cat, catalog_url):
    script = textwrap.dedent("""
        import sys
        from zooscope.zoo.catalog import Catalog, new_owner
        assert Catalog(sys.argv[1]).claim(kind="cka", model="m", owner=new_owner(), lease_s=3600)
    """)
    proc = subprocess.run([sys.executable, "-c", script, catalog_url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(cat.claims()) == 1 and cat.claims(live_only=True) == []  # its process (this host) is gone
    assert cat.claim(kind="cka", model="m", owner=new_owner())


def test_two_handles_share_one_catalog(catalog_url):
    a, b = Catalog(catalog_url), Catalog(catalog_url)
    a.add_model("m", spec="a:b")
    assert b.get_model("m").spec == "a:b"
    a.close()
    b.close()


def test_killed_writer_loses_nothing_committed(catalog_url, catalog_backend):
    """A process killed mid-transaction: its committed rows survive, its open transaction vanishes."""
    script = textwrap.dedent(f"""
        import os
        import sqlalchemy as sa
        from zooscope.zoo.catalog import Catalog
        from zooscope.zoo.catalog.schema import models_table
        cat = Catalog({catalog_url!r})
        cat.add_model("committed", spec="a:b")
        with cat._write() as conn:
            conn.execute(models_table.insert().values(name="half", spec="a:b", kwargs={{}}, metrics={{}},
                                                      tags=[], created=sa.func.now()))
            os._exit(9)   # killed: no rollback, no close
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    cat = Catalog(catalog_url)
    assert [m.name for m in cat.models()] == ["committed"]
    cat.add_model("after", spec="a:b")  # not locked by the dead writer
    cat.close()
    if catalog_backend == "sqlite":
        with sqlite3.connect(catalog_url.removeprefix("sqlite:///")) as db:
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
