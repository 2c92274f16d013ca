#!/usr/bin/env python
"""`select` with a time budget on a zoo of timm models (issue 16): wall time, peak memory, and agreement with the
exhaustive ranking (top-1, top-3 overlap, τ_w) for budgets of 30 s, 60 s, 120 s and none.

The zoo: ``--per-family`` models of each timm family (default 6 families × 2 = 12) at ``--size`` px, 1 channel, each
trained briefly (``--epochs`` on ``--train-n`` examples of builtin:mnist5k, alternating source tasks: digits
0–4, 5–9, all) so that their scores differ, plus ``--dups`` near-duplicate copies (same checkpoint under another
name). Targets: builtin:digits resized to ``--size`` (all classes, and classes 0–4). Every select runs in a fresh
subprocess on a **cold cache** (``cache/select_features`` emptied first) so that wall time and peak RSS are its own.
τ_w = scipy's weighted Kendall τ between the budgeted and the exhaustive ranks (over every model).

Usage (the RESULTS.md figures, sized to ~20 min on 2 loaded cores)::

    OMP_NUM_THREADS=1 python benchmarks/bench_select_scale.py --root /tmp/zscale --per-family 1 --dups 2 \
        --size 96 --train-n 128 --max-examples 256 --targets digits --append-results

The issue's full size (60 models of 6 families at 128 px, 1,000 target examples, two targets; hours here)::

    OMP_NUM_THREADS=1 python benchmarks/bench_select_scale.py --root /tmp/zscale60 --per-family 10 --dups 6 \
        --size 128 --train-n 1000 --max-examples 1000 --targets digits,digits-low --append-results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

FAMILIES = {
    "resnet": ["resnet10t", "resnet18", "resnet14t", "resnet26", "resnet34"],
    "convnext": ["convnext_atto", "convnext_femto", "convnext_atto_ols", "convnext_pico"],
    "mobilenetv3": ["mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_small_075",
                    "mobilenetv3_large_075"],
    "efficientnet": ["efficientnet_lite0", "efficientnet_b0", "efficientnet_es"],
    "regnet": ["regnetx_002", "regnety_002", "regnetx_004", "regnety_004"],
    "vit": ["vit_tiny_patch16_224", "deit_tiny_patch16_224"],
}
SOURCES = {"src-low": "builtin:mnist5k?classes=0,1,2,3,4", "src-high": "builtin:mnist5k?classes=5,6,7,8,9",
           "src-all": "builtin:mnist5k"}


def build_zoo(a: argparse.Namespace) -> None:
    """Train and register the models (skipped when the zoo exists)."""
    import torch

    from zooscope import Zoo
    from zooscope.nets.datasets import load_dataset, probe_subset
    from zooscope.nets.models import build_model, save_checkpoint
    from zooscope.nets.training import train_classifier

    root = Path(a.root)
    if root.exists() and any(root.iterdir()):
        return
    torch.set_num_threads(1)
    zoo = Zoo.create(root)
    for name, src in SOURCES.items():
        zoo.add_dataset(name, f"{src}{'&' if '?' in src else '?'}size={a.size}")
    zoo.add_dataset("digits", f"builtin:digits?size={a.size}")
    zoo.add_dataset("digits-low", f"builtin:digits?classes=0,1,2,3,4&size={a.size}")
    data = {n: load_dataset(f"{s}{'&' if '?' in s else '?'}size={a.size}") for n, s in SOURCES.items()}
    ck = root.parent / f"{root.name}-checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    made, i = [], 0
    for fam, archs in FAMILIES.items():
        for j in range(a.per_family):
            arch = archs[j % len(archs)]
            src = list(SOURCES)[i % len(SOURCES)]
            kw = {"in_chans": 1, "num_classes": 10, **({"img_size": a.size} if fam == "vit" else {})}
            name = f"{arch}-{j}-{src}"
            t0 = time.perf_counter()
            net = build_model(f"timm:{arch}", kw)
            ds = probe_subset(data[src], min(a.train_n, len(data[src])), seed=j)
            torch.manual_seed(j)
            train_classifier(net, ds.x, ds.y, epochs=a.epochs, batch_size=64, lr=1e-3, seed=j)
            path = save_checkpoint(net, ck / f"{name}.safetensors")
            zoo.add_model(name, f"timm:{arch}", path, kwargs=kw, trained_on=src)
            made.append((name, arch, path, kw, src))
            print(f"trained {name} in {time.perf_counter() - t0:.0f} s", flush=True)
            i += 1
    for d in range(a.dups):
        name, arch, path, kw, src = made[d * max(1, len(made) // max(a.dups, 1)) % len(made)]
        zoo.add_model(f"{name}-dup", f"timm:{arch}", path, kwargs=kw, trained_on=src)


def run_one(a: argparse.Namespace) -> None:
    """One select in this (fresh) process; prints JSON: seconds, peak RSS, the ranking."""
    import torch

    from zooscope import Zoo

    torch.set_num_threads(1)
    zoo = Zoo.open(a.root)
    shutil.rmtree(Path(a.root) / "cache" / "select_features", ignore_errors=True)  # cold cache
    budget = None if a.one_budget == "none" else float(a.one_budget)
    t0 = time.perf_counter()
    t = zoo.select(a.one_target, k=10_000, history=False, budget_s=budget, max_examples=a.max_examples)
    sec = time.perf_counter() - t0
    n_full = min(a.max_examples, zoo.catalog.get_dataset(a.one_target).size)
    print(json.dumps({"seconds": sec, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "n_full": n_full,
                      "models": t["model"].tolist(),
                      "examples": t["examples"].tolist() if "examples" in t else None}))


def compare(ref: list[str], got: list[str]) -> dict[str, float]:
    from scipy.stats import weightedtau

    pos = {m: i for i, m in enumerate(got)}
    names = list(ref)
    r_ref = [-i for i in range(len(names))]
    r_got = [-pos[m] for m in names]
    return {"top1": float(ref[0] == got[0]), "top3": len(set(ref[:3]) & set(got[:3])) / 3,
            "tau_w": float(weightedtau(r_ref, r_got)[0])}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", default="/tmp/zscale")
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--dups", type=int, default=3)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--train-n", type=int, default=400)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-examples", type=int, default=1000)
    p.add_argument("--targets", default="digits,digits-low")
    p.add_argument("--budgets", default="30,60,120,none")
    p.add_argument("--out", default="benchmarks/bench_select_scale.jsonl")
    p.add_argument("--append-results", action="store_true")
    p.add_argument("--one-target")
    p.add_argument("--one-budget")
    a = p.parse_args()
    if a.one_target:
        run_one(a)
        return
    t0 = time.perf_counter()
    build_zoo(a)
    print(f"zoo ready in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for target in a.targets.split(","):
        res = {}
        for b in ["none", *[x for x in a.budgets.split(",") if x != "none"]]:
            cmd = [sys.executable, __file__, "--root", a.root, "--one-target", target, "--one-budget", b,
                   "--max-examples", str(a.max_examples)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            res[b] = json.loads(out)
            row = {"target": target, "budget": b, "seconds": round(res[b]["seconds"], 1),
                   "peak_rss_mb": round(res[b]["peak_rss_mb"]), "n_models": len(res[b]["models"]),
                   "full_size_models": (sum(e == res[b]["n_full"] for e in res[b]["examples"])
                                        if res[b]["examples"] else len(res[b]["models"])),
                   "examples": sorted(set(res[b]["examples"] or [res[b]["n_full"]])),
                   **compare(res["none"]["models"], res[b]["models"])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cmd": " ".join(sys.argv),
            "threads": os.environ.get("OMP_NUM_THREADS"), "load": os.getloadavg()[0],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)"}
    with open(a.out, "a") as f:
        for r in rows:
            f.write(json.dumps({**meta, **r}) + "\n")
    if a.append_results:
        lines = ["", f"### bench_select_scale {meta['date']}", "",
                 f"`{meta['cmd']}` · threads {meta['threads']} · {meta['machine']} · load average "
                 f"{meta['load']:.1f} at the end", "",
                 "| target | budget | wall s | peak RSS MB | models at full size | round sizes | top-1 = exhaustive "
                 "| top-3 overlap | τ_w vs exhaustive |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['target']} | {r['budget']} | {r['seconds']} | {r['peak_rss_mb']} | "
                  f"{r['full_size_models']}/{r['n_models']} | {r['examples']} | {r['top1']:.0f} | {r['top3']:.2f} | "
                  f"{r['tau_w']:.3f} |" for r in rows]
        print("\n".join(lines))


if __name__ == "__main__":
    main()
