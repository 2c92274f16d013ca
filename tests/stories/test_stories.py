"""The user stories of shared/USER_STORIES.md, in their written order, through the real CLI (one subprocess a verb).

Small stand-ins: a tiny timm model (``timm:resnet10t`` with ``--kwargs``), 64-image folders, a 96-example ``.npz``.
Each test asserts what the user sees: exit codes, table columns, the files written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ARCH = "timm:resnet10t"
KW = {"num_classes": 2}
KWJ = json.dumps(KW)


def cli(*args, cwd: Path | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "zooscope.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def image_folder(root: Path, n: int = 64, seed: int = 0, classes: int = 2) -> Path:
    from PIL import Image

    # varied images (oriented gratings, class = frequency band, random colour): on flat colour patches every
    # random-init network has the same penultimate geometry (CKA > 0.998), so "distinct models" would be dupes
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    for i in range(n):
        c = i % classes
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(1 + 3 * c, 3 + 3 * c, size=2) * rng.choice([-1, 1], size=2)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        wave = np.stack([np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p) for p in phase], axis=-1)
        img = 128 + 100 * wave * rng.uniform(0.3, 1.0, size=3) + rng.normal(0, 20, size=wave.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def timm_checkpoint(path: Path, seed: int, *, like: Path | None = None, perturb: float = 0.0) -> Path:
    """A resnet10t checkpoint: a seeded init, or a copy of ``like`` with its last stage perturbed (a "fine-tune")."""
    from zooscope.nets.models import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    model = build_model(ARCH, KW)
    if like is not None:
        load_checkpoint(model, like)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(("layer4", "fc")) and p.dim() > 1:
                    p.add_(perturb * torch.randn_like(p) * p.std())
    save_checkpoint(model, path)
    return path


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------------------------------------- story 1
@pytest.mark.slow
def test_story1_did_fine_tuning_change_the_early_layers(tmp_path):
    val = image_folder(tmp_path / "val_images")
    base = timm_checkpoint(tmp_path / "base.safetensors", 0)
    tuned = timm_checkpoint(tmp_path / "tuned.safetensors", 0, like=base, perturb=0.5)
    common = [ARCH, ARCH, "--weights-a", base, "--weights-b", tuned, "--kwargs-a", KWJ, "--data", val, "--n", 64]
    proc = cli("compare", *common, "--measure", "linear_cka", "--out", "cka.csv", "--plot", "cka.png", cwd=tmp_path)
    assert "wrote cka.csv" in proc.stdout + proc.stderr and "cka.png" in proc.stdout + proc.stderr
    assert (tmp_path / "cka.png").stat().st_size > 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "cka.csv", index_col=0)
    assert table.shape[0] == table.shape[1] >= 4
    diag = np.diag(table.to_numpy())
    # early layers untouched by the "fine-tune" (only layer4/fc moved): CKA 1 there, lower at the end
    assert diag[0] == pytest.approx(1.0, abs=1e-5)
    assert diag[-1] < diag[0]
    for measure in ("grad_nbs", "procrustes"):
        cli("compare", *common, "--measure", measure, "--out", f"{measure}.csv", cwd=tmp_path)
        other = pd.read_csv(tmp_path / f"{measure}.csv", index_col=0)
        assert other.shape == table.shape, measure
    bad = cli("compare", *common, "--layers-a", "layer5", cwd=tmp_path, check=2)
    err = bad.stderr.strip().splitlines()
    assert len(err) == 1 and "unknown layer 'layer5'" in err[0].lower() and "valid:" in err[0].lower()
    assert "conv1" in err[0]


# ---------------------------------------------------------------------------------------------- stories 2, 3, 4, 6
@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The team's checkpoints: three resnet10t, ckpt-0001 a near copy of ckpt-0000, each with its `.dataset` file
    (three, not more: every CLI call costs ~3 s of CPU to import torch, ~6 s with timm, the module stays < 2 min)."""
    root = tmp_path_factory.mktemp("team")
    ckpts = root / "ckpts"
    ckpts.mkdir()
    trained = {"ckpt-0000": "retail-v2", "ckpt-0001": "retail-v3", "ckpt-0002": "shelf-v1"}
    timm_checkpoint(ckpts / "ckpt-0000.safetensors", 0)
    timm_checkpoint(ckpts / "ckpt-0001.safetensors", 0, like=ckpts / "ckpt-0000.safetensors", perturb=0.01)
    timm_checkpoint(ckpts / "ckpt-0002.safetensors", 2)
    for name, ds in trained.items():
        (ckpts / f"{name}.dataset").write_text(ds + "\n")
    image_folder(root / "probe_images", seed=1)
    shutil.copy(ckpts / "ckpt-0002.safetensors", root / "new.safetensors")
    rng = np.random.default_rng(5)
    y = np.arange(96) % 2
    x = (rng.normal(size=(96, 3, 32, 32)) + y[:, None, None, None]).astype(np.float32)
    np.savez(root / "my_task.npz", x=x, y=y)
    np.savez(root / "next_task.npz", x=x[::-1].copy(), y=(1 - y[::-1]).copy())
    return root


