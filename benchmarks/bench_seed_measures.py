"""Cost of the seed-002 (Bayesian) and seed-003 (convergent learning) measures at n = 1,000 examples.

Workload: X, Y = 1,000 × 256 ReLU activations of a shared 64-d Gaussian latent (numpy default_rng(0)).
Seed 002 runs on all 1,000 rows (N = 1,000: Σ is 1,000 × 1,000; TV / JSD with the default 10,000 draws per
distribution). Seed 003 correlates the 256 + 256 units over the 1,000 samples; MI, Lasso and spectral
clustering use the first 64 units of each layer. "reference-form TV" is the BayesCompare algorithm
(x = L₁z by a triangular product, then two triangular solves per sample set) written out here from its
formula, on the same Σ, for the ratio. Median of --repeats runs after one warm-up, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_seed_measures.py [--repeats 3] [--no-append]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from zooscope import measures as M

HERE = Path(__file__).resolve().parent


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reference_form_tv(S1: np.ndarray, S2: np.ndarray, n: int, seed: int = 0) -> float:
    """TV by the reference's route: draw, multiply by L, solve back with both factors."""
    gen = np.random.Generator(np.random.SFC64(seed))
    L1, L2 = np.linalg.cholesky(S1), np.linalg.cholesky(S2)
    ld1, ld2 = np.log(np.diag(L1)).sum(), np.log(np.diag(L2)).sum()
    z1 = gen.standard_normal((S1.shape[0], n))
    x1 = L1 @ z1
    z2 = gen.standard_normal((S1.shape[0], n))
    x2 = L2 @ z2
    p1 = -np.sum(z1**2, 0) / 2 - ld1
    p2 = -np.sum(scipy.linalg.solve_triangular(L1, x2, lower=True) ** 2, 0) / 2 - ld1
    q1 = -np.sum(scipy.linalg.solve_triangular(L2, x1, lower=True) ** 2, 0) / 2 - ld2
    q2 = -np.sum(z2**2, 0) / 2 - ld2
    return (np.mean(np.maximum(1 - np.exp(q1 - p1), 0)) + np.mean(np.maximum(1 - np.exp(p2 - q2), 0))) / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1000, 64))
    X = np.maximum(z @ rng.normal(size=(64, 256)), 0)
    Y = np.maximum(z @ rng.normal(size=(64, 256)) + rng.normal(size=(1000, 256)), 0)
    S1, S2 = M.prior_predictive_cov(X), M.prior_predictive_cov(Y)
    C = M.unit_correlations(X, Y)
    CJ = M.unit_correlations(X[:, :64], Y[:, :64], joint=True)
    MI = M.mi_matrix(X[:, :64], Y[:, :64])
    rows: list[tuple[str, str, float]] = []
    with threadpool_limits(1):
        cases = [
            ("tv_distance (10k draws)", "N = 1000", lambda: M.tv_distance(X, Y)),
            ("reference-form TV (10k draws)", "N = 1000", lambda: reference_form_tv(S1, S2, 10_000)),
            ("js_distance (10k draws)", "N = 1000", lambda: M.js_distance(X, Y)),
            ("sym_kl", "N = 1000", lambda: M.sym_kl(X, Y)),
            ("bhattacharyya", "N = 1000", lambda: M.bhattacharyya(X, Y)),
            ("hellinger", "N = 1000", lambda: M.hellinger(X, Y)),
            ("bures_wasserstein", "N = 1000", lambda: M.bures_wasserstein(X, Y)),
            ("unit_correlations", "1000 × (256 + 256)", lambda: M.unit_correlations(X, Y)),
            ("bipartite_match", "256 × 256", lambda: M.bipartite_match(C)),
            ("semi_match (incl. bipartite)", "256 × 256", lambda: M.semi_match(C)),
            ("mean_matched_correlation", "1000 × (256, 256)", lambda: M.mean_matched_correlation(X, Y)),
            ("mi_matrix (percentile, 10 bins)", "1000 × (64, 64)", lambda: M.mi_matrix(X[:, :64], Y[:, :64])),
            ("bipartite_match on MI", "64 × 64", lambda: M.bipartite_match(MI)),
            ("sparse_prediction (10 λ)", "1000 × 64 → 64", lambda: M.sparse_prediction(X[:, :64], Y[:, :64])),
            ("spectral_groups (k = 8)", "128 × 128", lambda: M.spectral_groups(CJ, 8)),
        ]
        for name, shape, fn in cases:
            t = timed(fn, args.repeats)
            rows.append((name, shape, t))
            print(f"{name:36s} {shape:22s} {t * 1e3:10.1f} ms", flush=True)
    ratio = dict((r[0], r[2]) for r in rows)
    speedup = ratio["reference-form TV (10k draws)"] / ratio["tv_distance (10k draws)"]
    print(f"tv_distance vs reference form: {speedup:.2f}x")
    info = {"date": dt.date.today().isoformat(), "python": platform.python_version(), "numpy": np.__version__,
            "threads": 1, "load_average": os.getloadavg(), "cores": os.cpu_count(),
            "results_ms": {r[0]: r[2] * 1e3 for r in rows}}
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "seed_measures.json").write_text(json.dumps(info, indent=1))
    if args.no_append:
        return
    lines = [
        "", f"## Seed 002 / 003 measures at n = 1,000 ({info['date']}), measures engineer", "",
        "`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_seed_measures.py`: one thread (threadpoolctl), "
        f"numpy {np.__version__}, median of {args.repeats} runs after a warm-up, {os.cpu_count()} cores shared "
        f"(load average {info['load_average'][0]:.1f} when run, so absolute times are pessimistic). Data: "
        "1,000 × 256 ReLU features of a shared 64-d latent (see the script's docstring).", "",
        "| measure | size | time |", "|---|---|---|",
        *[f"| {n} | {s} | {t * 1e3:.1f} ms |" for n, s, t in rows], "",
        f"Reading: the Monte Carlo TV / JSD cost O(N³ + N²·n_draws) and no feature dimension; at N = 1,000 "
        f"they are ~{ratio['tv_distance (10k draws)']:.1f} s with 10,000 draws, {speedup:.2f}× the reference's "
        "route (one N × N triangular solve per draw set is replaced by one matrix L₂⁻¹L₁, then plain GEMMs). "
        "Closed forms are Cholesky-bound; correlations and matching take milliseconds, the MI matrix "
        "(one bincount per unit pair) about half a second for 64 × 64 pairs.",
    ]
    with open(HERE / "RESULTS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
