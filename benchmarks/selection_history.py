#!/usr/bin/env python
"""History as a model and the active refinement, offline on the own benchmarks (issue 20 items 3-4).

From ``benchmarks/selection_robust_scores.csv`` (every candidate score and the seed-mean truth per (bench, target,
model)): for each target, the other targets' truth is the recorded history (leave one target out), and the same
functions select uses rank it: `robust_zmean` of `DEFAULT_COLUMNS` (target side), the score-profile similarity
(max(0, Spearman) of the default score on target and past target), `history_prior` + `lowrank_history`, and their
rank mean; then ``finetune_top=3``: `choose`, `reestimate`, `noisy_reorder`, with the target's seed-mean truth as the
"measured" outcome of the 3 chosen models (optimistic: select measures one short fine-tune). Printed: mean τ_w and
top-1 regret per benchmark, against the noise ceiling of `benchmarks/selection_eval.csv`.

Usage::

    python benchmarks/selection_history.py [--scores benchmarks/selection_robust_scores.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    from scipy.stats import spearmanr

    from zooscope.bench.selection import ranking_metrics
    from zooscope.zoo import history as hist
    from zooscope.zoo.select.context import DEFAULT_COLUMNS, rank01
    from zooscope.zoo.select.fusion import robust_zmean
    from zooscope.zoo.select.history import history_matrix, lowrank_history
    from zooscope.zoo.select.refine import SEED_NOISE, choose, noisy_reorder, reestimate

    ap = argparse.ArgumentParser()
    ap.add_argument("--scores", type=Path, default=Path("benchmarks/selection_robust_scores.csv"))
    ap.add_argument("--k", type=int, default=3)
    a = ap.parse_args()
    df = pd.read_csv(a.scores)
    rows = []
    for bench, b in df.groupby("bench"):
        fused = {t: rank01(robust_zmean(g.set_index("model"), list(DEFAULT_COLUMNS))[0])
                 for t, g in b.groupby("dataset")}
        recorded = b.assign(metric="accuracy")[["model", "dataset", "metric", "value"]]
        for t, g in b.groupby("dataset"):
            g = g.set_index("model")
            models, truth, base = list(g.index), g["value"], fused[t]
            sims = {}
            for p in fused:
                if p != t:
                    both = pd.concat([base, fused[p]], axis=1, join="inner").dropna()
                    r = spearmanr(both.iloc[:, 0], both.iloc[:, 1])[0]
                    sims[p] = max(float(r), 0.0) if np.isfinite(r) else 1.0
            prior, _ = hist.history_prior(recorded, t, models, "accuracy", sims)
            R = history_matrix(recorded, t, models)
            h = lowrank_history(R, base, prior["prior"])
            score = pd.concat([base, rank01(h)], axis=1).mean(axis=1)
            order = sorted(models, key=lambda m: (-score[m], m))
            est = reestimate(order, {m: float(truth[m]) for m in choose(order, a.k, R)}, R)
            refined = noisy_reorder(order, est, SEED_NOISE)
            topk = pd.Series(np.linspace(1, 0, len(order)), index=order)
            for label, s in (("default", base), ("prior alone", rank01(prior["prior"])),
                             ("history model alone", rank01(h)), ("default + history", score),
                             (f"+ finetune_top={a.k}", pd.Series(np.linspace(1, 0, len(refined)), index=refined)),
                             ("order check", topk)):
                m = ranking_metrics(s.reindex(models).to_numpy(float), truth.to_numpy(float), models)
                rows.append({"bench": bench, "dataset": t, "rule": label, "tau_w": m["tau_w"],
                             "regret@1": m["regret@1"]})
    out = pd.DataFrame(rows)
    out = out[out["rule"] != "order check"]
    print(out.groupby(["bench", "rule"], sort=False)[["tau_w", "regret@1"]].mean().round(3).to_string())
    ev = Path("benchmarks/selection_eval.csv")
    if ev.is_file():
        e = pd.read_csv(ev)
        print(e[e["method"] == "ceiling:seed-vs-mean"].groupby("bench")["tau_w"].mean().round(3).to_string())


if __name__ == "__main__":
    main()
