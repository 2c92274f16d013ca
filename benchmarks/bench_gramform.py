"""Procrustes on wide layers (issue 22 item 2): feature form vs Gram form vs Gram form factored once per layer,
against linear CKA, on story 1's layer grid (two timm ResNet-18 at 64 px, 14 × 14 layers).

Timed on the measures alone (activations captured once, float32, as compare holds them):

* ``linear_cka``: one Gram per layer, then ``cka`` per pair (what compare's full-batch CKA costs beyond the forwards);
* ``procrustes, per pair``: ``procrustes(X_i, Y_j)`` for every pair, as compare calls it today (auto = Gram form,
  so each call factors both layers again) -- and ``form="features"`` (the old route) on a few pairs, scaled;
* ``procrustes, factored once``: ``prepare_layer`` per layer, then ``procrustes`` per pair on the factors (the
  wiring compare should use);

plus the equality of the forms on every pair (max |gram − features| over the pairs timed in both) and the cost
model's estimate (:func:`zooscope.measures.estimate_seconds`) next to each measured time.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_gramform.py --n 500 [--feature-pairs 3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

LAYERS = ["conv1", "bn1", "act1", "maxpool", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
          "layer3.1", "layer4.0", "layer4.1", "global_pool", "fc"]


def activations(n: int, seed: int) -> list[np.ndarray]:
    import timm

    from zooscope.embed.capture import capture

    torch.manual_seed(seed)
    net = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    x = torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(100))
    acts = capture(net, x, layers=LAYERS, batch_size=100)
    return [acts[k].numpy() for k in LAYERS]


def main() -> None:
    from zooscope import measures as M

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--feature-pairs", type=int, default=3, help="pairs timed in the old feature form (scaled)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    A, B = activations(args.n, 1), activations(args.n, 2)
    wa, wb = [a.shape[1] for a in A], [b.shape[1] for b in B]
    pairs = len(A) * len(B)
    load0 = os.getloadavg()
    rows = []

    t0 = time.perf_counter()
    Ka = [M.gram_linear(a.astype(np.float64)) for a in A]
    Kb = [M.gram_linear(b.astype(np.float64)) for b in B]
    cka = [[M.cka(k, l) for l in Kb] for k in Ka]
    t_cka = time.perf_counter() - t0
    rows.append(("linear_cka (Gram per layer + cka per pair)", t_cka, M.estimate_seconds("linear_cka", args.n, wa, wb)))

    t0 = time.perf_counter()
    FA = [M.prepare_layer("procrustes", a) for a in A]
    FB = [M.prepare_layer("procrustes", b) for b in B]
    once = np.array([[M.procrustes(fa, fb) for fb in FB] for fa in FA])
    t_once = time.perf_counter() - t0
    rows.append(("procrustes, factored once per layer (prepare_layer)", t_once,
                 M.estimate_seconds("procrustes", args.n, wa, wb)))

    k = max(1, min(args.feature_pairs, len(A)))  # the widest layers: the slow end of the grid
    sub = [(i, i) for i in range(k)]
    t0 = time.perf_counter()
    per_pair = {(i, j): M.procrustes(A[i], B[j]) for i, j in sub}
    t_pp = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    feat = {(i, j): M.procrustes(A[i], B[j], form="features") for i, j in sub}
    t_feat = (time.perf_counter() - t0) / k
    mean_cost = np.mean([M.estimate_seconds("procrustes", args.n, [p], [q]) for p in wa for q in wb])
    sub_cost = np.mean([M.estimate_seconds("procrustes", args.n, [wa[i]], [wb[j]]) for i, j in sub])
    scale = pairs * mean_cost / sub_cost  # from the timed (widest) pairs to the whole grid, by the cost model
    rows.append((f"procrustes per pair, Gram form each call ({k} widest pairs, scaled to {pairs})", t_pp * scale,
                 None))
    rows.append((f"procrustes per pair, feature form / SVD ({k} widest pairs, scaled to {pairs})", t_feat * scale,
                 None))
    gap = max(max(abs(per_pair[ij] - feat[ij]), abs(once[ij] - feat[ij])) for ij in sub)

    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · `OMP_NUM_THREADS={threads} "
          f"PYTHONPATH=. python benchmarks/bench_gramform.py --n {args.n} --feature-pairs {args.feature_pairs}` · "
          f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, torch {torch.__version__} · "
          f"load average before/after {[round(x, 1) for x in load0]} / {[round(x, 1) for x in os.getloadavg()]} · "
          f"GEMM rate here {M.measured_gflops():.1f} GFLOP/s")
    print(f"\nn = {args.n}, {len(A)} × {len(B)} layers of two random-init timm resnet18 at 64 px, widths {wa}\n")
    print("| route | seconds | cost-model estimate (s) | ÷ linear_cka |")
    print("|---|---:|---:|---:|")
    for name, t, est in rows:
        print(f"| {name} | {t:.1f} | {'' if est is None else f'{est:.1f}'} | {t / t_cka:.1f}× |")
    print(f"\nmax |Gram form − feature form| over the {k} pairs timed in both: {gap:.1e}; "
          f"min/max procrustes {once.min():.4f}/{once.max():.4f}; CKA diagonal mean "
          f"{np.mean(np.diag(np.array(cka))):.3f}")


if __name__ == "__main__":
    main()
