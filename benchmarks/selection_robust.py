#!/usr/bin/env python
"""Choose the default ranker's members and rule by the WORST benchmark (issue 20 item 2).

Phase ``scores``: every candidate score of every model on every complete target of each benchmark
(``scripts/build_selection_bench.py`` folders; cached pre-logits features, the same `score_table` as select),
appended to ``--scores`` (a (bench, target) already there is not recomputed).
Phase ``table``: per target, τ_w of each single score and of the rank mean / robust z-mean of each member subset
(`zooscope.zoo.select.fusion.robust_zmean`); a rule is judged by min over benchmarks of its mean τ_w;
leave-one-benchmark-out (LOBO): the rule chosen on the other benchmark(s), scored on the held-out one; inside each
benchmark, leave-one-target-out (LOTO): chosen on the other targets, scored on the held-out target.

Usage::

    python benchmarks/selection_robust.py --bench b1=/work/selbench/b1 --bench b2=/work/selbench/b2 \\
        --phase scores,table [--scores benchmarks/selection_robust_scores.csv]
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

CHOSEN = "zmean(logme,nce,hscore,knn,probe_logloss)"  # select's default (DEFAULT_COLUMNS), see RESULTS.md
CANDIDATES = ["logme", "leep", "nce", "hscore", "ncti", "knn", "probe_logloss", "energy", "sfda_pca"]


def score_phase(name: str, folder: Path, out: Path) -> None:
    from zooscope.bench.selection import read_truth
    from zooscope.zoo import Zoo
    from zooscope.zoo.select.scores import score_table

    truth = read_truth(folder / "truth.csv")
    done = set(pd.read_csv(out).query("bench == @name")["dataset"]) if out.is_file() else set()
    zoo = Zoo.open(folder / "zoo")
    ctx = zoo.select_context()
    for t in sorted(set(truth["dataset"]) - done):
        names = set(truth.loc[truth["dataset"] == t, "model"])
        fits = [m for m in ctx.catalog.models() if m.name in names]
        table, _ = score_table(ctx, ctx.catalog.get_dataset(t), fits, CANDIDATES, 1000, 0)
        table = table.assign(bench=name, dataset=t).merge(truth[["model", "dataset", "value"]],
                                                          on=["model", "dataset"])
        table.to_csv(out, mode="a", header=not out.is_file(), index=False)
        logging.info("%s %s: %d models scored", name, t, len(table))


def rules() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {c: ("single", (c,)) for c in CANDIDATES}
    for r in range(2, 6):
        for sub in itertools.combinations(CANDIDATES, r):
            out[f"zmean({','.join(sub)})"] = ("zmean", sub)
            out[f"rankmean({','.join(sub)})"] = ("rankmean", sub)
    return out


def tau_table(scores: pd.DataFrame) -> pd.DataFrame:
    from zooscope.bench.selection import ranking_metrics
    from zooscope.zoo.select.context import combine_ranks
    from zooscope.zoo.select.fusion import robust_zmean

    rows = []
    for (bench, t), g in scores.groupby(["bench", "dataset"]):
        g = g.reset_index(drop=True)
        # per column once: robust z (all NaN when robust_zmean drops the member) and rank in [0, 1];
        # a subset's z-mean / rank mean is then the NaN-mean of its columns (the same as robust_zmean(g, subset))
        z = pd.DataFrame({c: robust_zmean(g, [c])[0] for c in CANDIDATES})
        r = pd.DataFrame({c: combine_ranks(g, [c]) for c in CANDIDATES})
        truth, names = g["value"].to_numpy(float), list(g["model"])
        for label, (kind, cols) in rules().items():
            src = r if kind == "rankmean" else z
            s = g[cols[0]].to_numpy(float) if kind == "single" else src[list(cols)].mean(axis=1).to_numpy(float)
            m = ranking_metrics(s, truth, names)
            rows.append({"bench": bench, "dataset": t, "rule": label, "tau_w": m["tau_w"],
                         "relerr@1": m["relerr@1"]})
    return pd.DataFrame(rows)


def table_phase(scores_path: Path) -> None:
    taus = tau_table(pd.read_csv(scores_path))
    taus.to_csv(scores_path.with_name(scores_path.stem + "_taus.csv"), index=False)
    per = taus.groupby(["rule", "bench"])["tau_w"].mean().unstack()
    per["worst"] = per.min(axis=1)
    benches = [b for b in per.columns if b != "worst"]
    print(f"targets per benchmark: {taus.groupby('bench')['dataset'].nunique().to_dict()}\n")
    print("## singles and today's default\n")
    show = [*CANDIDATES, "rankmean(logme,leep,nce,hscore)", "zmean(logme,leep,nce,hscore)", CHOSEN]
    print(per.loc[show].round(3).to_string())
    print("\n## top rules by worst-benchmark mean τ_w\n")
    print(per.sort_values("worst", ascending=False).head(12).round(3).to_string())
    print("\n## the rule: best worst-benchmark mean τ_w among rules within 0.02 of the best single score on EVERY "
          "benchmark, no member with a negative mean τ_w alone on any benchmark\n")
    best_single = per.loc[CANDIDATES, benches].max()
    bad = {c for c in CANDIDATES if (per.loc[c, benches] < 0).any()}
    ok = per[(per[benches] >= best_single - 0.02).all(axis=1)]
    ok = ok[[not (set(rules()[r][1]) & bad) for r in ok.index]]
    print(f"excluded members: {sorted(bad)}; chosen: {ok['worst'].idxmax() if len(ok) else 'none'}")
    print(ok.sort_values("worst", ascending=False).head(5).round(3).to_string())
    print("\n## LOBO: rule chosen on the other benchmark(s) (best worst-case there), scored on the held-out one\n")
    for b in benches:
        others = [o for o in benches if o != b]
        if not others:
            continue
        pick = per[others].min(axis=1).idxmax()
        print(f"- held out {b}: chosen {pick} (others {per.loc[pick, others].min():.3f}) -> {b} "
              f"{per.loc[pick, b]:.3f} (best single there {per.loc[CANDIDATES, b].max():.3f})")
    print("\n## LOTO inside each benchmark: rule chosen on the other targets (mean τ_w), scored on the held-out one\n")
    for b in benches:
        tb = taus[taus["bench"] == b].pivot(index="dataset", columns="rule", values="tau_w")
        if len(tb) < 2:
            print(f"- {b}: one target only, no LOTO")
            continue
        got = [tb.loc[t, tb.drop(index=t).mean().idxmax()] for t in tb.index]
        print(f"- {b}: LOTO-chosen rule mean τ_w {np.mean(got):.3f} over {len(got)} targets")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="append", required=True, help="name=folder")
    ap.add_argument("--phase", default="scores,table")
    ap.add_argument("--scores", type=Path, default=Path("benchmarks/selection_robust_scores.csv"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if "scores" in a.phase:
        for spec in a.bench:
            name, folder = spec.split("=", 1)
            score_phase(name, Path(folder), a.scores)
    if "table" in a.phase:
        table_phase(a.scores)


if __name__ == "__main__":
    main()
