"""The two curation scripts of story 4 (scripts/curate_*.py): --dry-run changes nothing; a real run removes
exactly the models it should."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest
from zoo_helpers import KW, SPEC, checkpoints, make_zoo

from zooscope import Zoo

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _main(name: str):
    return runpy.run_path(str(SCRIPTS / name))["main"]


@pytest.fixture(scope="module")
def dup_zoo(tmp_path_factory):
    """cnn0 and cnn0-copy (the same weights: one duplicate group) plus cnn1, cnn2; cka-embedded."""
    return make_zoo(tmp_path_factory.mktemp("dupes") / "zoo", n=3).root


def _clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_keep_best_keeps_the_best_recorded_member(dup_zoo, tmp_path, capsys):
    root = _clone(dup_zoo, tmp_path / "zoo")
    zoo = Zoo.open(root)
    zoo.record_result("cnn0", "digits", 0.80)
    zoo.record_result("cnn0-copy", "digits", 0.90)
    main = _main("curate_keep_best.py")
    assert main(["--zoo", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 model(s)" in out
    assert set(Zoo.open(root).models()["name"]) == {"cnn0", "cnn0-copy", "cnn1", "cnn2"}  # dry run: unchanged
    assert main(["--zoo", str(root)]) == 0
    assert set(Zoo.open(root).models()["name"]) == {"cnn0-copy", "cnn1", "cnn2"}


def test_keep_best_by_add_model_metric_and_unscored_groups(dup_zoo, tmp_path, capsys):
    root = _clone(dup_zoo, tmp_path / "zoo")
    main = _main("curate_keep_best.py")
    assert main(["--zoo", str(root)]) == 0  # no score for any member: the group is left alone
    assert "left alone" in capsys.readouterr().out
    assert len(Zoo.open(root).models()) == 4
    zoo = Zoo.open(root)
    zoo.add_model("cnn0-copy", SPEC, checkpoints(3)[0], kwargs=KW, trained_on="digits", metrics={"val_acc": 0.7},
                  replace=True)
    zoo.add_model("cnn0", SPEC, checkpoints(3)[0], kwargs=KW, trained_on="digits", metrics={"val_acc": 0.75},
                  replace=True)
    zoo.embed(kinds=("cka",))
    assert main(["--zoo", str(root), "--metric", "val_acc"]) == 0
    assert set(Zoo.open(root).models()["name"]) == {"cnn0", "cnn1", "cnn2"}


def test_drop_missing_removes_only_models_whose_checkpoint_is_gone(dup_zoo, tmp_path, capsys):
    root = _clone(dup_zoo, tmp_path / "zoo")
    ckpt = tmp_path / "soon-gone.safetensors"
    shutil.copy(checkpoints(3)[1], ckpt)
    zoo = Zoo.open(root)
    zoo.add_model("gone", SPEC, ckpt, kwargs=KW, trained_on="digits")
    zoo.add_model("no-checkpoint", SPEC, kwargs=KW)
    ckpt.unlink()
    main = _main("curate_drop_missing.py")
    assert main(["--zoo", str(root), "--dry-run"]) == 0
    assert "gone\tcheckpoint missing" in capsys.readouterr().out
    assert "gone" in set(Zoo.open(root).models()["name"])
    assert main(["--zoo", str(root)]) == 0
    assert set(Zoo.open(root).models()["name"]) == {"cnn0", "cnn0-copy", "cnn1", "cnn2", "no-checkpoint"}
