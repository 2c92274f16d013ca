import pickle

import numpy as np
import pytest
import torch
from zoo_helpers import KW, SPEC, checkpoints, make_zoo

from zooscope import Zoo
from zooscope._io import file_sha256 as sha256_file
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.indices import LAYER_STRIDE, IndexKey
from zooscope.zoo.vectors import comparability_group

SCORE_TOL = 1e-6


@pytest.fixture(scope="module")
def zoo_dir(module_zoo_factory):
    """The zoos of this module, on SQLite and on PostgreSQL: ``zoo_dir("base")`` is the shared embedded one."""
    make_zoo(None, zoo=module_zoo_factory("base"))
    return module_zoo_factory


@pytest.fixture
def zoo(zoo_dir):
    return zoo_dir("base")


def clone_zoo(zoos, name):
    """A zoo of its own for a test that changes it: built like the shared one, under another name."""
    return make_zoo(None, zoo=zoos(name))


def test_add_model_records_sha256_and_input_shape(zoo):
    from zooscope._io import file_sha256 as sha256_file

    rec = zoo.models().set_index("name").loc["cnn1"]
    assert tuple(rec["input_shape"]) == (1, 8, 8)
    assert rec["checkpoint_sha256"] == sha256_file(checkpoints()[1])
    assert zoo.datasets().set_index("name").loc["digits", "num_classes"] == 10


def test_every_model_has_one_cka_row_and_the_index_holds_them(zoo):
    rows = zoo.catalog.embeddings(kind="cka")
    assert sorted(r.model for r in rows) == ["cnn0", "cnn0-copy", "cnn1", "cnn2"]
    assert all(r.params["penultimate"] == "conv3" for r in rows)
    index = zoo.similar_context().indices.load(IndexKey("cka", "penultimate", comparability_group(rows[0])))
    assert sorted(index.ids().tolist()) == sorted(r.id for r in rows)
    assert zoo.check().empty


@pytest.mark.parametrize("rule", ["layer", "best_match"])
def test_faiss_top_k_equals_brute_force(zoo, rule):
    fast = zoo.similar("cnn1", k=3, rule=rule)
    exact = zoo.similar("cnn1", k=3, rule=rule, exact=True)
    assert fast["model"].tolist() == exact["model"].tolist()
    np.testing.assert_allclose(fast["score"], exact["score"], atol=SCORE_TOL)


def test_similar_ranks_the_identical_copy_first_and_never_the_query(zoo):
    table = zoo.similar("cnn0", k=10)
    assert "cnn0" not in table["model"].tolist()
    assert table["model"].iloc[0] == "cnn0-copy"
    assert table["score"].iloc[0] == pytest.approx(1.0, abs=SCORE_TOL)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert (np.diff(table["score"]) <= 0).all()


def test_similar_score_is_the_linear_cka_of_penultimate_layers(zoo):
    from safetensors.torch import load_file

    from zooscope.embed.capture import capture
    from zooscope.measures import linear_cka
    from zooscope.nets.models import build_model

    x = load_file(str(zoo.root / zoo.probe_set((1, 8, 8))["file"]))["x"]
    acts = [capture(build_model(SPEC, KW, p), x, ["conv3"])["conv3"].double().numpy() for p in checkpoints()[:2]]
    table = zoo.similar("cnn0", k=10).set_index("model")
    assert table.loc["cnn1", "score"] == pytest.approx(linear_cka(*acts), abs=SCORE_TOL)


def test_a_new_checkpoint_is_embedded_on_the_fly_and_not_added(zoo):
    before = zoo.models()["name"].tolist()
    table = zoo.similar("query", k=2, arch=SPEC, checkpoint=checkpoints()[2], kwargs=KW)
    assert table["model"].iloc[0] == "cnn2"
    assert table["score"].iloc[0] == pytest.approx(1.0, abs=SCORE_TOL)
    assert zoo.models()["name"].tolist() == before


def test_reopened_zoo_gives_the_same_answers(zoo_dir):
    a = zoo_dir("base").similar("cnn2", k=3)
    b = zoo_dir("base").similar("cnn2", k=3)
    assert a.equals(b)


def test_embed_again_skips_everything(zoo):
    report = zoo.embed(kinds=("cka",))
    assert set(report["status"]) == {"skipped"}


