"""ModelSpec (arch + kwargs + checkpoint) builds what build_model builds; old arch strings keep resolving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zooscope import ZooscopeInputError
from zooscope.nets.arch import MOVED_MODULES, parse_spec, resolve_module
from zooscope.nets.models import ModelSpec, build_model, save_checkpoint, small_cnn

OLD, NEW = "zooscope.zoo.models:small_cnn", "zooscope.nets.models:small_cnn"
KW = {"width": 4, "num_classes": 3, "img_size": 8}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_loads_the_checkpoint_like_build_model(tmp_path):
    path = save_checkpoint(small_cnn(width=4, num_classes=3, img_size=8, seed=1), tmp_path / "w.safetensors")
    spec = ModelSpec(NEW, {**KW, "seed": 2}, path)
    assert spec.checkpoint == str(path)  # a Path is stored as its string: specs compare and pickle as data
    built = spec.build()
    assert _same_weights(built, build_model(NEW, {**KW, "seed": 2}, path))
    assert not _same_weights(built, ModelSpec(NEW, {**KW, "seed": 2}).build())  # no checkpoint: fresh weights


def test_old_and_new_arch_strings_build_the_same_network():
    assert resolve_module("zooscope.zoo.models") == "zooscope.nets.models" == MOVED_MODULES["zooscope.zoo.models"]
    assert resolve_module("my.pkg") == "my.pkg"
    assert str(parse_spec(OLD)) == OLD  # the stored text is kept as written
    old, new = ModelSpec(OLD, {**KW, "seed": 5}).build(), ModelSpec(NEW, {**KW, "seed": 5}).build()
    assert type(old) is type(new) and _same_weights(old, new)
    with pytest.raises(ZooscopeInputError, match="Did you mean mlp"):
        ModelSpec("zooscope.zoo.models:mpl").build()


def test_rows_and_probe_dicts_give_the_same_spec(tmp_path):
    ckpt = str(tmp_path / "w.safetensors")
    row = {"name": "m", "spec": OLD, "kwargs": KW, "checkpoint": ckpt, "input_shape": [1, 8, 8]}
    probe = {"arch": OLD, "kwargs": KW, "checkpoint": Path(ckpt)}
    assert ModelSpec.from_row(row) == ModelSpec.from_dict(probe) == ModelSpec(OLD, KW, ckpt)
    assert ModelSpec.from_dict({"arch": OLD}) == ModelSpec(OLD, {}, None)
    assert ModelSpec.from_row({"spec": OLD, "kwargs": None, "checkpoint": None}).kwargs == {}
    assert ModelSpec(OLD, KW) != ModelSpec(OLD, {**KW, "width": 8})


def test_spec_is_frozen_and_checks_its_kwargs():
    spec = ModelSpec(NEW, KW)
    with pytest.raises(AttributeError):
        spec.arch = "timm:resnet18"  # type: ignore[misc]
    with pytest.raises(ZooscopeInputError, match="must be a mapping"):
        ModelSpec(NEW, [("width", 4)])  # type: ignore[arg-type]
