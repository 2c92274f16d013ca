"""Embedding throughput (pairs/s): the local backend vs Ray with 1 and 2 workers, on a CPU-bound workload.

Workload: ``--models`` small CNNs (``zooscope.zoo.models:small_cnn``, width ``--width``, 8×8 input, saved as
safetensors checkpoints) in a fresh SQLite zoo with dataset ``builtin:digits``; ``Zoo.embed(kinds=("cka",))``
embeds every (model, cka) pair: each pair loads its checkpoint by path, runs the zoo's probe set (``--probe-n``
images) through the model and computes the layer signatures. The time is the whole ``embed`` call (planning,
tasks, the driver's catalog writes, the index rebuild); a Ray cluster is started (``ray.init(num_cpus=W)``) before
the clock starts and shut down after. The local backend runs with one torch thread, like one Ray worker.
Ray's worker start-up (a process each, importing torch and zooscope: seconds) is done by a warm-up task per worker
before the clock starts and reported separately (``warmup_s``): a long run pays it once. ``compute_s`` sums each pair's
own time inside its task (model build, probe forward, signature); ``concurrency`` = compute_s / wall time: how
many pairs were being computed at once on average (the local backend also spends the driver's catalog and file
writes between pairs, which Ray overlaps with the next tasks).
Each configuration runs ``--repeats`` times, interleaved (local, ray×1, ray×2, local, …); the best is reported
(the machine is shared, so the best run is the least disturbed).

Run: ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_embed.py --models 24 --repeats 2``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def make_checkpoints(folder: Path, n: int, width: int) -> list[Path]:
    from zooscope.nets.models import save_checkpoint, small_cnn

    out = []
    for s in range(n):
        p = folder / f"cnn{s}_w{width}.safetensors"
        if not p.exists():
            save_checkpoint(small_cnn(in_chans=1, num_classes=10, width=width, img_size=8, seed=s), p)
        out.append(p)
    return out


def _warm_up() -> int:
    import time

    from zooscope.zoo import parallel

    parallel.load_kinds()
    import zooscope.nets.models  # noqa: F401

    time.sleep(1.0)  # hold the CPU slot so each warm-up lands on its own worker
    return os.getpid()


_warm = None


def run_once(backend: str, workers: int, ckpts: list[Path], width: int, probe_n: int, root: Path) -> dict:
    import zooscope as zs

    if root.exists():
        shutil.rmtree(root)
    zoo = zs.Zoo.open(root)
    zoo.configure(probe_n=probe_n)
    zoo.add_dataset("digits", "builtin:digits")
    kw = {"in_chans": 1, "num_classes": 10, "width": width, "img_size": 8}
    for i, p in enumerate(ckpts):
        zoo.add_model(f"m{i}", "zooscope.zoo.models:small_cnn", p, kwargs=kw, trained_on="digits")
    zoo.probe_set((1, 8, 8))  # materialise the probe set before the clock starts
    ray = None
    if backend == "ray":
        import ray

        global _warm
        _warm = ray.remote(num_cpus=1)(_warm_up)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        t0 = time.perf_counter()
        ray.get([_warm.remote() for _ in range(workers)])  # start the workers, import torch + zooscope
        warm_s = time.perf_counter() - t0
    load0 = loadavg()
    t0 = time.perf_counter()
    report = zoo.embed(kinds=("cka",), backend=backend)
    seconds = time.perf_counter() - t0
    if ray is not None:
        ray.shutdown()
    ok = int((report["status"] == "embedded").sum())
    return {"warmup_s": round(warm_s, 2) if ray is not None else 0.0,
            "backend": backend, "workers": workers, "pairs": ok, "failed": int((report["status"] == "failed").sum()),
            "seconds": round(seconds, 2), "pairs_per_s": round(ok / seconds, 3),
            "compute_s": round(float(report["seconds"].sum()), 2),  # sum over pairs of the task's own time
            "concurrency": round(float(report["seconds"].sum()) / seconds, 2), "loadavg": [load0, loadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--probe-n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--configs", default="local:1,ray:1,ray:2")
    ap.add_argument("--out", type=Path, default=HERE / "bench_embed.jsonl")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="zooscope-bench-embed-"))
    try:
        ckpts = make_checkpoints(work, args.models, args.width)
        configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs.split(",")]
        runs = []
        for rep in range(args.repeats):
            for backend, workers in configs:
                r = run_once(backend, workers, ckpts, args.width, args.probe_n, work / "zoo")
                r.update(repeat=rep, models=args.models, width=args.width, probe_n=args.probe_n,
                         date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                         machine=f"{platform.machine()}, {os.cpu_count()} CPUs, shared")
                print(json.dumps(r), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
                runs.append(r)
        best = {}
        for r in runs:
            key = (r["backend"], r["workers"])
            if key not in best or r["pairs_per_s"] > best[key]["pairs_per_s"]:
                best[key] = r
        print("| backend | workers | pairs | best time | pairs/s | s/pair in task | concurrency | Ray warm-up | load |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (b, w), r in best.items():
            print(f"| {b} | {w} | {r['pairs']} | {r['seconds']:.1f} s | {r['pairs_per_s']:.2f} | "
                  f"{r['compute_s'] / max(1, r['pairs']):.2f} s | {r['concurrency']:.2f} | "
                  f"{r['warmup_s']:.1f} s | {r['loadavg'][0]:.1f}, {r['loadavg'][1]:.1f} |")
        one, two, loc = best.get(("ray", 1)), best.get(("ray", 2)), best.get(("local", 1))
        if one and two:
            print(f"Ray 2 workers / 1 worker: {two['pairs_per_s'] / one['pairs_per_s']:.2f}x")
        if one and loc:
            print(f"local / Ray 1 worker: {loc['pairs_per_s'] / one['pairs_per_s']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
