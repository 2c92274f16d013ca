"""Story 1 with ``--measure procrustes``: compare factors each wide layer once (the Gram form) and gives the value
of the feature form (an SVD of the raw activations) to 1e-8; a slow comparison is announced in one line first."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from zooscope.cli import app

runner = CliRunner()
ARCH, KW = "timm:resnet10t", {"num_classes": 2}


@pytest.fixture(scope="module")
def story1(tmp_path_factory):
    """Two checkpoints of one architecture (base, tuned) and a small image folder."""
    from PIL import Image

    from zooscope.nets.models import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("story1")
    rng = np.random.default_rng(0)
    for i in range(16):
        d = root / "val_images" / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:02d}.png")
    torch.manual_seed(0)
    base = build_model(ARCH, KW)
    save_checkpoint(base, root / "base.safetensors")
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(base, root / "tuned.safetensors")
    return root


def test_story1_procrustes_gram_form_equals_the_feature_form(story1):
    out = story1 / "procrustes.csv"
    layers = "conv1,layer1,layer2"
    result = runner.invoke(app, ["compare", ARCH, ARCH, "--kwargs-a", json.dumps(KW), "--weights-a",
                                 str(story1 / "base.safetensors"), "--weights-b", str(story1 / "tuned.safetensors"),
                                 "--data", str(story1 / "val_images"), "--n", "16", "--measure", "procrustes",
                                 "--layers", layers, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "procrustes: factoring layers" in result.stderr  # each layer factored once, before the pairs
    table = pd.read_csv(out, index_col=0)

    from zooscope import measures as M
    from zooscope.embed.capture import iter_activations, load_inputs
    from zooscope.nets.models import build_model

    x = load_inputs(str(story1 / "val_images"), 16)
    names = layers.split(",")
    acts = []
    for ckpt in ("base", "tuned"):
        net = build_model(ARCH, KW, story1 / f"{ckpt}.safetensors").eval()
        with torch.no_grad():
            acts.append({k: v.double().numpy() for k, v in next(iter_activations(net, [x], names)).items()})
    assert min(a.shape[1] for a in acts[0].values()) > 16 * 10  # features ≫ examples: the Gram form is used
    for la in names:
        for lb in names:
            feature_form = M.procrustes(acts[0][la], acts[1][lb], form="features")
            assert abs(table.loc[la, lb] - feature_form) <= 1e-8, (la, lb)


def test_a_comparison_estimated_above_a_minute_is_announced_in_one_line():
    import logging

    from zooscope.embed.compare import warn_if_slow

    # story 1 at 64 px: 14 × 14 wide layers (expanded: no memory)
    wide = {f"l{i}": torch.zeros(1, 65536).expand(2000, 65536) for i in range(14)}
    narrow = {"l0": torch.zeros(1, 10).expand(100, 10)}

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("zooscope")
    logger.addHandler(handler)
    try:
        assert warn_if_slow("procrustes", narrow, narrow) < 60 and records == []
        assert warn_if_slow("procrustes", wide, wide) > 60
    finally:
        logger.removeHandler(handler)
    (rec,) = records
    assert "procrustes on 14 × 14 layer pairs of 2,000 examples" in rec.getMessage()
