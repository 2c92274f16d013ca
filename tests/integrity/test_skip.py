"""One bad model never blocks a query: a deleted checkpoint, a changed checkpoint, NaN weights -> similar and
select skip that model, say why (attrs["skipped"]; the CLI: one stderr line each) and rank the rest."""

from __future__ import annotations

import shutil

import pytest
import torch
from _faults import cli
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope.nets.models import save_checkpoint, small_cnn


@pytest.fixture
def bad_zoo(zoo_copy, tmp_path):
    own = tmp_path / "ckpts"
    own.mkdir()
    zoo = Zoo.open(zoo_copy)
    for name in ("gone", "changed"):
        shutil.copy(checkpoints(3)[2], own / f"{name}.safetensors")
        zoo.add_model(name, SPEC, own / f"{name}.safetensors", kwargs=KW, trained_on="digits")
    net = small_cnn(**KW, seed=5)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    save_checkpoint(net, own / "nan.safetensors")
    zoo.add_model("nan", SPEC, own / "nan.safetensors", kwargs=KW, trained_on="digits")
    report = zoo.embed(kinds=("cka",)).set_index("model")
    assert report.loc["nan", "status"] == "failed"  # a NaN vector is never stored
    (own / "gone.safetensors").unlink()
    shutil.copy(checkpoints(3)[1], own / "changed.safetensors")
    return zoo_copy


def test_similar_skips_bad_models_and_ranks_the_rest(bad_zoo):
    table = Zoo.open(bad_zoo).similar("cnn0", k=10)
    assert set(table["model"]) == {"cnn0-copy", "cnn1", "cnn2"}
    skipped = dict(table.attrs["skipped"])
    assert set(skipped) == {"gone", "changed"}
    assert "missing" in skipped["gone"] and "changed" in skipped["changed"]
    code, _out, err = cli("similar", "cnn0", "--k", "10", "--format", "csv", "--zoo", bad_zoo)
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped ")]
    assert sorted(ln.split(":")[0] for ln in lines) == ["skipped changed", "skipped gone"]


def test_select_skips_bad_models_and_ranks_the_rest(bad_zoo):
    table = Zoo.open(bad_zoo).select("digits", k=10, methods=("logme", "hscore"))
    assert set(table["model"]) == {"cnn0", "cnn0-copy", "cnn1", "cnn2"}
    assert table["score"].notna().all()
    skipped = dict(table.attrs["skipped"])
    assert set(skipped) == {"gone", "changed", "nan"}
    assert "non-finite" in skipped["nan"]


def test_select_cli_says_each_skipped_model_on_one_line(bad_zoo):
    code, out, err = cli("select", "digits", "--k", "10", "--format", "csv", "--zoo", bad_zoo)
    assert code == 0, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped ")]
    assert sorted(ln.split(":")[0] for ln in lines) == ["skipped changed", "skipped gone", "skipped nan"]
    assert all(name in out for name in ("cnn0", "cnn1", "cnn2"))


def test_every_candidate_bad_is_one_clear_error(bad_zoo):
    from zooscope._validation import ZooscopeInputError

    with pytest.raises(ZooscopeInputError, match="Every candidate model was skipped"):
        Zoo.open(bad_zoo).select("digits", candidates=["gone", "nan"], methods=("logme",))
