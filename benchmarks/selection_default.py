#!/usr/bin/env python
"""Choosing `zoo.select`'s default ranker on the selection benchmark, out of sample (leave one target out).

Reads the per-(target, model, method) scores written by ``benchmarks/selection_columns.py`` (``<bench>/scores.csv``,
every score on pre-logits features of the target's train+val split) and the fine-tuning truth (``truth.csv``), and
evaluates candidate default rules by mean weighted Kendall τ_w (``scipy.stats.weightedtau(score, accuracy)[0]``):

- single scores and unweighted rank means of fixed sets (nothing fitted);
- ``loto-pick(rankmean)``: for each held-out target, the rank-mean set with the best mean τ_w on the OTHER
  targets (the honest estimate of "choose the best set on the benchmark");
- with history (leave one target out): ``hist`` = each model's mean z-scored accuracy on the other targets,
  uniform or weighted by task similarity (``simw``: Spearman correlation of the two targets' rank-mean score
  profiles over the models, clipped at 0 -- target-side only, no training data needed), fused as one more
  rank-normalised column.

Usage::

    python benchmarks/selection_default.py [--bench ~/.cache/zooscope/selbench] [--out benchmarks/selection_default.csv]
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr, weightedtau

BASE = ("logme", "leep", "nce", "hscore", "ncti", "knn", "gbc", "sfda_pca", "linear_probe", "transrate")


def rank01(s: pd.Series) -> pd.Series:
    r = s.rank(method="average")
    return (r - 1) / max(int(s.notna().sum()) - 1, 1)


def z(s: pd.Series) -> pd.Series:
    sd = s.std(ddof=0)
    return (s - s.mean()) / sd if sd > 0 else s * 0.0


def metrics(score: pd.Series, acc: pd.Series) -> tuple[float, float]:
    s = score.reindex(acc.index).fillna(-np.inf).to_numpy(float)
    a = acc.to_numpy(float)
    tau = float(weightedtau(s, a)[0])
    return tau, float(a.max() - a[np.argmax(s)])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default=os.environ.get("ZOOSCOPE_BENCH_DIR") or "~/.cache/zooscope/selbench")
    p.add_argument("--out", default="benchmarks/selection_default.csv")
    a = p.parse_args()
    bench = Path(a.bench).expanduser()
    sc = pd.read_csv(bench / "scores.csv").pivot_table(index=["dataset", "model"], columns="method", values="score")
    truth = pd.read_csv(bench / "truth.csv")
    acc = truth.pivot_table(index="dataset", columns="model", values="value")
    targets = sorted(acc.index)
    cols = [c for c in BASE if c in sc.columns]
    sets = [s for r in (2, 3, 4) for s in itertools.combinations(cols, r)]
    rm = {t: {s: sc.loc[t][list(s)].apply(rank01).mean(axis=1) for s in sets} for t in targets}
    rows = []

    def add(method: str, t: str, score: pd.Series) -> None:
        tau, reg = metrics(score, acc.loc[t])
        rows.append({"method": method, "target": t, "tau_w": tau, "regret1": reg})

    for t in targets:
        for c in cols:
            add(c, t, sc.loc[t][c])
        add("rankmean(logme,leep,nce,hscore)", t, rm[t][("logme", "leep", "nce", "hscore")])
    # in-sample tau of every set, then the LOTO pick
    ins = pd.DataFrame({",".join(s): [metrics(rm[t][s], acc.loc[t])[0] for t in targets] for s in sets}, index=targets)
    for t in targets:
        best = ins.drop(index=t).mean().idxmax()
        add("loto-pick(rankmean)", t, rm[t][tuple(best.split(","))])
    zacc = acc.apply(z, axis=1)
    prof = {t: rm[t][("logme", "leep", "nce", "hscore")] for t in targets}
    for t in targets:
        others = [o for o in targets if o != t]
        base = rm[t][("logme", "leep", "nce", "hscore")]
        hist_u = zacc.loc[others].mean()
        w = np.array([max(spearmanr(prof[t], prof[o].reindex(prof[t].index))[0], 0.0) for o in others])
        hist_w = (zacc.loc[others].mul(w, axis=0).sum() / w.sum()) if w.sum() > 0 else hist_u
        add("hist(uniform)", t, hist_u)
        add("hist(simw)", t, hist_w)
        for name, h in (("uniform", hist_u), ("simw", hist_w)):
            hr = rank01(h.reindex(base.index))
            add(f"default+hist({name}) equal", t, (base + hr) / 2)
            add(f"default+hist({name}) as 5th col", t, (4 * base + hr) / 5)
    df = pd.DataFrame(rows)
    df.to_csv(a.out, index=False)
    summ = df.groupby("method").agg(mean_tau_w=("tau_w", "mean"), min_tau_w=("tau_w", "min"),
                                    regret1=("regret1", "mean")).sort_values("mean_tau_w", ascending=False)
    print(summ.round(3).to_string())
    print("\nLOTO picks:", {t: ins.drop(index=t).mean().idxmax() for t in targets})
    print("\nin-sample top sets:\n", ins.mean().sort_values(ascending=False).head(8).round(3))


if __name__ == "__main__":
    main()