def test_removing_a_model_removes_its_vectors_and_index_entries(zoo_dir, tmp_path):
    zoo = clone_zoo(zoo_dir, f"z-{tmp_path.name}")
    row = zoo.catalog.embeddings(kind="cka", model="cnn2")[0]
    group = comparability_group(row)
    zoo.remove_model("cnn2")
    assert zoo.catalog.embeddings(model="cnn2") == []
    assert row.vector_key not in zoo.store.keys("cka")
    for policy in ("penultimate", "layers"):
        ids = zoo.similar_context().indices.load(IndexKey("cka", policy, group)).ids()
        assert row.id not in ids and row.id not in ids // LAYER_STRIDE
    assert "cnn2" not in zoo.similar("cnn1", k=10)["model"].tolist()
    assert zoo.check().empty


def test_check_reports_a_changed_checkpoint_and_an_orphan_vector(zoo_dir, tmp_path):
    zoo = clone_zoo(zoo_dir, f"z-{tmp_path.name}")
    ck = tmp_path / "moved.safetensors"
    ck.write_bytes(checkpoints()[1].read_bytes())
    zoo.add_model("mutable", SPEC, ck, kwargs=KW)
    ck.write_bytes(checkpoints()[2].read_bytes())  # same architecture, other weights
    key = zoo.store.put(np.ones(4, dtype=np.float32), kind="cka")
    problems = zoo.check()
    assert set(problems["problem"]) == {"checkpoint changed", "orphan vector"}
    assert problems.set_index("problem").loc["checkpoint changed", "subject"] == "mutable"
    fixed = zoo.check(fix=True)
    assert key not in zoo.store.keys("cka")
    assert fixed.empty  # the changed checkpoint is re-queued (its new sha256 recorded): the next embed re-embeds it
    assert zoo.catalog.get_model("mutable").checkpoint_sha256 == sha256_file(ck)


def test_pickle_checkpoint_that_runs_code_is_refused(tmp_path, zoo):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv1.0.weight": Evil()}, f)
    with pytest.raises(ZooscopeInputError, match=r"(?i)refused"):
        zoo.add_model("evil", SPEC, path, kwargs=KW)
    assert "evil" not in zoo.models()["name"].tolist()


def test_bad_inputs_raise_one_clear_error_each(tmp_path, zoo):
    empty = Zoo.create(tmp_path / "empty")
    with pytest.raises(ZooscopeInputError, match="no models"):
        empty.similar("anything")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'cnn1'"):
        zoo.similar("cnn11")
    with pytest.raises(ZooscopeInputError, match="Did you mean 'cka'"):
        zoo.similar("cnn1", by="ckaa")
    with pytest.raises(ZooscopeInputError, match="Unknown layer"):
        zoo.similar("cnn1", layer="conv9")
    with pytest.raises(ZooscopeInputError, match="already a zoo model"):
        zoo.similar("cnn1", arch=SPEC, checkpoint=checkpoints()[0], kwargs=KW)
    with pytest.raises(ZooscopeInputError, match="input shape"):
        zoo.add_model("mlp", "zooscope.zoo.models:mlp", kwargs={"in_features": 7}, input_shape=(1, 8, 8))
    with pytest.raises(ZooscopeInputError, match="storage"):
        Zoo.open("postgresql://user@localhost/zoo")
    with pytest.raises(ZooscopeInputError, match="already in the zoo"):
        zoo.add_model("cnn1", SPEC, checkpoints()[1], kwargs=KW)


def test_a_failing_pair_is_recorded_and_the_run_continues(zoo_dir, tmp_path):
    zoo = clone_zoo(zoo_dir, f"z-{tmp_path.name}")
    ck = tmp_path / "gone.safetensors"
    ck.write_bytes(checkpoints()[0].read_bytes())
    zoo.add_model("gone", SPEC, ck, kwargs=KW)
    ck.unlink()
    zoo.add_model("fresh", SPEC, checkpoints()[1], kwargs=KW)
    report = zoo.embed(kinds=("cka",)).set_index("model")
    assert report.loc["gone", "status"] == "failed"
    assert report.loc["fresh", "status"] == "embedded"
    assert zoo.failures()["model"].tolist() == ["gone"]
    assert torch.get_num_threads() >= 1


def test_ray_backend_without_ray_says_how_to_install(zoo, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: import ray -> ImportError
    with pytest.raises(ZooscopeInputError, match="pip install"):
        zoo.embed(kinds=("cka",), backend="ray")
    with pytest.raises(ZooscopeInputError, match="'local' or 'ray'"):
        zoo.embed(kinds=("cka",), backend="dask")
