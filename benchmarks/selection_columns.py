#!/usr/bin/env python
"""Every transferability score, computed directly on pre-logits features, against the selection benchmark's truth.

Evidence for choosing zooscope's default ranker (issue 8): for each target of the benchmark built by
``scripts/build_selection_bench.py``, each source model's pre-logits features (`zooscope.embed.prelogits`) on the
target's labelled data (train + val: what a user has; never the test split the truth is measured on) are scored
by every method, and each method's ranking is compared with the fine-tuning truth: mean weighted Kendall τ_w
(``scipy.stats.weightedtau(score, accuracy)[0]``), top-1 / top-3 regret.

Phases (``--phase``; comma-separated, default all):
  features  pre-logits features + source-head logits (+ the ``spatial_map`` rule's features) per (model, target),
            cached in <bench>/features/*.npz.  Needs this branch's `zooscope.embed.prelogits`.
  scores    every score available in ``zooscope.measures`` on the PYTHONPATH (logme, h_score, transrate,
            leep, nce; linear_probe, knn_accuracy, sfda, sfda_pca, ncti, gbc when present), sklearn baselines
            (probe_sk: 3-fold logistic regression on standardised features; knn_sk: leave-one-out 5-NN accuracy),
            model priors (n_params, source_train_acc) and the unweighted rank mean of logme/leep/nce/hscore
            (today's default minus task2vec) -> <bench>/scores.csv.
  table     per (method, target) and per-method means -> --out CSV and a markdown table on stdout.

Reproduce (scores from the `scores` helper's tree, features from this one)::

    PYTHONPATH=/work/wt/selbench python benchmarks/selection_columns.py --phase features
    PYTHONPATH=/work/wt/scores python benchmarks/selection_columns.py --phase scores,table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _bench_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("ZOOSCOPE_BENCH_DIR") or Path.home() / ".cache/zooscope/selbench").expanduser()


def complete_targets(truth: pd.DataFrame) -> list[str]:
    n = truth["model"].nunique()
    counts = truth.groupby("dataset")["model"].nunique()
    return sorted(counts[counts == n].index)


# ----------------------------------------------------------------------------------------------- features
def phase_features(bench: Path, truth: pd.DataFrame) -> None:
    import torch

    from zooscope.embed.prelogits import prelogits_features, spatial_map_features
    from zooscope.nets.models import build_model

    torch.set_num_threads(1)
    out = bench / "features"
    out.mkdir(exist_ok=True)
    for target in complete_targets(truth):
        with np.load(bench / "data" / "targets" / f"{target}.npz") as f:
            x, y = torch.from_numpy(f["x_train"]).float(), f["y_train"].astype(np.int64)
        for model in sorted(truth["model"].unique()):
            path = out / f"{model}__{target}.npz"
            if path.is_file():
                continue
            meta = json.loads((bench / "models" / f"{model}.json").read_text())
            net = build_model(meta["spec"], meta["kwargs"], bench / "models" / f"{model}.safetensors")
            t0 = time.perf_counter()
            feats, logits = prelogits_features(net, x)
            seconds = time.perf_counter() - t0
            spatial = spatial_map_features(net, x)
            n_params = sum(p.numel() for p in net.parameters())
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(fh, features=feats.astype(np.float32), logits=logits.astype(np.float32), y=y,
                         spatial=spatial.astype(np.float32), seconds=seconds, n_params=n_params,
                         source_train_acc=meta["train_acc"])
            os.replace(tmp, path)
        print(f"features {target} done", flush=True)


# ------------------------------------------------------------------------------------------------- scores
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def probe_sk(f: np.ndarray, y: np.ndarray, folds: int = 3) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(cross_val_score(clf, f, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0)).mean())


def knn_sk(f: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    from sklearn.metrics import pairwise_distances
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(f)
    d = pairwise_distances(z)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    votes = np.apply_along_axis(lambda r: np.bincount(r, minlength=int(y.max()) + 1), 1, y[nn])
    return float((votes.argmax(1) == y).mean())


def _transfer_fns() -> dict[str, Any]:
    from zooscope import measures as transfer  # every registered score, transfer.py and transfer_lda.py

    feats = {"logme": "logme", "hscore": "h_score", "transrate": "transrate", "linear_probe": "linear_probe",
             "knn": "knn_accuracy", "sfda": "sfda", "sfda_pca": "sfda_pca", "gbc": "gbc"}
    probs = {"leep": "leep", "nce": "nce"}
    out = {}
    for col, name in feats.items():
        if callable(getattr(transfer, name, None)):
            out[col] = ("features", getattr(transfer, name))
    for col, name in probs.items():
        if callable(getattr(transfer, name, None)):
            out[col] = ("probs", getattr(transfer, name))
    return out


def phase_scores(bench: Path, truth: pd.DataFrame) -> pd.DataFrame:
    from zooscope import measures as transfer

    fns = _transfer_fns()
    has_ncti = callable(getattr(transfer, "ncti_terms", None)) and callable(getattr(transfer, "ncti_combine", None))
    rows, times = [], []
    models = sorted(truth["model"].unique())
    for target in complete_targets(truth):
        data = {}
        for m in models:
            with np.load(bench / "features" / f"{m}__{target}.npz") as f:
                data[m] = {k: f[k] for k in f.files}
        per: dict[str, dict[str, float]] = {m: {} for m in models}
        clock: dict[str, float] = {}

        def timed(col: str, fn: Any, _clock: dict[str, float] = clock, _target: str = target) -> float:
            t0 = time.perf_counter()
            try:
                v = float(fn())
            except Exception as e:  # a score that refuses an input is recorded as missing, with the reason
                print(f"  {_target} {col}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
                v = np.nan
            _clock[col] = _clock.get(col, 0.0) + time.perf_counter() - t0
            return v

        for m in models:
            d = data[m]
            f, y, lo = d["features"].astype(np.float64), d["y"], d["logits"].astype(np.float64)
            p = _softmax(lo)
            for col, (kind, fn) in fns.items():
                if kind == "features":
                    per[m][col] = timed(col, lambda fn=fn, f=f, y=y: fn(f, y))
                elif col == "nce":
                    per[m][col] = timed(col, lambda fn=fn, p=p, y=y: fn(p.argmax(1), y))
                else:
                    per[m][col] = timed(col, lambda fn=fn, p=p, y=y: fn(p, y))
            per[m]["probe_sk"] = timed("probe_sk", lambda f=f, y=y: probe_sk(f, y))
            per[m]["knn_sk"] = timed("knn_sk", lambda f=f, y=y: knn_sk(f, y))
            if "logme" in fns:
                s = d["spatial"].astype(np.float64)
                per[m]["logme_spatial"] = timed("logme_spatial", lambda s=s, y=y: fns["logme"][1](s, y))
            per[m]["n_params"] = float(d["n_params"])
            per[m]["source_train_acc"] = float(d["source_train_acc"])
        if has_ncti:
            t0 = time.perf_counter()
            try:
                terms = [transfer.ncti_terms(data[m]["features"].astype(np.float64), data[m]["y"]) for m in models]
                comb = np.asarray(transfer.ncti_combine(terms), dtype=float)
            except Exception as e:
                print(f"  {target} ncti: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
                comb = np.full(len(models), np.nan)
            clock["ncti"] = time.perf_counter() - t0
            for m, v in zip(models, comb, strict=True):
                per[m]["ncti"] = float(v)
        table = pd.DataFrame.from_dict(per, orient="index")
        rank_cols = [c for c in ("logme", "leep", "nce", "hscore") if c in table]
        if rank_cols:
            r = [(table[c].rank() - 1) / (len(table) - 1) for c in rank_cols]
            table["rankmean_old"] = pd.concat(r, axis=1).mean(axis=1)
        for m in models:
            for col, v in table.loc[m].items():
                rows.append({"dataset": target, "model": m, "method": col, "score": v})
        times += [{"dataset": target, "method": c, "seconds": s} for c, s in clock.items()]
        times.append({"dataset": target, "method": "(features)",
                      "seconds": float(sum(data[m]["seconds"] for m in models))})
        print(f"scores {target} done", flush=True)
    scores = pd.DataFrame(rows)
    scores.to_csv(bench / "scores.csv", index=False)
    pd.DataFrame(times).to_csv(bench / "score_times.csv", index=False)
    return scores


# -------------------------------------------------------------------------------------------------- table
def ranking(score: np.ndarray, acc: np.ndarray, names: list[str]) -> dict[str, float]:
    from scipy.stats import weightedtau

    s = np.asarray(score, float)
    if not np.isfinite(s).any():
        return {"tau_w": np.nan, "regret@1": np.nan, "regret@3": np.nan}
    s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) - 1)
    order = sorted(range(len(s)), key=lambda i: (-s[i], names[i]))
    return {"tau_w": float(weightedtau(s, acc)[0]), "regret@1": float(acc.max() - acc[order[0]]),
            "regret@3": float(acc.max() - acc[order[:3]].max())}


FEATURE_SCORES = ("logme", "leep", "nce", "hscore", "transrate", "knn_sk", "probe_sk", "sfda_pca", "ncti", "gbc")
ZMEAN_SETS = {"zmean(logme,leep,nce,hscore)": ("logme", "leep", "nce", "hscore"),
              "zmean(logme,knn)": ("logme", "knn_sk"), "zmean(logme,knn,leep)": ("logme", "knn_sk", "leep")}


def _z(col: pd.Series) -> pd.Series:
    sd = col.std(ddof=0)
    z = (col - col.mean()) / sd if sd > 0 else col * 0.0
    return z.fillna(0.0)


def derived_scores(scores: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Fusions and history priors, all out of sample for the target they rank.

    zmean(...)      unweighted mean of per-target z-scored columns (no fitting).
    loto_ridge      ridge regression (alpha=1) of per-target z(accuracy) on the z-scored FEATURE_SCORES, fitted on
                    the OTHER targets' truth, applied to the held-out target.
    hist_prior      each model's mean z(accuracy) over the OTHER targets (what a zoo's recorded history gives).
    hist+X          z(hist_prior) + z(X), unweighted.
    """
    from sklearn.linear_model import Ridge

    wide = scores.pivot_table(index=["dataset", "model"], columns="method", values="score")
    z = wide.groupby(level="dataset", group_keys=False).apply(lambda g: g.apply(_z))
    acc = truth.set_index(["dataset", "model"])["value"].reindex(wide.index)
    zacc = acc.groupby(level="dataset", group_keys=False).apply(_z)
    feats = [c for c in FEATURE_SCORES if c in z.columns]
    rows = []
    targets = sorted(wide.index.get_level_values("dataset").unique())
    for t in targets:
        zt = z.xs(t, level="dataset")
        out: dict[str, pd.Series] = {}
        for name, cols in ZMEAN_SETS.items():
            if all(c in zt for c in cols):
                out[name] = zt[list(cols)].mean(axis=1)
        others = [o for o in targets if o != t]
        if others and feats:
            X = z.loc[others, feats].to_numpy()
            y = zacc.loc[others].to_numpy()
            out["loto_ridge"] = pd.Series(Ridge(alpha=1.0).fit(X, y).predict(zt[feats].to_numpy()), index=zt.index)
            hist = zacc.loc[others].groupby(level="model").mean().reindex(zt.index)
            out["hist_prior"] = hist
            for x in ("logme", "knn_sk", "loto_ridge"):
                base = out.get(x, zt.get(x))
                if base is not None:
                    out[f"hist+{x}"] = _z(hist) + _z(base)
        for name, ser in out.items():
            rows += [{"dataset": t, "model": m, "method": name, "score": float(v)} for m, v in ser.items()]
    return pd.DataFrame(rows)


