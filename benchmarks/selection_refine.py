#!/usr/bin/env python
"""Cost and gain of `select(..., finetune_top=3, epochs=1)` on the selection benchmark (issue 8 item 5).

For every target of the truth table: the default ranking and the refined one (top 3 fine-tuned for one epoch on a
stratified 80/20 split of the target's labelled data and re-ordered by validation accuracy); τ_w, regret@1 and the
seconds of each call. Run on a copy of the benchmark zoo with no recorded results.

Usage::

    python benchmarks/selection_refine.py --zoo /tmp/selzoo --truth ~/.cache/zooscope/selbench/truth.csv
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from zooscope import Zoo
from zooscope.bench.selection import ranking_metrics


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--zoo", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default="benchmarks/selection_refine.csv")
    a = p.parse_args()
    zoo = Zoo.open(a.zoo)
    truth = pd.read_csv(a.truth)
    rows = []
    for t in sorted(truth["dataset"].unique()):
        acc = truth[truth["dataset"] == t].set_index("model")["value"]
        for label, opts in (("default", {}), (f"default+finetune_top={a.top}", {"finetune_top": a.top,
                                                                              "epochs": a.epochs})):
            t0 = time.perf_counter()
            tab = zoo.select(t, k=len(acc), history=False, **opts)
            sec = time.perf_counter() - t0
            n = len(tab)
            score = pd.Series(range(n, 0, -1), index=tab["model"]).reindex(acc.index).fillna(0)  # by rank
            m = ranking_metrics(score.to_numpy(float), acc.to_numpy(float), list(acc.index))
            rows.append({"method": label, "dataset": t, "tau_w": m["tau_w"], "regret@1": m["regret@1"],
                         "regret@3": m["regret@3"], "seconds": sec, "picked": tab["model"].iloc[0]})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(a.out, index=False)
    print(df.groupby("method")[["tau_w", "regret@1", "regret@3", "seconds"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
