"""What the ``fisher`` pair embedding is good for (issue 17): same-training-data retrieval, cost, query latency.

1. A toy zoo on sklearn digits (1x8x8): small CNNs of two widths (two architectures), each fine-tuned from one
   base network (trained on all digits) on five training sets that differ in content (digits 0-4, digits 5-9, the
   same images labelled by parity), in label noise (0-4 with 40 % of labels replaced) and in size (0-4, 150
   examples); ``--per-set`` checkpoints per (architecture, training set) with different seeds and 2-4 epochs. A
   third group trains width-8 CNNs FROM SCRATCH (independent initialisations) on the same sets: where pair
   Fisher vectors are expected to fail (filters of independently trained networks are not aligned).
   Embedded through the zoo (``zoo.embed(kinds=("fisher", "cka", "task2vec"))``); precision@5 of "same training
   set" for each model against the models of its own group (fisher can only rank its own architecture) and, for
   cka and task2vec, against the whole zoo. ``zoo.similar(..., by="fisher")`` (FAISS + exact re-rank) is checked
   to give the same top 5 as the exact similarity matrix.
2. Cost: CPU seconds of one pair vector (the kind's defaults) vs one Task2Vec of the same dataset with the same
   network at the zoo's task2vec settings (kind defaults, at most 2,000 examples), and at the pair's settings.
3. Latency: k=10 among 10,000 synthetic pair vectors in the index the zoo builds for the kind (stored dim 9,600,
   a ResNet-18's filters, indexed as the zoo's JL projection; `zooscope.index.VectorIndex.build`, the kind's
   metric), 1 thread: median and p95 of 200 single queries; the query's projection and a load-per-query (the
   CLI path) timed apart.

4. ``--variants``: precision@5 and CPU s per pair under other Task2Vec settings (labels, examples, head epochs).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pairs.py [--per-set 6] [--variants] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SPEC = "zooscope.zoo.models:small_cnn"
SETS = {"low": "builtin:digits?classes=0,1,2,3,4", "high": "builtin:digits?classes=5,6,7,8,9",
        "parity": "builtin:digits?task=parity", "low-noisy": None,
        "low-small": "builtin:digits?classes=0,1,2,3,4&n=150"}
GROUPS = {"w8-finetuned": (8, True), "w16-finetuned": (16, True), "w8-scratch": (8, False)}


def _kw(width: int, classes: int) -> dict:
    return {"in_chans": 1, "num_classes": classes, "width": width, "img_size": 8}


def _noisy(folder: Path) -> str:
    """digits 0-4 with 40 % of the labels replaced by a random other class (seeded), as an .npz source."""
    from zooscope.nets.datasets import load_dataset

    ds = load_dataset(SETS["low"])
    rng = np.random.default_rng(0)
    y = ds.y.numpy().copy()
    flip = rng.random(len(y)) < 0.4
    y[flip] = (y[flip] + rng.integers(1, 5, flip.sum())) % 5
    path = folder / "low_noisy.npz"
    np.savez(path, x=ds.x.numpy(), y=y)
    return str(path)


def build_zoo(root: Path, per_set: int) -> tuple[object, dict[str, tuple[str, str]], float]:
    """The zoo and {model: (group, training set)}; also the CPU seconds spent training."""
    from zooscope import Zoo
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import save_checkpoint, small_cnn
    from zooscope.nets.training import train_classifier

    sets = dict(SETS, **{"low-noisy": _noisy(root.parent)})
    zoo = Zoo.create(root)
    zoo.configure(probe_n=256)
    for name, src in sets.items():
        zoo.add_dataset(name, src)
    data = {name: load_dataset(src) for name, src in sets.items()}
    full = load_dataset("builtin:digits")
    t0 = time.process_time()
    bodies = {}
    for width in {w for w, _ in GROUPS.values()}:
        base = small_cnn(**_kw(width, 10), seed=99)
        train_classifier(base, full.x, full.y, epochs=3, batch_size=64, lr=1e-2, weight_decay=0.0, seed=99)
        bodies[width] = {k: v for k, v in base.state_dict().items() if not k.startswith("fc.")}
    truth = {}
    for group, (width, finetuned) in GROUPS.items():
        for sname, ds in data.items():
            k = int(ds.y.max()) + 1
            for seed in range(per_set):
                m = small_cnn(**_kw(width, k), seed=seed)
                if finetuned:
                    m.load_state_dict(copy.deepcopy(bodies[width]), strict=False)
                train_classifier(m, ds.x, ds.y, epochs=2 + seed % 3, batch_size=64,
                                 lr=3e-3 if finetuned else 1e-2, weight_decay=0.0, seed=seed)
                name = f"{group}-{sname}-{seed}"
                path = root.parent / "ckpt" / f"{name}.safetensors"
                path.parent.mkdir(exist_ok=True)
                save_checkpoint(m, path)
                zoo.add_model(name, SPEC, path, kwargs=_kw(width, k), trained_on=sname)
                truth[name] = (group, sname)
    return zoo, truth, time.process_time() - t0


def precision_at(S, truth: dict, k: int, pool: str) -> dict[str, float]:
    """Mean precision@k of "same training set" per group (``pool="group"``: candidates of the query's group only;
    ``"zoo"``: every model). NaN similarities (not comparable) never rank."""
    names = list(S.index)
    M = S.to_numpy(dtype=float)
    out: dict[str, list[float]] = {}
    for i, q in enumerate(names):
        cand = [j for j, n in enumerate(names) if n != q and (pool == "zoo" or truth[n][0] == truth[q][0])]
        cand = [j for j in cand if np.isfinite(M[i, j])]
        top = sorted(cand, key=lambda j: (-M[i, j], names[j]))[:k]
        hits = [truth[names[j]][1] == truth[q][1] for j in top]
        out.setdefault(truth[q][0], []).append(sum(hits) / k)
        out.setdefault("per set " + truth[q][1], []).append(sum(hits) / k)
    return {g: round(float(np.mean(v)), 3) for g, v in out.items()}


VARIANTS = {"default": {}, "fisher_labels=exact": {"fisher_labels": "exact"},
            "all examples, exact": {"fisher_labels": "exact", "max_samples": 2000, "n_samples": None},
            "head_epochs=10": {"head_epochs": 10}}


def variants(zoo, truth: dict) -> dict[str, dict]:
    """Precision@5 (own group) and CPU s per pair of the pair vector under other Task2Vec settings (``--variants``)."""
    import pandas as pd

    from zooscope.embed.pairfisher import pair_fisher_vector
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import ModelSpec

    data = {r.name: load_dataset(r.source) for r in zoo.catalog.datasets()}
    nets = {m.name: ModelSpec.from_row(m).build() for m in zoo.catalog.models()}
    names = sorted(truth)
    out = {}
    for label, params in VARIANTS.items():
        t0 = time.process_time()
        vec = {n: pair_fisher_vector(nets[n], data[truth[n][1]].x, data[truth[n][1]].y, **params) for n in names}
        cpu = (time.process_time() - t0) / len(names)
        S = pd.DataFrame(np.nan, index=names, columns=names)
        for a in names:
            for b in names:
                if truth[a][0] == truth[b][0]:
                    S.loc[a, b] = vec[a] @ vec[b] / np.linalg.norm(vec[a]) / np.linalg.norm(vec[b])
        p = precision_at(S, truth, 5, "group")
        out[label] = {"cpu_s_per_pair": round(cpu, 3), **{g: p[g] for g in GROUPS}}
    return out


def cost(zoo) -> dict[str, float]:
    """CPU seconds: one pair vector vs one Task2Vec of the same dataset with the same network."""
    from zooscope.embed.pairfisher import PAIR_DEFAULTS, pair_fisher_vector
    from zooscope.embed.task2vec import _DEFAULTS, Task2Vec
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import ModelSpec
    from zooscope.zoo.embedrun import T2V_MAX_SAMPLES

    rec = zoo.catalog.get_model("w16-finetuned-low-0")
    net = ModelSpec.from_row(rec).build()
    ds = load_dataset(SETS["low"])
    out = {}
    for label, fn in (
        ("pair_fisher (kind defaults)", lambda: pair_fisher_vector(net, ds.x, ds.y)),
        ("task2vec, same network (zoo task2vec settings)",
         lambda: Task2Vec(net, **{**_DEFAULTS, "max_samples": T2V_MAX_SAMPLES}).embed(ds.x, ds.y)),
        ("task2vec, same network (pair settings)",
         lambda: Task2Vec(net, **{**_DEFAULTS, **PAIR_DEFAULTS}).embed(ds.x, ds.y)),
    ):
        times = []
        for _ in range(3):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        out[label] = round(float(np.median(times)), 3)
    return out


def latency(n: int = 10_000, dim: int = 9_600, queries: int = 200) -> dict[str, float]:
    """k=10 among ``n`` synthetic pair vectors in the index the zoo builds for the kind: vectors longer than
    `zooscope.zoo.indices.JL_MAX_DIM` enter as their JL projection to the zoo's ``jl_dim`` (synthetic vectors are
    drawn in that space); the query's own projection is timed separately (`zooscope.measures.sketch.jl_project`)."""
    import faiss

    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.index import VectorIndex
    from zooscope.measures.sketch import jl_project
    from zooscope.zoo.indices import JL_KIND, JL_MAX_DIM
    from zooscope.zoo.settings import DEFAULT_JL

    faiss.omp_set_num_threads(1)
    meta = EMBEDDINGS.get("fisher").meta
    d = DEFAULT_JL[0] if dim > JL_MAX_DIM else dim
    rng = np.random.default_rng(0)
    V = rng.standard_normal((n, d)).astype(np.float32)
    idx = VectorIndex.build(V, np.arange(n), metric=meta.metric, normalized=meta.normalized,
                            factory=meta.index_factory)
    Q = V[rng.choice(n, queries)] + 0.1 * rng.standard_normal((queries, d)).astype(np.float32)
    ts = []
    for q in Q:
        t0 = time.perf_counter()
        idx.search(q[None], 10)
        ts.append(time.perf_counter() - t0)
    raw = rng.lognormal(size=(1, dim))
    tp = []
    for _ in range(5):
        t0 = time.perf_counter()
        jl_project(raw, DEFAULT_JL[0], DEFAULT_JL[1], kind=JL_KIND)
        tp.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        sha = idx.save(Path(tmp) / "f.faiss")
        tl = []
        for q in Q[:5]:
            t0 = time.perf_counter()
            VectorIndex.load(Path(tmp) / "f.faiss", sha256=sha).search(q[None], 10)
            tl.append(time.perf_counter() - t0)
    return {"factory": idx.factory, "n": n, "stored_dim": dim, "index_dim": d,
            "search_median_ms": round(1e3 * float(np.median(ts)), 3),
            "search_p95_ms": round(1e3 * float(np.percentile(ts, 95)), 3),
            "query_projection_median_ms": round(1e3 * float(np.median(tp)), 2),
            "load_and_search_median_ms": round(1e3 * float(np.median(tl)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-set", type=int, default=6)
    ap.add_argument("--out", default="benchmarks/bench_pairs.json")
    ap.add_argument("--variants", action="store_true", help="also precision@5 under other Task2Vec settings")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "threads": 1, "load_avg_start": os.getloadavg()[0]}
    from zooscope.zoo import curate

    with tempfile.TemporaryDirectory() as d:
        zoo, truth, train_s = build_zoo(Path(d) / "zoo", args.per_set)
        res["models"], res["train_cpu_s"] = len(truth), round(train_s, 1)
        rep = {}
        for kind in ("fisher", "cka", "task2vec"):
            t0 = time.process_time()
            r = zoo.embed(kinds=(kind,))
            rep[kind] = {"cpu_s": round(time.process_time() - t0, 1),
                         "embedded": int((r["status"] == "embedded").sum()),
                         "failed": int((r["status"] == "failed").sum())}
        res["embed"] = rep
        prec = {}
        for by in ("fisher", "cka", "task2vec"):
            S = curate.similarity_matrix(zoo, by=by)
            prec[f"{by} (own group)"] = precision_at(S, truth, 5, "group")
            if by != "fisher":
                prec[f"{by} (whole zoo)"] = precision_at(S, truth, 5, "zoo")
            if by == "fisher":  # the query path (FAISS + exact re-rank) gives the exact matrix's top 5
                agree = 0
                for q in S.index:
                    top = zoo.similar(q, k=5, by="fisher")["model"].tolist()
                    row = S.loc[q].drop(q).dropna()
                    agree += set(top) == set(row.sort_values(ascending=False).index[:5])
                res["similar_matches_exact_top5"] = f"{agree}/{len(S.index)}"
        res["precision_at_5"] = prec
        res["cost_cpu_s"] = cost(zoo)
        if args.variants:
            res["variants"] = variants(zoo, truth)
    res["latency"] = latency()
    res["wall_s"] = round(time.time() - t_start, 1)
    res["load_avg_end"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
