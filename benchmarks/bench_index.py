"""The vector index at a million signatures: build time, memory, recall@10 and query latency per variant.

Data: ``n`` unit-norm clustered vectors at d = 256 (the signature dimension): 1,000 centres with Zipf-like sizes,
each point = its centre + Gaussian noise of norm ~0.6 (``--noise``), then L2-normalised; 1,000 held-out queries
from the same mixture; inner product (cosine). Ground truth: exact top-10 (faiss IndexFlatIP over the whole set,
in chunks).

Each variant runs in its own child process (so its memory is its own): the parent generates the data once into
``--cache`` (a float32 ``.npy`` read by memory map), computes the exact answers, then starts one child per variant
and collects a JSON line from each. Results are appended to ``--out`` (JSON lines) as each variant finishes: a rerun
skips the variants already there (resumable); ``--force`` reruns them.

Variants (``--methods``, comma separated):
  default       zooscope's `VectorIndex.build(X, ids)` with `choose_factory` (what a zoo builds), then saved and
                loaded back (sha256-checked) before the queries
  default_mmap  the same with a 256 MB RAM budget: the exact vectors are memory-mapped (build and load)
  flat          exact IndexFlatIP (the reference for speed)
  ivf_flat      IVF{nlist},Flat, nprobe
  ivf_sq8       IVF{nlist},SQ8, nprobe, no re-rank
  ivf_sq8_rr    IVF{nlist},SQ8 candidates (k × oversample) + exact re-rank from float vectors in RAM
  ivf_sq8_mmap  the same, exact vectors memory-mapped from the data file on disk (not loaded)
  ivf_pq_mmap   IVF{nlist},PQ32 candidates + exact re-rank from the memory-mapped float vectors
  hnsw_sq8      HNSW32_SQ8, efSearch 128 (graph over 8-bit codes), no re-rank

Timing: ``batched_ms`` = the fastest of ``--batched-repeats`` (3) runs of all queries in one call, per query;
``single_ms`` = the median of ``--single`` (200) one-query calls (``single_mean_ms`` their mean). ``*_cpu_*``: the
same in process CPU time, which other jobs on a shared machine do not inflate (with one thread, CPU time ≈ the
wall time on an idle machine). Threads: ``--threads`` (default $OMP_NUM_THREADS).

Memory: ``rss_peak_mb`` is the child's peak resident set (VmHWM, includes the data it read); ``anon_mb`` /
``file_mb`` are its anonymous (real RAM need) and file-backed (page cache of memory-mapped files, which the kernel
can drop) resident pages after the queries.

Run (1M, as in RESULTS.md):
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_index.py --n 1000000 \
        --out benchmarks/bench_index_1M.jsonl --results
Quick: ``--n 100000`` (seconds to a minute a variant).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DIM = 256
K = 10
METHODS = ["default", "default_mmap", "flat", "ivf_flat", "ivf_sq8", "ivf_sq8_rr", "ivf_sq8_mmap", "ivf_pq_mmap",
           "hnsw_sq8"]


# -- data ---------------------------------------------------------------------------------------------------------
def data_paths(cache: Path, n: int, dim: int, seed: int, noise: float = 0.6) -> dict[str, Path]:
    stem = f"clustered_n{n}_d{dim}_s{seed}" + ("" if noise == 0.6 else f"_noise{noise:g}")
    return {"x": cache / f"{stem}.npy", "q": cache / f"{stem}_q.npy", "gt": cache / f"{stem}_gt{K}.npy"}


def make_data(cache: Path, n: int, dim: int, seed: int, nq: int, threads: int,
              noise_norm: float = 0.6) -> dict[str, Path]:
    import faiss

    cache.mkdir(parents=True, exist_ok=True)
    p = data_paths(cache, n, dim, seed, noise_norm)
    rng = np.random.default_rng(seed)
    n_centres = 1000
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    w = 1.0 / np.arange(1, n_centres + 1) ** 0.5
    w /= w.sum()
    noise = noise_norm / np.sqrt(dim)

    def draw(m: int, g: np.random.Generator) -> np.ndarray:
        x = centres[g.choice(n_centres, size=m, p=w)] + noise * g.standard_normal((m, dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    if not p["x"].exists():
        t0 = time.perf_counter()
        tmp = p["x"].with_suffix(".tmp.npy")
        X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for s in range(0, n, 100_000):
            X[s:s + 100_000] = draw(min(100_000, n - s), np.random.default_rng([seed, s]))
        X.flush()
        del X
        os.replace(tmp, p["x"])
        print(f"data: {n} x {dim} in {time.perf_counter() - t0:.1f} s -> {p['x']}", flush=True)
    if not p["q"].exists():
        np.save(p["q"], draw(nq, np.random.default_rng([seed, 10**9])))
    if not p["gt"].exists():
        t0 = time.perf_counter()
        faiss.omp_set_num_threads(threads)
        X = np.load(p["x"], mmap_mode="r")
        Q = np.load(p["q"])
        best_d = np.full((len(Q), K), -np.inf, dtype=np.float32)
        best_i = np.full((len(Q), K), -1, dtype=np.int64)
        for s in range(0, n, 100_000):
            flat = faiss.IndexFlatIP(dim)
            flat.add(np.ascontiguousarray(X[s:s + 100_000]))
            d, i = flat.search(Q, K)
            dd, ii = np.hstack([best_d, d]), np.hstack([best_i, i + s])
            o = np.argsort(-dd, axis=1, kind="stable")[:, :K]
            best_d, best_i = np.take_along_axis(dd, o, 1), np.take_along_axis(ii, o, 1)
        np.save(p["gt"], best_i)
        print(f"ground truth in {time.perf_counter() - t0:.1f} s", flush=True)
    return p


# -- memory ---------------------------------------------------------------------------------------------------------
def mem_status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(val.split()[0]) / 1024.0
    return out


# -- variants (child) ----------------------------------------------------------------------------------------------
def exact_rerank(X, Q: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """Top-k rows among each query's candidates by exact inner product with the float vectors ``X`` (RAM or mmap)."""
    out = np.full((len(Q), k), -1, dtype=np.int64)
    for r in range(len(Q)):
        c = cand[r][cand[r] >= 0]
        if not c.size:
            continue
        order = np.argsort(c)  # ascending rows: sequential reads from the memory map
        c = c[order]
        s = X[c] @ Q[r]
        top = np.argsort(-s, kind="stable")[:k]
        out[r, :len(top)] = c[top]
    return out


