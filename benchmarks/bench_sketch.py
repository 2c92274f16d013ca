"""Seed 000 (Tang et al. 2020): sketching bias of gradient-kernel CKA against M, and the cost of grad_cka/grad_nbs.

Workload: the seed-A pair of randomly initialised torchvision ResNet-18s (``torch.manual_seed(1)`` / ``(2)``,
``num_classes=10``) on seed-A-like 32×32 images (8 low-frequency prototypes + noise), the reference's 12 layers.

1. Bias: exact n × n gradient kernels vs CountSketch kernels (M buckets, T = 1, several sketch seeds); reports the
   mean |sketched − exact| CKA over the 12 × 12 net1-vs-net2 heat-map and over its diagonal.
2. Cost: ``zooscope.compare(..., measure="grad_cka" | "grad_nbs", sketch_dim=M)`` at n = 1,000 (11 module layers;
   ``compare`` takes module names, so the ``input`` pseudo-layer is left out), against one plain
   forward+backward stream over the same data (the floor).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sketch.py [--append-results]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import zooscope as zs
from zooscope.embed.gradients import iter_features_and_gradients, xfer_resnet_layers
from zooscope.measures.sketch import SketchAccumulator, gradient_kernel, kernel_index_matrix

HERE = Path(__file__).parent
DATA = HERE.parent / "tests" / "data"


def images(n: int, seed: int = 2020) -> torch.Tensor:
    """Seed-A-like inputs: 8 prototypes (3×4×4 normal, upsampled ×8) by i % 8, + 0.5·normal noise."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((8, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    x = protos[np.arange(n) % 8] + 0.5 * rng.standard_normal((n, 3, 32, 32))
    return torch.from_numpy(x.astype(np.float32))


def resnet(seed: int) -> torch.nn.Module:
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    torch.set_rng_state(state)
    return net


def kernels_for(net, x, Ms, seeds, batch_size=128):
    """Exact kernels and CountSketch kernels for every (M, seed), one layer-major pass over F/G."""
    layers = xfer_resnet_layers(net)
    per = {name: ([], []) for name in layers}
    for out in iter_features_and_gradients(net, x.split(batch_size), layers):
        for name, (f, g) in out.items():
            per[name][0].append(f)
            per[name][1].append(g)
    exact, sketched = [], {(m, s): [] for m in Ms for s in seeds}
    for name in layers:
        F, G = np.concatenate(per[name][0]), np.concatenate(per[name][1])
        del per[name]
        exact.append(gradient_kernel(F, G))
        for m in Ms:
            for s in seeds:
                sketched[m, s].append(SketchAccumulator(m, 1, s).update(F, G).kernel())
    return exact, sketched


def bias(n: int, Ms: list[int], seeds: list[int]) -> dict:
    x = images(n)
    t0 = time.perf_counter()
    e1, s1 = kernels_for(resnet(1), x, Ms, seeds)
    e2, s2 = kernels_for(resnet(2), x, Ms, seeds)
    exact = kernel_index_matrix(e1, e2, "cka")
    rows = []
    for m in Ms:
        vals = np.stack([kernel_index_matrix(s1[m, s], s2[m, s], "cka") for s in seeds])
        err = np.abs(vals - exact)
        rows.append({"M": m, "mean_abs_err": float(err.mean()), "diag_mean_abs_err": float(
            np.mean([np.diag(e).mean() for e in err])), "diag_sketched_min": float(np.diag(vals.mean(0)).min()),
            "diag_sketched_max": float(np.diag(vals.mean(0)).max()), "mean_signed_err": float((vals - exact).mean())})
    return {"n": n, "seeds": seeds, "exact_diag": np.diag(exact).round(4).tolist(), "rows": rows,
            "seconds": time.perf_counter() - t0}


def reference_diagonals() -> dict:
    ref = json.loads((DATA / "seedA_xfer_gradsim.json").read_text())
    out = {}
    for case in ("M64_T1", "M128_T1", "M128_T2", "unsketched"):
        d = np.diag(np.asarray(ref["cases"][case]["float64_kernels"]["cka"]["net1_vs_net2"]))
        out[case] = [round(float(d.min()), 3), round(float(d.max()), 3)]
    return out


def cost(n: int, Ms: list[int]) -> dict:
    x = images(n, seed=7)
    a, b = resnet(1), resnet(2)
    layers = [name for name in xfer_resnet_layers(a) if name != "input"]
    t0 = time.perf_counter()
    for net in (a, b):
        for _ in iter_features_and_gradients(net, x.split(256), layers):
            pass
    floor = time.perf_counter() - t0
    out = {"n": n, "layers": len(layers), "forward_backward_both_models_s": floor, "runs": []}
    for measure in ("grad_cka", "grad_nbs"):
        for m in Ms:
            t0 = time.perf_counter()
            table = zs.compare(a, b, x, layers_a=layers, layers_b=layers, measure=measure, batch_size=256,
                               sketch_dim=m, seed=0)
            sec = time.perf_counter() - t0
            out["runs"].append({"measure": measure, "M": m, "seconds": sec,
                                "diag_mean": float(np.diag(table.to_numpy()).mean())})
            print(f"  {measure:9s} M={m:4d}: {sec:6.1f} s (diag mean {out['runs'][-1]['diag_mean']:.3f})")
    return out


