"""The zoo-side rules the stories rely on, in process (fast): the input shape of a model added before any dataset
is settled at `embed` (one warning line), a training set not registered yet is accepted with a warning and named
by `select`'s why, and a query about a model whose checkpoint changed refuses with the fix."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_stories import ARCH, KW, image_folder, timm_checkpoint

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.zoo import Zoo


@pytest.fixture
def zoo_first(tmp_path, caplog):
    """Story 2's order: models first (one trained on a dataset not registered yet), then the probe dataset."""
    zoo = Zoo.create(tmp_path / "zoo")
    a = timm_checkpoint(tmp_path / "a.safetensors", 0)
    b = timm_checkpoint(tmp_path / "b.safetensors", 1)
    with caplog.at_level(logging.WARNING, logger="zooscope"):
        zoo.add_model("a", ARCH, a, kwargs=KW, trained_on="retail-v2")
    warned = [r.getMessage() for r in caplog.records if "retail-v2" in r.getMessage()]
    assert len(warned) == 1 and "not registered" in warned[0]
    zoo.add_model("b", ARCH, b, kwargs=KW)
    assert zoo.models()["input_shape"].isna().all()  # not pinned to timm's default (3×176×176 for resnet10t)
    zoo.add_dataset("probe", str(image_folder(tmp_path / "probe", n=32)))
    return zoo, tmp_path


def test_input_shape_is_settled_at_embed_from_the_registered_datasets(zoo_first, caplog):
    zoo, _ = zoo_first
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zooscope"):
        report = zoo.embed(kinds="cka")
    assert (report["status"] == "embedded").all(), report
    guessed = [r.getMessage() for r in caplog.records if "guessed" in r.getMessage()]
    assert len(guessed) == 1 and "3×32×32" in guessed[0] and "'probe'" in guessed[0] and "--input-shape" in guessed[0]
    assert [tuple(s) for s in zoo.models()["input_shape"]] == [(3, 32, 32), (3, 32, 32)]
    assert zoo.similar("a", k=1)["model"].tolist() == ["b"]


def test_select_names_training_data_that_is_not_registered(zoo_first):
    zoo, tmp_path = zoo_first
    zoo.embed(kinds="cka")
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(40, 3, 32, 32)).astype(np.float32) + y[:, None, None, None], y=y)
    zoo.add_dataset("t", str(tmp_path / "t.npz"))
    why = zoo.select("t", k=2).set_index("model")["why"]
    assert "training data 'retail-v2' not registered" in why["a"]
    assert "training data unknown" in why["b"]


def test_a_query_about_a_changed_checkpoint_refuses_with_the_fix(zoo_first):
    zoo, tmp_path = zoo_first
    zoo.embed(kinds="cka")
    ckpt = tmp_path / "a.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0x10
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ZooscopeInputError, match=r"changed since it was embedded.*check --fix.*zooscope embed"):
        zoo.similar("a", k=1)
    problems = zoo.check(fix=True)  # re-queues: the new sha256 is recorded, its old vector is now stale
    assert problems["problem"].tolist() == ["stale vector"]
    with pytest.raises(ZooscopeInputError, match="earlier checkpoint"):
        zoo.similar("a", k=1)
    with pytest.raises(ZooscopeInputError, match="No other zoo model"):
        zoo.similar("b", k=1)  # a's stale vector is never ranked
    zoo.embed(kinds="cka")
    assert zoo.check().empty
    assert zoo.similar("b", k=1)["model"].tolist() == ["a"]