def run_variant(method: str, paths: dict[str, Path], args: argparse.Namespace) -> dict:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    n = args.n
    Q = np.load(paths["q"])
    gt = np.load(paths["gt"])
    Xm = np.load(paths["x"], mmap_mode="r")
    nlist = args.nlist or int(2 ** round(np.log2(max(16.0, np.sqrt(n)))))
    info: dict = {"method": method, "n": n, "dim": DIM, "threads": args.threads}

    def read_all() -> np.ndarray:
        return np.load(paths["x"])  # a private in-RAM copy

    def train_sample(m: int) -> np.ndarray:
        rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, m), replace=False))
        return np.ascontiguousarray(Xm[rows])

    def add_chunked(index, chunk: int = 65_536) -> None:
        buf = np.empty((chunk, DIM), dtype=np.float32)
        with open(paths["x"], "rb") as f:
            f.seek(Xm.offset)  # past the .npy header
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                f.readinto(memoryview(buf[:m]).cast("B"))
                index.add(buf[:m])

    search_batched: callable
    search_one: callable
    t0, cpu0 = time.perf_counter(), time.process_time()
    if method in ("default", "default_mmap"):
        sys.path.insert(0, str(HERE.parent))
        from zooscope.index import VectorIndex, choose_factory, estimate_memory

        factory = choose_factory(n, DIM)
        info["factory"] = factory
        info["estimate_mb"] = round(estimate_memory(n, DIM, factory) / 2**20)
        budget = 256 * 2**20 if method == "default_mmap" else None  # force the memory-mapped exact vectors
        vi = VectorIndex.build(Xm, np.arange(n, dtype=np.int64), factory=factory, memory_budget=budget,
                               mmap_dir=args.cache)
        info["build_s"] = round(time.perf_counter() - t0, 2)
        info["build_cpu_s"] = round(time.process_time() - cpu0, 2)
        info["exact"] = "memory-mapped" if vi.memory_mapped else "RAM"
        t1 = time.perf_counter()
        path = args.cache / f"{paths['x'].stem}_{method}.faiss"
        sha = vi.save(path)
        info["save_s"] = round(time.perf_counter() - t1, 2)
        info["files_mb"] = round(sum(p.stat().st_size for p in VectorIndex.files(path)) / 2**20)
        del vi
        t1 = time.perf_counter()
        vi = VectorIndex.load(path, sha, mmap=method == "default_mmap")
        info["load_s"] = round(time.perf_counter() - t1, 2)
        info["search_params"] = {"nprobe": vi.nprobe, "oversample": vi.oversample}

        def search_batched(q):
            return vi.search(q, K)[1]

        def search_one(q):
            return vi.search(q, K)[1]
    elif method == "flat":
        index = faiss.IndexFlatIP(DIM)
        X = read_all()
        t0, cpu0 = time.perf_counter(), time.process_time()
        index.add(X)
        del X
        info["factory"] = "Flat"

        def search_batched(q):
            return index.search(q, K)[1]

        search_one = search_batched
    elif method in ("ivf_flat", "ivf_sq8", "ivf_sq8_rr", "ivf_sq8_mmap", "ivf_pq_mmap"):
        code = {"ivf_flat": "Flat", "ivf_pq_mmap": f"PQ{args.pq_m}"}.get(method, "SQ8")
        factory = f"IVF{nlist},{code}"
        info["factory"] = factory
        index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(train_sample(args.train_per_list * nlist))
        info["train_s"] = round(time.perf_counter() - t0, 2)
        add_chunked(index)
        index.nprobe = args.nprobe
        info["search_params"] = {"nprobe": args.nprobe}
        if method in ("ivf_flat", "ivf_sq8"):
            def search_batched(q):
                return index.search(q, K)[1]
        else:
            exact = read_all() if method == "ivf_sq8_rr" else Xm
            kc = K * args.oversample
            info["search_params"]["candidates"] = kc
            info["rerank_from"] = "RAM" if method == "ivf_sq8_rr" else "memory-mapped .npy"

            def search_batched(q):
                return exact_rerank(exact, q, index.search(q, kc)[1], K)
        search_one = search_batched
    elif method == "hnsw_sq8":
        index = faiss.index_factory(DIM, "HNSW32_SQ8", faiss.METRIC_INNER_PRODUCT)
        info["factory"] = "HNSW32_SQ8"
        index.train(train_sample(100_000))
        add_chunked(index)
        index.hnsw.efSearch = 128
        info["search_params"] = {"efSearch": 128, "efConstruction": index.hnsw.efConstruction}

        def search_batched(q):
            return index.search(q, K)[1]

        search_one = search_batched
    else:
        raise SystemExit(f"unknown method {method}")
    info["build_s"] = info.get("build_s") or round(time.perf_counter() - t0, 2)
    info["build_cpu_s"] = info.get("build_cpu_s") or round(time.process_time() - cpu0, 2)
    info["rss_after_build_mb"] = round(mem_status()["VmRSS"])

    search_batched(Q[:10])  # warm-up
    runs, cpu = [], []
    for _ in range(args.batched_repeats):  # the least disturbed of a few runs (the machine is shared)
        t0, c0 = time.perf_counter(), time.process_time()
        I = search_batched(Q)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    info["batched_ms"] = round(min(runs) * 1000 / len(Q), 4)
    info["batched_ms_runs"] = [round(r * 1000 / len(Q), 4) for r in runs]
    info["batched_cpu_ms"] = round(min(cpu) * 1000 / len(Q), 4)  # CPU time: what contention does not inflate
    info["recall10"] = round(float(np.mean([len(set(I[r]) & set(gt[r])) / K for r in range(len(Q))])), 4)
    n_single = min(args.single, len(Q))
    times, cpu = [], []
    for r in range(n_single):
        t0, c0 = time.perf_counter(), time.process_time()
        search_one(Q[r:r + 1])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    info["single_ms"] = round(1000 * float(np.median(times)), 3)
    info["single_mean_ms"] = round(1000 * float(np.mean(times)), 3)
    info["single_cpu_ms"] = round(1000 * float(np.mean(cpu)), 3)
    info["single_p90_ms"] = round(1000 * float(np.quantile(times, 0.9)), 3)
    if method.startswith("default") and args.sweep:  # recall / speed against IVF lists probed
        info["sweep"] = []
        for p in (int(v) for v in args.sweep.split(",")):
            vi.nprobe = p
            t0, c0 = time.perf_counter(), time.process_time()
            Ip = search_batched(Q)
            b_ms = (time.perf_counter() - t0) * 1000 / len(Q)
            b_cpu = (time.process_time() - c0) * 1000 / len(Q)
            one, one_cpu = [], []
            for r in range(min(50, len(Q))):
                t0, c0 = time.perf_counter(), time.process_time()
                search_one(Q[r:r + 1])
                one.append(time.perf_counter() - t0)
                one_cpu.append(time.process_time() - c0)
            rec = float(np.mean([len(set(Ip[r]) & set(gt[r])) / K for r in range(len(Q))]))
            info["sweep"].append({"nprobe": p, "recall10": round(rec, 4), "batched_ms": round(b_ms, 4),
                                  "batched_cpu_ms": round(b_cpu, 4),
                                  "single_ms": round(1000 * float(np.median(one)), 3),
                                  "single_cpu_ms": round(1000 * float(np.mean(one_cpu)), 3)})
    m = mem_status()
    info.update(rss_peak_mb=round(m["VmHWM"]), anon_mb=round(m["RssAnon"]), file_mb=round(m["RssFile"]))
    return info


