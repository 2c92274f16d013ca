"""Shared, cached pieces of the zoo tests: a few small CNNs trained briefly on builtin:digits (8x8)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
_CACHE: dict[str, Path] = {}


def checkpoints(n: int = 3, epochs: int = 2) -> list[Path]:
    """Paths of ``n`` small CNNs trained with different seeds (trained once per test session)."""
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import save_checkpoint, small_cnn
    from zooscope.nets.training import train_classifier

    if "ckpt" not in _CACHE:
        _CACHE["ckpt"] = Path(tempfile.mkdtemp(prefix="zooscope-ckpt-"))
    folder = _CACHE["ckpt"]
    out = []
    ds = None
    for seed in range(n):
        path = folder / f"cnn{seed}.safetensors"
        if not path.is_file():
            ds = ds or load_dataset("builtin:digits")
            torch.set_num_threads(1)
            model = small_cnn(**KW, seed=seed)
            train_classifier(model, ds.x, ds.y, epochs=epochs, batch_size=128, lr=1e-2, weight_decay=0.0, seed=seed)
            save_checkpoint(model, path)
        out.append(path)
    return out


def make_zoo(root: Path | None, *, n: int = 3, copy: bool = True, embed: bool = True, zoo=None):
    """A zoo with dataset 'digits', models cnn0..cnn{n-1} (+ 'cnn0-copy' with cnn0's weights), cka-embedded.

    ``zoo``: fill this (empty) zoo instead of creating one at ``root`` (e.g. from the ``zoo_factory`` fixture)."""
    from zooscope import Zoo

    zoo = Zoo.create(root) if zoo is None else zoo
    zoo.configure(probe_n=256)
    zoo.add_dataset("digits", "builtin:digits")
    for i, path in enumerate(checkpoints(n)):
        zoo.add_model(f"cnn{i}", SPEC, path, kwargs=KW, trained_on="digits")
    if copy:
        zoo.add_model("cnn0-copy", SPEC, checkpoints(n)[0], kwargs=KW, trained_on="digits")
    if embed:
        zoo.embed(kinds=("cka",))
    return zoo


def clone_zoo(src: Path, dst: Path):
    """A copy of a zoo folder (checkpoint paths are absolute, so they still resolve)."""
    from zooscope import Zoo

    shutil.copytree(src, dst)
    return Zoo.open(dst)