def markdown(res: dict, cmd: str) -> str:
    b, c, r = res["bias"], res["cost"], res["reference_diag_range"]
    lines = [
        "", "## Gradient-kernel sketching (seed 000, `benchmarks/bench_sketch.py`), seed engineer", "",
        f"{res['date']} · `{cmd}` · OMP/torch threads = {res['threads']} · {res['machine']}. The machine was shared "
        "with other engineers' jobs, so absolute times are pessimistic.", "",
        "**What the reference computes** (reproduced to 1e-15 CKA / 3e-8 NBS on its saved kernels, "
        "`tests/test_oracle_seedA.py`): features f and label-free gradients g = ∂/∂f Σ_c q_c log p_c "
        "(q = p^0.5/Σp^0.5 held constant, eval mode; `conv1` taken before `bn1`), the sketched kernel "
        "K̃ = (SF)(SF)ᵀ/T ∘ (SG)(SG)ᵀ/T (not S(FFᵀ∘GGᵀ)Sᵀ), CKA/NBS on the biased-centred K̃ with NBS divided by "
        "√(tr·tr), Euclidean ‖K₁−K₂‖_F on raw kernels.", "",
        f"**Sketching inflates cross-network similarity.** Reference heat-maps, net1-vs-net2 diagonal (n = 256): "
        f"M=64 {r['M64_T1']}, M=128 {r['M128_T1']}, M=128/T=2 {r['M128_T2']}, exact {r['unsketched']}. Our "
        "implementation reproduces the exact range.", "",
        f"Bias against M: exact vs CountSketch (T = 1) gradient-kernel CKA, ResNet-18 seed 1 vs seed 2, "
        f"n = {b['n']}, 12 × 12 layer heat-map, {len(b['seeds'])} sketch seeds. Exact diagonal: "
        f"{min(b['exact_diag']):.2f}–{max(b['exact_diag']):.2f}.", "",
        "| M | mean abs error (all pairs) | mean signed error | mean abs error (diagonal) | sketched diagonal |",
        "|---|---|---|---|---|",
    ]
    for row in b["rows"]:
        diag = f"{row['diag_sketched_min']:.2f}–{row['diag_sketched_max']:.2f}"
        lines.append(f"| {row['M']} | {row['mean_abs_err']:.3f} | {row['mean_signed_err']:+.3f} | "
                     f"{row['diag_mean_abs_err']:.3f} | {diag} |")
    lines += [
        "", f"Cost at n = {c['n']:,} (ResNet-18 pair, {c['layers']} layers, batch 256, 1 thread): one forward + "
        f"backward stream of both models alone takes {c['forward_backward_both_models_s']:.1f} s.", "",
        "| measure | M | wall time |", "|---|---|---|",
    ]
    lines += [f"| {run['measure']} | {run['M']} | {run['seconds']:.1f} s |" for run in c["runs"]]
    lines += [
        "", "Reading: on this pair the inflation does **not** shrink with M between 16 and 256 (n = 512), while on "
        "the synthetic data of `tests/measures/test_sketch.py` it does. Why [derived]: a bucket holds "
        "Σ_{i∈b} s_i f_i, so a common feature mean μ survives as c_b μ with c_b = Σ_{i∈b} s_i, and "
        "(SF)(SF)ᵀ ≈ ‖μ‖² c cᵀ + …; E[c] = 0, so centring the M × M kernel cannot remove it, and c is the same "
        "for both networks (same S): a shared component whose weight relative to the rest does not depend on M "
        "while buckets hold more than one example. Without collisions the signs cancel in the Hadamard product "
        "(a signed permutation gives the exact CKA). So compare sketched values only with each other (same M, T, "
        "seed); for n up to a few thousand prefer `sketch_dim=None` (exact, O(n·d) memory).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-bias", type=int, default=512)
    p.add_argument("--n-cost", type=int, default=1000)
    p.add_argument("--Ms", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--cost-Ms", type=int, nargs="+", default=[128, 512])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "out" / "bench_sketch.json")
    p.add_argument("--append-results", action="store_true", help="append a section to benchmarks/RESULTS.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    res = {"date": dt.date.today().isoformat(), "threads": torch.get_num_threads(),
           "omp": os.environ.get("OMP_NUM_THREADS"), "machine": f"{platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"}
    print("bias ...")
    res["bias"] = bias(args.n_bias, args.Ms, list(range(args.seeds)))
    for row in res["bias"]["rows"]:
        print(f"  M={row['M']:4d}  mean|err|={row['mean_abs_err']:.3f}  diag|err|={row['diag_mean_abs_err']:.3f}")
    res["reference_diag_range"] = reference_diagonals()
    print("cost ...")
    res["cost"] = cost(args.n_cost, args.cost_Ms)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sketch.py --append-results"
    text = markdown(res, cmd)
    print(text)
    if args.append_results:
        results = HERE / "RESULTS.md"
        prior = results.read_text() if results.exists() else "# Benchmarks\n"
        results.write_text(prior.rstrip("\n") + "\n" + text)


if __name__ == "__main__":
    main()
