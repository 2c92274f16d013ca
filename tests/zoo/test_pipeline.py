"""The zoo's query path: FAISS == brute force, incremental indices == a fresh build, read-only queries."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._validation import ZooscopeInputError
from zooscope.index import VectorIndex
from zooscope.zoo.indices import IndexKey

LAYERS = ["l0", "l1", "l2"]
SCORE_TOL = 1e-9


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _add_synthetic(zoo, names, stacks, probe_set="P"):
    """Models with 'cka' rows of the given (L, D) unit stacks, as Zoo.embed would record them."""
    for name, stack in zip(names, stacks, strict=True):
        zoo.catalog.add_model(name, spec=SPEC, kwargs=KW, input_shape=(1, 8, 8))
        key = zoo.store.put(stack.astype(np.float32), kind="cka")
        request = {"kind": "cka", "version": "1", "params": {"debiased": False}, "probe_set": probe_set}
        zoo.catalog.add_embedding(kind="cka", model=name, vector_key=key, dim=stack.shape[1], code_version="1",
                                  params={"request_hash": name, "request": request, "layers": LAYERS,
                                          "penultimate": "l1"})


def _clustered(rng, n_clusters, size, dim, noise=0.3):
    centres = _unit(rng.normal(size=(n_clusters, len(LAYERS), dim)))
    stacks = [_unit(centres[c] + noise / np.sqrt(dim) * rng.normal(size=(len(LAYERS), dim)))
              for c in range(n_clusters) for _ in range(size)]
    return stacks


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """200 models (40 clusters of 5) of 64-d vectors, plus 60 models on another probe set, nearer in space."""
    rng = np.random.default_rng(0)
    zoo = Zoo.create(tmp_path_factory.mktemp("synthetic"))
    stacks = _clustered(rng, 40, 5, 64)
    _add_synthetic(zoo, [f"m{i:03d}" for i in range(200)], stacks)
    other = [_unit(s + 0.01 * rng.normal(size=s.shape)) for s in stacks[:60]]  # near-copies, other probe set
    _add_synthetic(zoo, [f"q{i:03d}" for i in range(60)], other, probe_set="Q")
    zoo.embed_context().indices.sync("cka")
    return zoo


@pytest.mark.parametrize("rule", ["layer", "best_match"])
def test_faiss_answers_equal_brute_force_on_200_vectors(synthetic, rule):
    assert len(synthetic.similar_context().indices.keys("cka")) == 4  # 2 policies x 2 probe sets
    for q in [f"m{i:03d}" for i in range(0, 200, 13)]:
        fast = synthetic.similar(q, k=5, rule=rule)  # 5 * 4 = 20 candidates out of 200
        exact = synthetic.similar(q, k=5, rule=rule, exact=True)
        assert len(fast) == 5
        assert fast["model"].tolist() == exact["model"].tolist()
        np.testing.assert_allclose(fast["score"], exact["score"], atol=SCORE_TOL)
        assert all(m.startswith("m") for m in fast["model"])  # only its own probe set, and still k rows


def test_k_rows_come_back_when_k_comparable_models_exist(synthetic):
    got = synthetic.similar("q000", k=59)
    assert len(got) == 59 and all(m.startswith("q") for m in got["model"])


def test_faiss_with_jl_projection_finds_the_cluster(tmp_path):
    rng = np.random.default_rng(1)
    zoo = Zoo.create(tmp_path / "z")
    stacks = _clustered(rng, 20, 6, 4096, noise=0.5)  # 4096 > JL_MAX_DIM: indexed through the JL projection
    _add_synthetic(zoo, [f"m{i:03d}" for i in range(120)], stacks)
    zoo.embed_context().indices.sync("cka")
    assert zoo.similar_context().indices.load(IndexKey("cka", "penultimate", _group(zoo, "m000"))).dim == 256
    for q in ("m000", "m031", "m119"):
        fast, exact = zoo.similar(q, k=5), zoo.similar(q, k=5, exact=True)
        assert fast["model"].tolist() == exact["model"].tolist()
        np.testing.assert_allclose(fast["score"], exact["score"], atol=SCORE_TOL)


def _group(zoo, model):
    from zooscope.zoo.vectors import comparability_group

    return comparability_group(zoo.catalog.embeddings(kind="cka", model=model)[0])


def test_incremental_add_and_remove_equal_a_fresh_build(tmp_path):
    rng = np.random.default_rng(2)
    zoo = Zoo.create(tmp_path / "z")
    stacks = _clustered(rng, 30, 5, 64)
    _add_synthetic(zoo, [f"m{i:03d}" for i in range(100)], stacks[:100])
    writer = zoo.embed_context().indices
    writer.sync("cka")
    files_before = set((zoo.root / "indices").glob("*.faiss"))
    for name in [f"m{i:03d}" for i in range(0, 100, 7)]:
        zoo.remove_model(name)  # removes in place
    _add_synthetic(zoo, [f"n{i:03d}" for i in range(50)], stacks[100:])
    writer.sync("cka")  # adds in place
    group = _group(zoo, "m001")
    queries = _unit(rng.normal(size=(10, 64))).astype(np.float32)
    for policy in ("penultimate", "layers"):
        key = IndexKey("cka", policy, group)
        incremental = writer.load(key)
        vecs, ids = writer.expected(key)
        fresh = VectorIndex.build(vecs, ids)
        assert sorted(incremental.ids().tolist()) == sorted(fresh.ids().tolist())
        d_inc, i_inc = incremental.search(queries, 7)
        d_new, i_new = fresh.search(queries, 7)
        np.testing.assert_array_equal(i_inc, i_new)
        np.testing.assert_allclose(d_inc, d_new, atol=1e-6)
    files_after = set((zoo.root / "indices").glob("*.faiss"))
    assert len(files_after) == 2 and not files_after & files_before  # content-addressed: old files deleted
    assert zoo.check().empty


def test_a_reader_always_finds_the_file_its_row_names(synthetic):
    reader = synthetic.similar_context().indices
    for key in reader.keys("cka"):
        rec = reader.record(key)
        assert (synthetic.root / rec.path).is_file()
        assert rec.sha256[:16] in rec.path


# -- opening ----------------------------------------------------------------------------------------------------
def test_open_never_creates_a_zoo(tmp_path):
    missing = tmp_path / "no-such-zoo"
    with pytest.raises(ZooscopeInputError, match=re.escape(str(missing))):
        Zoo.open(missing)
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooscopeInputError, match=r"catalog\.sqlite"):
        Zoo.open(tmp_path / "empty")
    assert Zoo.open(tmp_path / "made", create=True).models().empty
    assert Zoo.open(tmp_path / "made").writable


def test_a_mistyped_zoo_exits_2_with_the_path(tmp_path):
    missing = tmp_path / "typo-zoo"
    for verb in (["similar", "m"], ["ls"], ["select", "d"], ["check"]):
        res = subprocess.run([sys.executable, "-m", "zooscope.cli", *verb, "--zoo", str(missing)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (verb, res.stderr)
        assert str(missing) in " ".join(res.stderr.split())
    assert not missing.exists()


# -- queries never write ----------------------------------------------------------------------------------------
def _tree(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if "cache" not in p.parts}


def _chmod_tree(root, writable):
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    """Two embedded models; the target dataset 'low' is added after embed, so it has no stored task vector."""
    root = tmp_path_factory.mktemp("rozoo") / "zoo"
    zoo = Zoo.create(root)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    for i, path in enumerate(checkpoints(2)):
        zoo.add_model(f"cnn{i}", SPEC, path, kwargs=KW, trained_on="digits")
    zoo.embed(kinds=("cka",))
    zoo.add_dataset("low", "builtin:digits?classes=0,1,2,3,4&n=200")
    return root


def test_queries_on_a_read_only_zoo_answer_and_write_nothing(small_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CACHE", str(tmp_path / "user-cache"))
    before = _tree(small_zoo)
    time.sleep(0.05)
    _chmod_tree(small_zoo, writable=False)
    try:
        zoo = Zoo.open(small_zoo)
        assert not zoo.writable and zoo.catalog.readonly
        assert zoo.similar("cnn0", k=1)["model"].tolist() == ["cnn1"]
        table = zoo.select("low", k=2, methods=("task2vec",))  # the target's task vector: computed in memory
        assert set(table["model"]) == {"cnn0", "cnn1"} and np.isfinite(table["task_distance"]).all()
        assert zoo.check().empty
        assert len(zoo.duplicates(threshold=0.5)) == 2
        assert not zoo.models().empty
        with pytest.raises(ZooscopeInputError, match="read-only"):
            zoo.add_dataset("more", "builtin:digits")
    finally:
        _chmod_tree(small_zoo, writable=True)
    assert _tree(small_zoo) == before
    assert any((tmp_path / "user-cache").rglob("*.npy"))  # what it computed went to the user's cache


def test_select_right_after_add_dataset_leaves_catalog_and_indices_alone(small_zoo, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(small_zoo, root)
    zoo = Zoo.open(root)
    rows, indices = zoo.catalog.embeddings(), zoo.catalog.indices()
    before = {p: v for p, v in _tree(root).items() if not p.name.startswith("catalog.sqlite")}
    zoo.select("low", k=2, methods=("task2vec",))
    zoo.similar("cnn1", k=1)
    assert zoo.catalog.embeddings() == rows and zoo.catalog.indices() == indices
    after = {p: v for p, v in _tree(root).items() if not p.name.startswith("catalog.sqlite")}
    assert after == before
    assert any((root / "cache" / "vectors" / "task2vec").glob("*.npy"))
    report = zoo.embed(kinds=("task2vec",), datasets=["low"])  # embed persists it
    assert report["status"].tolist() == ["embedded"]
    assert os.path.isdir(root / "cache")