@pytest.mark.slow
def test_story2_which_checkpoint_is_most_like_this_one(team):
    zoo = team / "shared_zoo"
    cli("init", "--zoo", zoo)
    # models first (the probe dataset comes later): the input shape is settled at embed time
    for f in sorted((team / "ckpts").glob("*.safetensors")):
        trained_on = f.with_suffix(".dataset").read_text().strip()
        cli("add-model", f.stem, "--arch", ARCH, "--kwargs", KWJ, "--checkpoint", f, "--trained-on", trained_on,
            "--zoo", zoo)
    cli("add-dataset", "probe-224", "--source", team / "probe_images", "--zoo", zoo)
    cli("embed", "--kinds", "cka", "--zoo", zoo)
    rows = read_csv(cli("similar", "ckpt-0000", "--k", "2", "--zoo", zoo, "--format", "csv").stdout)
    assert {"rank", "model", "score", "arch", "trained_on"} <= set(rows[0])
    assert rows[0]["model"] == "ckpt-0001" and rows[0]["trained_on"] == "retail-v3"
    assert float(rows[0]["score"]) > 0.99 and len(rows) == 2
    table = cli("similar", "ckpt-0000", "--k", "2", "--zoo", zoo).stdout
    assert "rank" in table and "ckpt-0001" in table
    # a new checkpoint not in the zoo: embedded on the fly, not added
    rows = read_csv(cli("similar", "candidate", "--arch", ARCH, "--kwargs", KWJ, "--checkpoint",
                        team / "new.safetensors", "--k", "1", "--zoo", zoo, "--format", "csv").stdout)
    assert rows[0]["model"] == "ckpt-0002" and float(rows[0]["score"]) > 0.999
    models = read_csv(cli("ls", "models", "--zoo", zoo, "--format", "csv").stdout)
    assert sorted(r["name"] for r in models) == [f"ckpt-000{i}" for i in range(3)]


@pytest.mark.slow
def test_story3_which_model_should_i_fine_tune(team):
    zoo = team / "shared_zoo"
    cli("add-dataset", "my-task", "--source", team / "my_task.npz", "--zoo", zoo)
    proc = cli("select", "my-task", "--k", "3", "--zoo", zoo, "--format", "csv")
    rows = read_csv(proc.stdout)
    assert len(rows) == 3 and [r["rank"] for r in rows] == ["1", "2", "3"]
    assert {"model", "score", "logme", "why"} <= set(rows[0])
    assert all(r["why"] for r in rows)
    table = cli("select", "my-task", "--k", "3", "--zoo", zoo, "--format", "table").stdout
    assert "why" in table


@pytest.mark.slow
def test_story4_clean_up_the_zoo(team):
    zoo = team / "shared_zoo"
    dupes = cli("curate", "dupes", "--threshold", "0.995", "--zoo", zoo, "--format", "csv").stdout
    assert "ckpt-0000" in dupes and "ckpt-0001" in dupes and "ckpt-0002" not in dupes
    cli("curate", "map", "--by", "cka", "--out", team / "zoo_map.png", "--zoo", zoo)
    assert (team / "zoo_map.png").stat().st_size > 0
    cli("check", "--zoo", zoo)


@pytest.mark.slow
def test_story6_remember_how_fine_tuning_went(team):
    zoo = team / "shared_zoo"
    cli("record", "ckpt-0002", "my-task", "--value", "0.914", "--metric", "accuracy", "--zoo", zoo)
    cli("record", "ckpt-0000", "my-task", "--value", "0.55", "--metric", "accuracy", "--zoo", zoo)
    results = read_csv(cli("results", "--zoo", zoo, "--format", "csv").stdout)
    assert {(r["model"], r["dataset"], float(r["value"])) for r in results} >= {
        ("ckpt-0002", "my-task", 0.914), ("ckpt-0000", "my-task", 0.55)}
    cli("add-dataset", "next-task", "--source", team / "next_task.npz", "--zoo", zoo)
    rows = read_csv(cli("select", "next-task", "--k", "3", "--zoo", zoo, "--format", "csv").stdout)
    assert "history" in rows[0]
    by_model = {r["model"]: r for r in rows}
    # one past task: why says the history comes from it (a "most similar" task is named only among several)
    assert by_model["ckpt-0002"]["history"] and "above average" in by_model["ckpt-0002"]["why"]
    assert all("1 past task" in r["why"] for r in rows if r["history"])
