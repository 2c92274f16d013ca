"""Speed of zooscope.compare against bare forward passes and against torch-cka / ckatorch, in one process.

Workload (similarity_libraries.md §4): two seeded 4-layer CNNs (`small_cnn`, seeds 1 and 2; layers conv1,
conv2, conv3, fc with 12,544 / 6,272 / 1,568 / 10 features), 2,000 random 28×28 inputs (torch seed 0),
batch 100, all 4×4 layer pairs. For each thread count (torch threads and BLAS pools both limited):

* forwards         both models, every batch, eval + no_grad: the floor any hook-based method pays
* zs_minibatch     zooscope.compare(measure="minibatch_cka")          (forwards included)
* torch_cka        torch-cka 0.21 CKA(...).compare(loader), as shipped  (forwards included)
* zs_full_batch    zooscope.compare(measure="linear_cka"), n = 2,000    (forwards included)
* zs_cka_matrix    linear_cka_matrix alone on the collected activations (the math only)

plus ckatorch `cka_base` (full batch, 16 pairs) once, under a time budget. Median of --repeats runs after
one warm-up. Writes JSON to benchmarks/out/ and appends a dated section to benchmarks/RESULTS.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compare.py [--threads 1,2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
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
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, TensorDataset

from zooscope.embed.capture import capture
from zooscope.embed.compare import compare
from zooscope.measures.minibatch import linear_cka_matrix
from zooscope.zoo.models import small_cnn

LAYERS = ["conv1", "conv2", "conv3", "fc"]
HERE = Path(__file__).resolve().parent


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cpu": platform.processor() or "?", "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "?").strip()
        info["cores"] = int(fields.get("CPU(s)", info["cores"]))
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    for pkg in ("torch_cka", "ckatorch"):
        try:
            from importlib.metadata import version

            info[pkg] = version(pkg.replace("_", "-"))
        except Exception:
            info[pkg] = None
    return info


def timed(fns: dict, repeats: int) -> dict:
    """Median of ``repeats`` runs of each fn after one warm-up, interleaved round-robin.

    Interleaving puts every method under the same share of any outside load (the machine is shared), so the
    ratios stay meaningful even when the absolute times drift.
    """
    results = {name: fn() for name, fn in fns.items()}  # warm-up (allocators, oneDNN kernels, imports)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts), ts, results[name]) for name, ts in times.items()}


def run(threads: int, repeats: int, x: torch.Tensor, batch: int, nets) -> dict:
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

    rows = {}
    fns = {"forwards": forwards, "zs_minibatch": zs_minibatch, "torch_cka": torch_cka,
           "zs_full_batch": zs_full, "zs_cka_matrix": zs_matrix}
    with threadpool_limits(limits=threads):
        torch.set_num_threads(threads)
        for name, (med, times, result) in timed(fns, repeats).items():
            rows[name] = {"median_s": med, "runs_s": times}
            if result is not None:
                rows[name]["values"] = np.asarray(result, dtype=float).tolist()
            print(f"  [{threads} thr] {name:14s} median {med:7.3f} s  (min {min(times):.3f}, max {max(times):.3f})",
                  flush=True)
    mb, tc = np.array(rows["zs_minibatch"]["values"]), np.array(rows["torch_cka"]["values"])
    rows["max_abs_diff_zs_minibatch_vs_torch_cka"] = float(np.abs(mb - tc).max())
    return rows


def ckatorch_once(x: torch.Tensor, batch: int, nets, budget_s: float, threads: int) -> dict:
    try:
        from ckatorch.core import cka_base
    except ImportError:
        return {"skipped": "ckatorch not installed"}
    a, b = nets
    acts_a, acts_b = capture(a, x, LAYERS, batch_size=batch), capture(b, x, LAYERS, batch_size=batch)
    done, values, t0 = 0, {}, time.perf_counter()
    with threadpool_limits(limits=threads):
        torch.set_num_threads(threads)
        for la in LAYERS:
            for lb in LAYERS:
                if time.perf_counter() - t0 > budget_s:
                    break
                values[f"{la}/{lb}"] = float(cka_base(acts_a[la].double(), acts_b[lb].double(), kernel="linear"))
                done += 1
    elapsed = time.perf_counter() - t0
    full = linear_cka_matrix(list(acts_a.values()), list(acts_b.values()))
    diffs = [abs(v - full[LAYERS.index(k.split("/")[0]), LAYERS.index(k.split("/")[1])])
             for k, v in values.items()]
    return {"pairs_done": done, "elapsed_s": elapsed, "threads": threads,
            "extrapolated_16_pairs_s": elapsed * 16 / max(done, 1),
            "max_abs_diff_vs_zs": float(max(diffs)) if diffs else None}


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def report(res: dict, command: str) -> str:
    m = res["machine"]
    lines = [f"## compare(): minibatch and full-batch CKA vs forwards, torch-cka, ckatorch ({res['date']})", "",
             f"Command: `{command}`  ",
             f"Machine: {m['cpu']}, {m['cores']} logical CPUs; torch {m['torch']}, numpy {m['numpy']}, "
             f"torch-cka {m['torch_cka']}, ckatorch {m['ckatorch']}  ",
             f"Load average before/after: {res['loadavg_before']} / {res['loadavg_after']} (the machine is shared: "
             "treat ratios as more reliable than absolute times)  ",
             f"Workload: 2 × small_cnn (seeds 1, 2), {res['n']} random 28×28 inputs, batch {res['batch']}, 4 × 4 "
             f"layer pairs; median of {res['repeats']} runs after a warm-up, methods interleaved round-robin.", "",
             "| threads | forwards | zs minibatch | torch-cka | zs full-batch (incl. forwards) "
             "| linear_cka_matrix only | minibatch / forwards | torch-cka / zs minibatch |",
             "|---|---|---|---|---|---|---|---|"]
    for t, r in res["threads"].items():
        f, mb, tc = r["forwards"]["median_s"], r["zs_minibatch"]["median_s"], r["torch_cka"]["median_s"]
        lines.append(f"| {t} | {f:.3f} s | {mb:.3f} s | {tc:.3f} s | {r['zs_full_batch']['median_s']:.3f} s "
                     f"| {r['zs_cka_matrix']['median_s']:.3f} s | {mb / f:.2f}× | {tc / mb:.2f}× |")
    ck = res.get("ckatorch", {})
    lines += ["", "Goals: minibatch ≤ 1.3× forwards; ≥ 3× faster than torch-cka; "
              "full batch (n = 2,000, 16 pairs) ≤ 0.5 s."]
    if "elapsed_s" in ck:
        lines.append(f"ckatorch `cka_base` (full batch, float64, {ck['threads']} thread(s)): "
                     f"{ck['pairs_done']}/16 pairs in {ck['elapsed_s']:.1f} s "
                     f"(≈ {ck['extrapolated_16_pairs_s']:.1f} s for 16); "
                     f"max |Δ| vs zooscope {ck['max_abs_diff_vs_zs']:.1e}.")
    else:
        lines.append(f"ckatorch: {ck.get('skipped', 'not run')}.")
    diffs = ", ".join(f"{t} thr: {r['max_abs_diff_zs_minibatch_vs_torch_cka']:.1e}" for t, r in res["threads"].items())
    lines += [f"Max |zooscope minibatch − torch-cka| over the 16 pairs: {diffs} (torch-cka is float32).", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--ckatorch-budget", type=float, default=90.0, help="seconds; 0 skips ckatorch")
    p.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(args.n, 1, 28, 28)
    nets = (small_cnn(seed=1).eval(), small_cnn(seed=2).eval())
    res = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "n": args.n,
           "batch": args.batch, "repeats": args.repeats, "loadavg_before": loadavg(), "threads": {}}
    thread_counts = [int(t) for t in args.threads.split(",")]
    for t in thread_counts:
        res["threads"][str(t)] = run(t, args.repeats, x, args.batch, nets)
        r = res["threads"][str(t)]
        f, mb, tc = r["forwards"]["median_s"], r["zs_minibatch"]["median_s"], r["torch_cka"]["median_s"]
        print(f"  [{t} thr] minibatch / forwards = {mb / f:.2f}×, torch-cka / minibatch = {tc / mb:.2f}×, "
              f"full batch = {r['zs_full_batch']['median_s']:.3f} s", flush=True)
    if args.ckatorch_budget > 0:
        res["ckatorch"] = ckatorch_once(x, args.batch, nets, args.ckatorch_budget, max(thread_counts))
        print(f"  ckatorch: {res['ckatorch']}", flush=True)
    res["loadavg_after"] = loadavg()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"bench_compare_{dt.datetime.now():%Y%m%d_%H%M%S}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    if not args.no_append:
        command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compare.py " + " ".join(sys.argv[1:])
        results = HERE / "RESULTS.md"
        if not results.exists():
            results.write_text(_HEADER)
        with results.open("a") as fh:
            fh.write("\n" + report(res, command.strip()))
        print(f"appended to {results}")
    return res


_HEADER = """# Benchmarks

Speed comparisons of zooscope against its peers, each run in one process on the same data (never collected by
pytest). Every section is appended by its script with the date, the command, the thread counts and the machine.
"""

if __name__ == "__main__":
    main()
