"""Speed of zooscope.compare / compare_many against bare forward passes, torch-cka and ckatorch, in one process.

Workload A (similarity_libraries.md §4, issue 11): two seeded 4-layer CNNs (`small_cnn`, seeds 1 and 2; layers
conv1, conv2, conv3, fc with 12,544 / 6,272 / 1,568 / 10 features), 2,000 random 28×28 inputs (torch seed 0),
batch 100, all 4×4 layer pairs:

* forwards         both models, every batch, eval + no_grad: the floor any hook-based method pays
* zs_minibatch     zooscope.compare(measure="minibatch_cka")              (forwards included)
* zs_full_batch    zooscope.compare(measure="linear_cka"), n = 2,000      (forwards included)
* zs_cka_matrix    linear_cka_matrix alone on the collected activations   (the math only)
* torch_cka        torch-cka 0.21 CKA(...).compare(loader), as shipped    (forwards included)
* ckatorch_mb      ckatorch 1.0.3 `cka_batch` per layer pair on the collected activations viewed as
                   (k, B, p) (its hook class cannot take 4-D/2-D layers), forwards included; under a time budget
                   and extrapolated to 16 pairs when the budget runs out

Workload B (layer identification, Kornblith et al. 2019 §6.1): ten Tiny-10-like CNNs (8 conv layers, random
init, 3×32×32 inputs), n = 1,000, batch 250, 8 × 8 layers: ``compare_many`` (each net forward once) against
``compare`` per ordered pair (90 calls; a subset is timed and scaled) — the speed of the protocol, not its
accuracy (the nets are untrained).

Each configuration runs at torch's default thread count (as the process found it: run without OMP_NUM_THREADS
to get one thread per core) and at 1 thread. Methods are interleaved round-robin, ``--repeats`` times after a
warm-up, and the best and the median are kept: the machine may be shared, and the best run is the one least
disturbed by other processes. FLOPs: forwards from torch's FlopCounterMode, Grams as 2·rows·cols·p per GEMM
actually executed. Writes JSON to benchmarks/out/ and prints a markdown section for benchmarks/RESULTS.md.

    python benchmarks/bench_compare.py [--threads 1,default] [--repeats 3]
    python benchmarks/bench_compare.py --report benchmarks/out/bench_compare_<stamp>.json   # the markdown again
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-cka's tqdm bar would interleave with our output

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from zooscope.embed.capture import capture
from zooscope.embed.compare import compare
from zooscope.embed.compare_many import compare_many
from zooscope.measures.minibatch import _GRAM_BLOCK, linear_cka_matrix
from zooscope.nets.models import small_cnn

LAYERS = ["conv1", "conv2", "conv3", "fc"]
TINY = [f"c{i}" for i in range(1, 9)]
HERE = Path(__file__).resolve().parent
DEFAULT_THREADS = torch.get_num_threads()  # before anything changes it


def tiny10(seed: int) -> nn.Module:
    """A Tiny-10-like CNN (Kornblith et al. 2019, Table C.1, without BN): 3×3 convs 16, 16, 16, 32 s2, 32, 32,
    64 s2 valid, then 1×1 conv 64 (blocks c1..c8, each with its ReLU), global average pool, logits."""
    g = torch.Generator().manual_seed(seed)
    spec = [(3, 16, 3, 1, 1), (16, 16, 3, 1, 1), (16, 16, 3, 1, 1), (16, 32, 3, 2, 1), (32, 32, 3, 1, 1),
            (32, 32, 3, 1, 1), (32, 64, 3, 2, 0), (64, 64, 1, 1, 0)]
    blocks = nn.ModuleDict()
    for i, (cin, cout, k, stride, pad) in enumerate(spec, 1):
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (cin * k * k)))
            conv.bias.zero_()
        blocks[f"c{i}"] = nn.Sequential(conv, nn.ReLU())

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for k, v in blocks.items():
                self.add_module(k, v)
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for k in TINY:
                x = getattr(self, k)(x)
            return self.head(x.mean(dim=(2, 3)))

    return Tiny().eval()


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": platform.processor() or "?", "cores": os.cpu_count(), "default_threads": DEFAULT_THREADS,
            "env_OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "?").strip()
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("torch-cka", "ckatorch"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    return info


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def timed(fns: dict, repeats: int) -> dict:
    """Best and median of ``repeats`` runs of each fn after one warm-up, interleaved round-robin."""
    results = {name: fn() for name, fn in fns.items()}  # warm-up (allocators, oneDNN kernels, imports)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(ts), statistics.median(ts), ts, results[name]) for name, ts in times.items()}


# ---- FLOP counts ------------------------------------------------------------------------------------------


def forward_flops(nets, x: torch.Tensor, batch: int) -> float:
    total = 0.0
    for net in nets:
        with torch.no_grad():
            for xb in x.split(batch):
                with FlopCounterMode(display=False) as fc:
                    net(xb)
                total += fc.get_total_flops()
    return total


def minibatch_gram_flops(widths: list[int], n: int, batch: int) -> float:
    """GEMMs of the streamed path: per batch and layer one B×B Gram (2B²p), plus the stacked (L, B²) product."""
    total, L = 0.0, len(widths)
    for s in range(0, n, batch):
        B = min(batch, n - s)
        total += sum(2.0 * B * B * p for p in widths) + 2.0 * L * L * B * B
    return total


def full_gram_flops(widths: list[int], n: int) -> tuple[float, float]:
    """(executed, syrk-equivalent) FLOPs of the full-batch Grams (layers with 4p > n; the triangular blocks)."""
    k = math.ceil(n / _GRAM_BLOCK)
    frac = 1.0 if n <= 2 * _GRAM_BLOCK else (k + 1) / (2 * k)
    grams = [p for p in widths if 4 * p > n]
    executed = sum(2.0 * n * n * p * frac for p in grams)
    return executed, sum(1.0 * n * n * p for p in grams)


# ---- workload A ---------------------------------------------------------------------------------------------


def workload_a(x: torch.Tensor, batch: int, nets, repeats: int, ckatorch_budget: float) -> dict:
    a, b = nets
    loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=False)

    def forwards():
        with torch.no_grad():
            for xb in x.split(batch):
                a(xb)
                b(xb)

    def zs_minibatch():
        return compare(a, b, x, LAYERS, LAYERS, measure="minibatch_cka", batch_size=batch).to_numpy()

    def zs_full():
        return compare(a, b, x, LAYERS, LAYERS, measure="linear_cka", batch_size=batch).to_numpy()

    acts_a, acts_b = capture(a, x, LAYERS, batch_size=batch), capture(b, x, LAYERS, batch_size=batch)

    def zs_matrix():
        return linear_cka_matrix(list(acts_a.values()), list(acts_b.values()))

    def torch_cka():
        from torch_cka import CKA

        m1, m2 = copy.deepcopy(a), copy.deepcopy(b)  # torch-cka leaves its hooks on the models
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cka = CKA(m1, m2, "a", "b", model1_layers=LAYERS, model2_layers=LAYERS)
            cka.compare(loader)
        return cka.export()["CKA"].numpy()

    fns = {"forwards": forwards, "zs_minibatch": zs_minibatch, "zs_full_batch": zs_full,
           "zs_cka_matrix": zs_matrix, "torch_cka": torch_cka}
    rows = {}
    for name, (best, med, times, result) in timed(fns, repeats).items():
        rows[name] = {"best_s": best, "median_s": med, "runs_s": times}
        if result is not None:
            rows[name]["values"] = np.asarray(result, dtype=float).tolist()
        print(f"  [{torch.get_num_threads()} thr] {name:14s} best {best:7.3f} s  median {med:7.3f} s", flush=True)
    mb, tc = np.array(rows["zs_minibatch"]["values"]), np.array(rows["torch_cka"]["values"])
    rows["max_abs_diff_zs_minibatch_vs_torch_cka"] = float(np.abs(mb - tc).max())
    rows["ckatorch_mb"] = ckatorch_minibatch(a, b, x, batch, ckatorch_budget, mb)
    print(f"  [{torch.get_num_threads()} thr] ckatorch_mb    {rows['ckatorch_mb']}", flush=True)
    return rows


def ckatorch_minibatch(a, b, x, batch: int, budget: float, zs_values: np.ndarray) -> dict:
    try:
        from ckatorch.core import cka_batch
    except ImportError:
        return {"skipped": "ckatorch not installed"}
    n = (x.shape[0] // batch) * batch
    t0 = time.perf_counter()
    acts_a, acts_b = capture(a, x[:n], LAYERS, batch_size=batch), capture(b, x[:n], LAYERS, batch_size=batch)
    t_fw = time.perf_counter() - t0
    done, diffs = 0, []
    t1 = time.perf_counter()
    for i, la in enumerate(LAYERS):
        for j, lb in enumerate(LAYERS):
            if time.perf_counter() - t1 > budget:
                break
            v = float(cka_batch(acts_a[la].view(n // batch, batch, -1), acts_b[lb].view(n // batch, batch, -1)))
            diffs.append(abs(v - zs_values[i, j]))
            done += 1
    t_pairs = time.perf_counter() - t1
    return {"pairs_done": done, "forwards_s": t_fw, "pairs_s": t_pairs,
            "extrapolated_16_pairs_s": t_fw + t_pairs * 16 / max(done, 1), "max_abs_diff_vs_zs": max(diffs)}


# ---- workload B: layer identification -----------------------------------------------------------------------


def workload_b(n: int, batch: int, repeats: int, pairwise_pairs: int) -> dict:
    nets = [tiny10(s) for s in range(10)]
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def many():
        return compare_many(nets, x, TINY, measure="linear_cka", batch_size=batch)

    def bare():
        with torch.no_grad():
            for net in nets:
                for xb in x.split(batch):
                    net(xb)

    t_many, t_bare = [], []  # no separate warm-up: workload A has warmed the kernels up; best of `repeats`
    for _ in range(repeats):
        t0 = time.perf_counter()
        table = many()
        t_many.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - t0)
    pairs = [(i, j) for i in range(10) for j in range(10) if i != j][:: max(1, 90 // pairwise_pairs)][:pairwise_pairs]
    t_pair, max_diff = [], 0.0
    for i, j in pairs:
        t0 = time.perf_counter()
        df = compare(nets[i], nets[j], x, TINY, TINY, measure="linear_cka", batch_size=batch)
        t_pair.append(time.perf_counter() - t0)
        ii, jj = min(i, j), max(i, j)
        sub = table[(table.model_a == f"model{ii}") & (table.model_b == f"model{jj}")]
        want = sub.pivot(index="layer_a", columns="layer_b", values="value").loc[TINY, TINY].to_numpy()
        got = df.to_numpy() if i < j else df.to_numpy().T
        max_diff = max(max_diff, float(np.abs(got - want).max()))
    # layer identification accuracy on these (untrained, random) nets, just to show the table is usable
    hits = total = 0
    for i in range(10):
        for j in range(10):
            if i == j:
                continue
            ii, jj = min(i, j), max(i, j)
            sub = table[(table.model_a == f"model{ii}") & (table.model_b == f"model{jj}")]
            M = sub.pivot(index="layer_a", columns="layer_b", values="value").loc[TINY, TINY].to_numpy()
            M = M if i < j else M.T
            hits += int((M.argmax(axis=1) == np.arange(len(TINY))).sum())
            total += len(TINY)
    widths = [16 * 32 * 32] * 3 + [32 * 16 * 16] * 3 + [64 * 7 * 7] * 2
    executed, syrk = full_gram_flops(widths, n)
    fw = forward_flops([nets[0]], x, batch) * 10
    out = {"compare_many_best_s": min(t_many), "compare_many_median_s": statistics.median(t_many),
           "bare_forwards_best_s": min(t_bare), "pairwise_measured": len(pairs),
           "pairwise_per_call_best_s": min(t_pair), "pairwise_per_call_median_s": statistics.median(t_pair),
           "pairwise_90_extrapolated_s": 90 * statistics.median(t_pair), "max_abs_diff_many_vs_pairwise": max_diff,
           "layer_id_accuracy_untrained": hits / total, "gram_flops_executed": 10 * executed,
           "gram_flops_syrk": 10 * syrk, "forward_flops": fw}
    print(f"  [{torch.get_num_threads()} thr] layer-id: {out}", flush=True)
    return out


# ---- report -------------------------------------------------------------------------------------------------


def report(res: dict, command: str) -> str:
    m = res["machine"]
    lines = [f"Run {res['date']} · `{command}` · {m['cpu']}, {m['cores']} logical CPUs, torch {m['torch']}, "
             f"numpy {m['numpy']}, torch-cka {m['torch-cka']}, ckatorch {m['ckatorch']} · load average "
             f"before/after {res['loadavg_before']} / {res['loadavg_after']} · best of {res['repeats']} runs "
             "after a warm-up (median in brackets), methods interleaved.", ""]
    lines += ["| threads | forwards | zs minibatch | zs full batch | linear_cka_matrix only | torch-cka "
              "| ckatorch cka_batch | minibatch ÷ forwards | torch-cka ÷ zs minibatch |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t, r in res["threads"].items():
        A = r["A"]

        def c(k, A=A):
            return f"{A[k]['best_s']:.3f} s ({A[k]['median_s']:.3f})"

        ck = A["ckatorch_mb"]
        ck_s = (f"{ck['extrapolated_16_pairs_s']:.2f} s" + ("" if ck["pairs_done"] == 16 else
                                                              f" (≈, {ck['pairs_done']}/16 pairs)")
                if "pairs_done" in ck else ck.get("skipped", "–"))
        f, mb, tc = A["forwards"]["best_s"], A["zs_minibatch"]["best_s"], A["torch_cka"]["best_s"]
        lines.append(f"| {t} | {c('forwards')} | {c('zs_minibatch')} | {c('zs_full_batch')} | {c('zs_cka_matrix')} "
                     f"| {c('torch_cka')} | {ck_s} | {mb / f:.2f}× | {tc / mb:.2f}× |")
    lines += ["", "| threads | 10-net layer-id: compare_many | bare forwards of the 10 nets "
              "| 90 × compare() (scaled from k calls) | speed-up |", "|---|---|---|---|---|"]
    for t, r in res["threads"].items():
        B = r["B"]
        lines.append(f"| {t} | {B['compare_many_best_s']:.2f} s ({B['compare_many_median_s']:.2f}) "
                     f"| {B['bare_forwards_best_s']:.2f} s | {B['pairwise_90_extrapolated_s']:.1f} s "
                     f"(k = {B['pairwise_measured']}) "
                     f"| {B['pairwise_90_extrapolated_s'] / B['compare_many_best_s']:.1f}× |")
    fl = res["flops"]
    lines += ["", f"FLOPs (workload A): forwards {fl['forward'] / 1e9:.2f} GFLOP; minibatch Grams + stacked HSIC "
              f"{fl['minibatch_gram'] / 1e9:.2f} GFLOP; full-batch Grams {fl['full_gram_executed'] / 1e9:.1f} GFLOP "
              f"executed ({fl['full_gram_syrk'] / 1e9:.1f} GFLOP as syrk). Achieved:"]
    for t, r in res["threads"].items():
        A = r["A"]
        f = A["forwards"]["best_s"]
        extra = A["zs_minibatch"]["best_s"] - f
        lines.append(f"- {t} thread(s): forwards {fl['forward'] / f / 1e9:.1f} GFLOP/s; minibatch CKA beyond the "
                     f"forwards {extra:.3f} s → {fl['minibatch_gram'] / max(extra, 1e-9) / 1e9:.1f} GFLOP/s; "
                     f"linear_cka_matrix {fl['full_gram_executed'] / A['zs_cka_matrix']['best_s'] / 1e9:.1f} "
                     f"GFLOP/s executed ({fl['full_gram_syrk'] / A['zs_cka_matrix']['best_s'] / 1e9:.1f} "
                     "syrk-equivalent); layer-id Grams "
                     f"{r['B']['gram_flops_executed'] / 1e9:.0f} GFLOP.")
        lines.append(f"  max |zs minibatch − torch-cka| {A['max_abs_diff_zs_minibatch_vs_torch_cka']:.1e} "
                     f"(torch-cka is float32 on uncentred Grams); max |compare_many − compare| "
                     f"{r['B']['max_abs_diff_many_vs_pairwise']:.1e}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,default", help="comma list: 'default' and/or integers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--ckatorch-budget", type=float, default=30.0, help="seconds per thread count")
    p.add_argument("--layerid-n", type=int, default=1000)
    p.add_argument("--layerid-batch", type=int, default=250)
    p.add_argument("--layerid-pairwise", type=int, default=6, help="compare() calls timed (scaled to 90)")
    p.add_argument("--layerid-repeats", type=int, default=2)
    p.add_argument("--skip-layerid", action="store_true")
    p.add_argument("--report", type=Path, help="only print the markdown of a saved JSON run")
    args = p.parse_args(argv)
    if args.report:
        res = json.loads(args.report.read_text())
        print(report(res, res.get("command", "?")))
        return res
    torch.manual_seed(0)
    x = torch.randn(args.n, 1, 28, 28)
    nets = (small_cnn(seed=1).eval(), small_cnn(seed=2).eval())
    widths = [16 * 28 * 28, 32 * 14 * 14, 32 * 7 * 7, 10] * 2
    executed, syrk = full_gram_flops(widths, args.n)
    res = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "n": args.n, "batch": args.batch, "repeats": args.repeats, "loadavg_before": loadavg(),
           "blas_pools": [(d["internal_api"], d["num_threads"]) for d in threadpool_info()],
           "command": "python benchmarks/bench_compare.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "flops": {"forward": forward_flops(nets, x, args.batch),
                     "minibatch_gram": minibatch_gram_flops(widths, args.n, args.batch),
                     "full_gram_executed": executed, "full_gram_syrk": syrk}, "threads": {}}
    print(json.dumps({k: res[k] for k in ("machine", "flops", "blas_pools", "loadavg_before")}), flush=True)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"bench_compare_{dt.datetime.now():%Y%m%d_%H%M%S}.json"
    for spec in args.threads.split(","):
        t = DEFAULT_THREADS if spec == "default" else int(spec)
        label = f"{t} (default)" if spec == "default" else str(t)
        torch.set_num_threads(t)
        with threadpool_limits(limits=t):  # the bench's own numpy work (torch-cka export etc.) at the same count
            r = {"A": workload_a(x, args.batch, nets, args.repeats, args.ckatorch_budget)}
            if not args.skip_layerid:
                r["B"] = workload_b(args.layerid_n, args.layerid_batch, args.layerid_repeats, args.layerid_pairwise)
        res["threads"][label] = r
        res["loadavg_after"] = loadavg()
        path.write_text(json.dumps(res, indent=1))  # after each thread count: a partial run is kept
        print(f"wrote {path}", flush=True)
    torch.set_num_threads(DEFAULT_THREADS)
    if not args.skip_layerid:
        print(report(res, res["command"].strip()))
    return res


if __name__ == "__main__":
    main()