# -- parent ---------------------------------------------------------------------------------------------------------
def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="single-query timings (median reported)")
    ap.add_argument("--batched-repeats", type=int, default=3, help="batched runs (the fastest is reported)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists (0: 2**round(log2(sqrt(n))))")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--sweep", default="", help="default variants: also time these nprobe values (e.g. 4,8,32)")
    ap.add_argument("--oversample", type=int, default=10, help="re-rank candidates = k × this")
    ap.add_argument("--pq-m", type=int, default=32)
    ap.add_argument("--train-per-list", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.6, help="norm of the noise around each unit centre")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "zooscope_bench_index")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines (resumable); default bench_index_<n>.jsonl")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per variant before it is killed")
    ap.add_argument("--results", action="store_true", help="print the RESULTS.md table of --out at the end")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    paths = data_paths(args.cache, args.n, DIM, args.seed, args.noise)
    if args.child:
        print("RESULT " + json.dumps(run_variant(args.child, paths, args)), flush=True)
        return
    out = args.out or HERE / f"bench_index_{args.n}.jsonl"
    make_data(args.cache, args.n, DIM, args.seed, args.queries, args.threads, args.noise)
    done = set()
    if out.exists() and not args.force:
        done = {json.loads(line)["method"] for line in out.read_text().splitlines() if line.strip()}
    for method in args.methods.split(","):
        if method in done:
            print(f"{method}: already in {out}, skipped (--force reruns)", flush=True)
            continue
        cmd = [sys.executable, __file__, "--child", method] + [a for a in sys.argv[1:] if a not in ("--force",)]
        load0, t0 = loadavg(), time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            rec = json.loads(lines[-1][7:]) if lines else {"method": method, "error": proc.stderr[-800:]}
        except subprocess.TimeoutExpired:
            rec = {"method": method, "error": f"killed after {args.timeout:.0f} s"}
        rec.update(date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                   wall_s=round(time.perf_counter() - t0, 1), loadavg_before=load0, loadavg_after=loadavg(),
                   machine=f"{platform.machine()}, {os.cpu_count()} CPUs, shared")
        print(json.dumps(rec), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    if args.results:
        print(table(out))


def table(path: Path) -> str:
    rows = ["| variant | factory / parameters | build | RSS peak (anon + file) | recall@10 | batched | single |",
            "|---|---|---|---|---|---|---|"]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "error" in r:
            rows.append(f"| {r['method']} | {r['error'].splitlines()[-1][:80]} | | | | | |")
            continue
        params = ", ".join(f"{k}={v}" for k, v in (r.get("search_params") or {}).items())
        rows.append(f"| {r['method']} | {r['factory']} ({params}) | {r['build_s']:.1f} s | "
                    f"{r['rss_peak_mb']} MB ({r['anon_mb']} + {r['file_mb']}) | {r['recall10']:.4f} | "
                    f"{r['batched_ms']:.3f} ms | {r['single_ms']:.2f} ms |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
