"""Time every transferability score at the size selection calls them (n=1000 examples, d=512 features, 10 classes).

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_transfer.py
Prints seconds per call (best of 3) and the planted-vs-shuffled values as a sanity check.
"""

import time

import numpy as np

from zooscope.measures import transfer as T


def main() -> None:
    rng = np.random.default_rng(0)
    n, d, k = 1000, 512, 10
    y = np.arange(n) % k
    centres = rng.normal(size=(k, d))
    noise = rng.normal(size=(n, d))
    shuffled = rng.permutation(y)
    for label, sep in (("easy (class centres 0.5 sd apart per feature)", 0.5), ("hard (0.08 sd)", 0.08)):
        f = noise + sep * centres[y]
        print(f"\n{label}\n{'score':14s} {'s/call':>8s} {'planted':>10s} {'shuffled':>10s}")
        for name in ["logme", "h_score", "transrate", "linear_probe", "knn_accuracy", "sfda", "sfda_pca", "ncti",
                     "gbc"]:
            fn = getattr(T, name)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                v = fn(f, y)
                times.append(time.perf_counter() - t)
            print(f"{name:14s} {min(times):8.3f} {v:10.4f} {fn(f, shuffled):10.4f}")


if __name__ == "__main__":
    main()
