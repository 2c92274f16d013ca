"""scripts/build_selection_bench.py: config b2's composition and the seed-mean truth (no training here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_selection_bench.py"


@pytest.fixture(scope="module")
def B():
    spec = importlib.util.spec_from_file_location("build_selection_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def test_b2_composition_meets_the_issue(B):
    cfg = B.CONFIGS["b2"]
    plan = B.model_plan(list(cfg.sources), cfg.families, cfg)
    assert cfg.size >= 64 and len(plan) >= 24 and len({p["family"] for p in plan}) >= 4
    assert len(cfg.targets) >= 12
    seen = set()
    for opts in cfg.sources.values():
        seen |= set(opts.get("classes", range(10)))
    unseen = [t for t, o in cfg.targets.items() if "classes" in o and not set(o["classes"]) & seen]
    assert len(unseen) >= 2
    few = [t for t, o in cfg.targets.items()
           if o["n"] / (len(o["classes"]) if "classes" in o else {"parity": 2, "mod3": 3}.get(o.get("task"), 10)) <= 30]
    assert len(few) >= 3
    for p in plan:  # 64 px inputs everywhere; every model trained the same (converged) number of epochs
        assert p["epochs"] == cfg.source_epochs
        if "img_size" in p["kwargs"]:
            assert p["kwargs"]["img_size"] == 64
    assert B.source_num_classes("src-m06-parity", cfg) == 2


def test_b1_is_todays_benchmark(B):
    cfg = B.CONFIGS["b1"]
    plan = B.model_plan(list(cfg.sources), cfg.families, cfg)
    assert len(plan) == 28 and cfg.size == 28 and len(cfg.targets) == 11
    assert [p["epochs"] for p in plan[:4]] == [1, 6, 3, 1]  # EPOCH_CYCLE[(i + 2 j) % 3], as before b2


def _write(out: Path, model: str, target: str, lr: float, seed: int, val: float, test: float) -> None:
    p = out / "results" / "ft" / f"{model}__{target}__lr{lr:g}__s{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"model": model, "dataset": target, "lr": lr, "seed": seed, "epochs": 3,
                             "train_acc": 1.0, "val_acc": val, "test_acc": test, "n_train": 10, "seconds": 1.0}))


def test_seed_mean_truth_uses_the_lr_chosen_on_seed_0_and_only_complete_targets(B, tmp_path):
    lrs = (5e-4, 2e-3)
    for m, (v_lo, v_hi) in {"a": (0.8, 0.9), "b": (0.9, 0.7)}.items():
        _write(tmp_path, m, "t1", lrs[0], 0, v_lo, 0.50)
        _write(tmp_path, m, "t1", lrs[1], 0, v_hi, 0.60)
    # a: lr 2e-3 chosen; b: lr 5e-4 chosen. Seeds 1, 2 at the chosen lr (and a decoy at the other lr)
    for s, (a, b) in {1: (0.62, 0.53), 2: (0.64, 0.47)}.items():
        _write(tmp_path, "a", "t1", lrs[1], s, 0.0, a)
        _write(tmp_path, "b", "t1", lrs[0], s, 0.0, b)
    _write(tmp_path, "a", "t1", lrs[0], 1, 0.0, 0.99)  # not the chosen lr: ignored
    _write(tmp_path, "a", "t2", lrs[0], 0, 0.5, 0.5)  # t2 incomplete: left out
    _write(tmp_path, "a", "t2", lrs[1], 0, 0.4, 0.4)
    truth = B.write_truth(tmp_path, seeds=3, lrs=lrs, n_models=2).set_index("model")
    assert set(truth["dataset"]) == {"t1"}
    assert truth.loc["a", "value"] == pytest.approx(np.mean([0.60, 0.62, 0.64]))
    assert truth.loc["b", "value"] == pytest.approx(np.mean([0.50, 0.53, 0.47]))
    assert truth.loc["a", "lr"] == lrs[1] and truth.loc["b", "lr"] == lrs[0]
    seeds = (tmp_path / "truth_seeds.csv").read_text().splitlines()
    assert len(seeds) == 1 + 6