def phase_table(bench: Path, truth: pd.DataFrame, out: Path) -> pd.DataFrame:
    scores = pd.read_csv(bench / "scores.csv")
    scores = pd.concat([scores, derived_scores(scores, truth)], ignore_index=True)
    times = pd.read_csv(bench / "score_times.csv")
    rows = []
    for (target, method), g in scores.groupby(["dataset", "method"]):
        t = truth[truth["dataset"] == target].set_index("model")["value"]
        g = g.sort_values("model")
        names = g["model"].tolist()
        rows.append({"method": method, "dataset": target,
                     **ranking(g["score"].to_numpy(float), t.loc[names].to_numpy(float), names)})
    per = pd.DataFrame(rows)
    per.to_csv(out, index=False)
    summ = per.groupby("method")[["tau_w", "regret@1", "regret@3"]].mean()
    summ["tau_w_min"] = per.groupby("method")["tau_w"].min()
    summ["targets"] = per.groupby("method").size()
    summ["s/target"] = times.groupby("method")["seconds"].sum() / times["dataset"].nunique()
    summ = summ.sort_values("tau_w", ascending=False)
    print(f"{summ['targets'].max()} targets, {truth['model'].nunique()} models; features "
          f"{times.loc[times['method'] == '(features)', 'seconds'].mean():.1f} s/target (all models)\n")
    print("| method | mean τ_w | min τ_w | regret@1 | regret@3 | s/target |")
    print("|---|---|---|---|---|---|")
    for m, r in summ.iterrows():
        print(f"| {m} | {r['tau_w']:.3f} | {r['tau_w_min']:.3f} | {r['regret@1']:.3f} | {r['regret@3']:.3f} | "
              f"{r['s/target']:.2f} |")
    return summ


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default=None, help="Benchmark folder (default $ZOOSCOPE_BENCH_DIR or "
                                                  "~/.cache/zooscope/selbench).")
    ap.add_argument("--phase", default="features,scores,table")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("selection_columns.csv"))
    args = ap.parse_args(argv)
    bench = _bench_dir(args.bench)
    truth = pd.read_csv(bench / "truth.csv")
    truth = truth[truth["metric"] == "accuracy"]
    phases = [p.strip() for p in args.phase.split(",")]
    if "features" in phases:
        phase_features(bench, truth)
    if "scores" in phases:
        phase_scores(bench, truth)
    if "table" in phases:
        phase_table(bench, truth, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
