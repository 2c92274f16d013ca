"""The ``fisher`` pair kind (issue 17): embedded per (model, dataset), indexed per architecture, queried by
`similar --by fisher`, and carried by check / export / import like every other kind.

The toy zoo: one small CNN trained on all digits, fine-tuned (different seeds and epochs, new 5-class heads) on
the digits 0-4 ("low", twice) and 5-9 ("high", twice); a narrower CNN trained on "low" (another architecture);
a model with no recorded training set."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

SPEC = "zooscope.zoo.models:small_cnn"
DATA = {"low": "builtin:digits?classes=0,1,2,3,4", "high": "builtin:digits?classes=5,6,7,8,9"}
FINE_TUNED = [("low0", "low", 0), ("low1", "low", 1), ("high0", "high", 0), ("high1", "high", 1)]


def _kw(width: int = 8, classes: int = 5) -> dict:
    return {"in_chans": 1, "num_classes": classes, "width": width, "img_size": 8}


def _checkpoints(folder):
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import save_checkpoint, small_cnn
    from zooscope.nets.training import train_classifier

    torch.set_num_threads(1)
    full = load_dataset("builtin:digits")
    base = small_cnn(**_kw(classes=10), seed=99)
    train_classifier(base, full.x, full.y, epochs=3, batch_size=64, lr=1e-2, weight_decay=0.0, seed=99)
    body = {k: v for k, v in base.state_dict().items() if not k.startswith("fc.")}
    out = {}
    for name, data, seed in FINE_TUNED:
        ds = load_dataset(DATA[data])
        m = small_cnn(**_kw(), seed=seed)
        m.load_state_dict(copy.deepcopy(body), strict=False)  # the shared pretrained body, a new 5-class head
        train_classifier(m, ds.x, ds.y, epochs=2 + seed, batch_size=64, lr=3e-3, weight_decay=0.0, seed=seed)
        out[name] = folder / f"{name}.safetensors"
        save_checkpoint(m, out[name])
    narrow = small_cnn(**_kw(width=4), seed=0)
    ds = load_dataset(DATA["low"])
    train_classifier(narrow, ds.x, ds.y, epochs=2, batch_size=64, lr=1e-2, weight_decay=0.0, seed=0)
    out["narrow"] = folder / "narrow.safetensors"
    save_checkpoint(narrow, out["narrow"])
    return out


@pytest.fixture(scope="module")
def pair_zoo(tmp_path_factory):
    from zooscope import Zoo

    folder = tmp_path_factory.mktemp("pair-ckpt")
    ckpt = _checkpoints(folder)
    zoo = Zoo.create(tmp_path_factory.mktemp("pair-zoo") / "zoo")
    for d, src in DATA.items():
        zoo.add_dataset(d, src)
    for name, data, _ in FINE_TUNED:
        zoo.add_model(name, SPEC, ckpt[name], kwargs=_kw(), trained_on=data)
    zoo.add_model("narrow", SPEC, ckpt["narrow"], kwargs=_kw(width=4), trained_on="low")
    zoo.add_model("orphan", SPEC, ckpt["low0"], kwargs=_kw())  # no training set recorded
    report = zoo.embed(kinds=("fisher",))
    return zoo, report


def test_embed_makes_the_trained_on_pairs_and_says_once_which_model_has_none(pair_zoo):
    zoo, report = pair_zoo
    done = report[report["status"] == "embedded"]
    assert sorted(zip(done["model"], done["dataset"], strict=True)) == sorted(
        [(n, d) for n, d, _ in FINE_TUNED] + [("narrow", "low")])
    orphan = report[report["model"] == "orphan"]
    assert orphan["status"].tolist() == ["skipped (no registered training set)"]
    rows = zoo.catalog.embeddings(kind="fisher")
    assert {(r.model, r.dataset) for r in rows} == {(n, d) for n, d, _ in FINE_TUNED} | {("narrow", "low")}
    r = rows[0]
    assert r.request["params"]["max_samples"] == 300 and r.request["version"] == "1" and r.code_version == "1"
    assert r.request["architecture"] == {"spec": SPEC, "kwargs": {"img_size": 8, "in_chans": 1, "width": 8}}
    assert r.dim == 8 + 16 + 16  # one entry per conv filter of the feature extractor
    again = zoo.embed(kinds=("fisher",))  # resumable: nothing left to do
    assert set(again["status"]) == {"skipped", "skipped (no registered training set)"}


def test_the_index_key_holds_the_architecture_and_never_mixes_two(pair_zoo):
    zoo, _ = pair_zoo
    idx = [i for i in zoo.catalog.indices() if i.kind == "fisher"]
    assert len(idx) == 2 and all(i.policy.startswith("all@arch-") for i in idx)
    assert sorted(i.n for i in idx) == [1, 4]


def test_two_checkpoints_trained_on_the_same_data_rank_each_other_first(pair_zoo):
    zoo, _ = pair_zoo
    for a, b in (("low0", "low1"), ("low1", "low0"), ("high0", "high1"), ("high1", "high0")):
        for exact in (False, True):
            table = zoo.similar(a, k=3, by="fisher", exact=exact)
            assert table["model"].iloc[0] == b, (a, exact, table)
            assert "narrow" not in set(table["model"])  # another architecture: never in the table
            assert table["score"].is_monotonic_decreasing


def test_a_cross_architecture_query_is_refused_naming_both_architectures(pair_zoo):
    from zooscope.cli import app
    from zooscope.zoo.pairsimilar import CrossArchitectureError

    zoo, _ = pair_zoo
    with pytest.raises(CrossArchitectureError) as e:
        zoo.similar("narrow", by="fisher")
    msg = str(e.value)
    assert "\n" not in msg and "width=4" in msg and "width=8" in msg and "task2vec" in msg
    res = CliRunner().invoke(app, ["similar", "narrow", "--by", "fisher", "--zoo", str(zoo.path)])
    assert res.exit_code != 0
    assert "width=4" in res.output and "width=8" in res.output and "Traceback" not in res.output


def test_explicit_pairs_and_a_query_on_another_dataset(pair_zoo, tmp_path):
    from zooscope.zoo.similar import similar  # noqa: F401  (the query path under test)

    zoo, _ = pair_zoo
    rep = zoo.embed(kinds=("fisher",), pairs=["low0:high", "low1:high"])
    assert sorted(rep[rep["status"] == "embedded"]["model"]) == ["low0", "low1"]
    table = zoo.similar("low0", by="fisher", dataset="high", k=5)
    assert set(table["model"]) == {"low1", "high0", "high1"}  # their vectors on "high", same architecture
    assert set(table["dataset"]) == {"high"}
    with pytest.raises(ValueError, match="nope"):
        zoo.embed(kinds=("fisher",), pairs=["nope:low"])
    with pytest.raises(ValueError, match="MODEL:DATASET"):
        zoo.embed(kinds=("fisher",), pairs=["everything"])
    with pytest.raises(ValueError, match="pairs=\\['orphan:high'\\]"):
        zoo.similar("orphan", by="fisher", dataset="high")


def test_a_pair_vector_round_trips_embed_check_export_import_byte_for_byte(pair_zoo, tmp_path):
    from zooscope import Zoo
    from zooscope.cli import app

    zoo, _ = pair_zoo
    run = CliRunner().invoke
    assert run(app, ["check", "--zoo", str(zoo.path)]).exit_code == 0
    assert run(app, ["export", str(tmp_path / "exp"), "--zoo", str(zoo.path)]).exit_code == 0
    res = run(app, ["import", str(tmp_path / "exp"), "--zoo", str(tmp_path / "copy")])
    assert res.exit_code == 0, res.output
    new = Zoo.open(tmp_path / "copy")
    src = {(r.model, r.dataset): r for r in zoo.catalog.embeddings(kind="fisher")}
    dst = {(r.model, r.dataset): r for r in new.catalog.embeddings(kind="fisher")}
    assert src.keys() == dst.keys()
    for key, r in src.items():
        assert dst[key].id == r.id and dst[key].sha256 == r.sha256 and dst[key].params == r.params
        assert zoo.store.path(r.vector_key).read_bytes() == new.store.path(dst[key].vector_key).read_bytes()
    assert run(app, ["check", "--zoo", str(tmp_path / "copy")]).exit_code == 0
    assert new.similar("low0", k=3, by="fisher")["model"].tolist() == \
        zoo.similar("low0", k=3, by="fisher")["model"].tolist()
    # one flipped byte in a pair vector file: check names it, check --fix drops it, embed recomputes the same bytes
    row = dst[("high0", "high")]
    path = new.store.path(row.vector_key)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    res = run(app, ["check", "--zoo", str(tmp_path / "copy")])
    assert res.exit_code == 1 and "high0:high" in res.output
    found = new.check()
    assert found[["problem", "subject"]].values.tolist() == [["corrupt vector", "high0:high"]]
    assert "fisher" in found["detail"].iloc[0]
    assert run(app, ["check", "--fix", "--zoo", str(tmp_path / "copy")]).exit_code == 0
    assert not new.catalog.embeddings(kind="fisher", model="high0", dataset="high")
    res = run(app, ["embed", "--kinds", "fisher", "--zoo", str(tmp_path / "copy")])
    assert res.exit_code == 0, res.output
    back = new.catalog.embeddings(kind="fisher", model="high0", dataset="high")[0]
    want = zoo.store.path(src[("high0", "high")].vector_key).read_bytes()
    assert new.store.path(back.vector_key).read_bytes() == want  # recomputed bit for bit


def test_select_fisher_reads_the_stored_pair_vectors_and_computes_only_what_is_missing(pair_zoo, monkeypatch):
    import zooscope.embed.pairfisher as pf

    zoo, _ = pair_zoo
    zoo.embed(kinds=("fisher",), pairs="all", models=["low0", "low1", "high0", "high1"])
    calls: list[int] = []
    real = pf.pair_fisher_vector
    monkeypatch.setattr(pf, "pair_fisher_vector", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    table = zoo.select("high", k=10, method="fisher")
    ranked = table.set_index("model")["fisher_distance"]
    assert calls == [1]  # (narrow, high) is the one pair not stored: computed once, in memory
    assert np.isfinite(ranked[["low0", "low1", "high0", "high1"]]).all()
    # the stored vectors are what select would compute: same numbers up to the float32 storage
    from zooscope.embed.taskdist import task_distance

    def vec(m, d):
        return zoo.embed_context().vectors.read64(zoo.catalog.embeddings(kind="fisher", model=m, dataset=d)[0])
    assert ranked["low0"] == pytest.approx(float(task_distance(vec("low0", "low"), vec("low0", "high"),
                                                                   kind="sym")), rel=1e-6)


def test_curate_map_by_fisher_compares_within_an_architecture_only(pair_zoo, tmp_path):
    from zooscope.cli import app
    from zooscope.zoo import curate

    zoo, _ = pair_zoo
    S = curate.similarity_matrix(zoo, by="fisher")
    assert sorted(S.index) == ["high0", "high1", "low0", "low1", "narrow"]
    assert np.isnan(S.loc["narrow", "low0"]) and S.loc["narrow", "narrow"] == pytest.approx(1.0)
    assert S.loc["low0"].drop(["low0", "narrow"]).idxmax() == "low1"
    res = CliRunner().invoke(app, ["curate", "map", "--by", "fisher", "--out", str(tmp_path / "m.png"),
                                   "--zoo", str(zoo.path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.png").is_file()


def test_cli_embed_pairs_says_in_one_line_which_models_have_no_default_pair(pair_zoo):
    from zooscope.cli import app

    zoo, _ = pair_zoo
    res = CliRunner().invoke(app, ["embed", "--kinds", "cka", "--pairs", "trained-on,high0:low",
                                   "--zoo", str(zoo.path)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "no default fisher pair" in ln]
    assert len(lines) == 1 and "orphan" in lines[0]
    assert zoo.catalog.embeddings(kind="fisher", model="high0", dataset="low")  # --pairs added the fisher kind
    res = CliRunner().invoke(app, ["similar", "low0", "--by", "fisher", "--dataset", "low", "--format", "csv",
                                   "--zoo", str(zoo.path)])
    assert res.exit_code == 0, res.output
    assert "high0" in res.output and "low1" in res.output and "narrow" not in res.output


def test_pair_items_split_on_the_colon_that_names_a_model_and_a_dataset(tmp_path):
    from zooscope import Zoo
    from zooscope.zoo.pairs import resolve_pairs

    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add_dataset("c", DATA["low"])
    zoo.add_dataset("b:c", DATA["high"])
    for name in ("a", "a:b", "x:y"):
        zoo.add_model(name, SPEC, kwargs=_kw(), trained_on="c" if name == "a" else None)
    pairs, orphans = resolve_pairs(zoo.catalog, ["x:y:c", "trained-on"])
    assert sorted((m.name, d.name) for m, d in pairs) == [("a", "c"), ("x:y", "c")]
    assert orphans == ["a:b", "x:y"]
    with pytest.raises(ValueError, match=r"model 'a', dataset 'b:c'.* or .*model 'a:b', dataset 'c'"):
        resolve_pairs(zoo.catalog, ["a:b:c"])
    assert resolve_pairs(zoo.catalog, "all", models=["a"])[0][0][0].name == "a"


def test_a_failed_explicit_pair_is_what_retry_failed_retries(pair_zoo, tmp_path):
    from zooscope.cli import app
    from zooscope.nets.datasets import load_dataset

    zoo, _ = pair_zoo
    np.save(tmp_path / "inputs.npy", load_dataset(DATA["low"]).x.numpy())
    zoo.add_dataset("unlabelled", str(tmp_path / "inputs.npy"))
    rep = zoo.embed(kinds=("fisher",), pairs=["low0:unlabelled"])
    assert rep.loc[rep["dataset"] == "unlabelled", "status"].tolist() == ["failed"]
    res = CliRunner().invoke(app, ["embed", "--kinds", "fisher", "--retry-failed", "--zoo", str(zoo.path)])
    assert res.exit_code == 1 and "retrying 1 models and 1 datasets" in res.output
    f = zoo.failures()
    assert f[["kind", "model", "dataset", "attempts"]].values.tolist() == [["fisher", "low0", "unlabelled", 2]]
    zoo.remove_dataset("unlabelled")
