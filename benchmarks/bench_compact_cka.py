"""Compact CKA vectors (issue 22 item 6): the error of float16-stored CKA signatures against the exact linear CKA,
and the storage per model.

Models: ``timm:resnet10t`` (``num_classes=10``, random init, one seed each) at 32 × 32 × 3 on a fixed probe set of
``--n`` inputs (gratings + noise); the zoo's default layers. For every pair of models and every pair of layers the
exact value is ``zooscope.measures.linear_cka`` on the float64 activations; the stored forms are the float32
signature (the zoo's default) and its float16 cast (``zooscope configure --cka-dtype float16``), compared by a
float64 inner product as the zoo's re-ranking does. Storage per model is the size of the ``.npy`` file the zoo
writes (``np.save`` of the (layers, n²) stack).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_compact_cka.py --models 4 --n 512``
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--n", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from zooscope.embed.capture import capture, default_layers
    from zooscope.embed.signature import gram_signature
    from zooscope.measures import linear_cka
    from zooscope.nets.models import build_model

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    x = np.stack([np.stack([np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p) for p in rng.uniform(0, 6.3, 3)])
                  for f in rng.uniform(1, 6, size=(args.n, 2))]) + rng.normal(0, 0.3, (args.n, 3, 32, 32))
    x = torch.as_tensor(x, dtype=torch.float32)
    acts, sigs = [], []
    t0 = time.perf_counter()
    for seed in range(args.models):
        torch.manual_seed(seed)
        net = build_model("timm:resnet10t", {"num_classes": 10})
        layers = default_layers(net)
        a = {k: v.double().reshape(args.n, -1).numpy() for k, v in capture(net, x, layers).items()}
        acts.append(a)
        sigs.append(np.stack([gram_signature(v).astype(np.float32) for v in a.values()]))
    errs = {"float32": [], "float16": []}
    for i in range(args.models):
        for j in range(i + 1, args.models):
            names = list(acts[i])
            for p, la in enumerate(names):
                for q, lb in enumerate(names):
                    exact = linear_cka(acts[i][la], acts[j][lb])
                    for dt in errs:
                        u = sigs[i][p].astype(dt).astype(np.float64)
                        v = sigs[j][q].astype(dt).astype(np.float64)
                        errs[dt].append(abs(float(u @ v) - exact))
    sizes = {}
    for dt in errs:
        buf = io.BytesIO()
        np.save(buf, sigs[0].astype(dt), allow_pickle=False)
        sizes[dt] = buf.getbuffer().nbytes
    load = os.getloadavg()[0]
    print(f"date {time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores, load {load:.1f}, "
          f"1 thread, {time.perf_counter() - t0:.0f} s; {args.models} models × {len(sigs[0])} layers, "
          f"n = {args.n}, {len(errs['float16'])} layer pairs")
    print("| stored as | max abs error vs exact CKA | mean abs error | 99th pct | storage per model |")
    print("|---|---|---|---|---|")
    for dt, e in errs.items():
        e = np.asarray(e)
        print(f"| {dt} | {e.max():.2e} | {e.mean():.2e} | {np.quantile(e, 0.99):.2e} | "
              f"{sizes[dt] / 2**20:.2f} MiB |")


if __name__ == "__main__":
    main()
