#!/usr/bin/env python
"""Every selection score on every own benchmark, with paired bootstrap intervals against today's default.

For each benchmark folder written by ``scripts/build_selection_bench.py`` (``--bench b1=/work/selbench/b1``), the
targets whose truth is complete (``truth.csv``: with ``--seeds 3`` the seed mean, only targets with every model and
every seed done) are ranked through ``zoo.select`` by each method (`zooscope.bench.selection.evaluate_selection`,
the same code as ``zooscope bench selection``), plus the static baselines and, from ``truth_seeds.csv``, the noise
ceiling. Per-target rows accumulate in ``--out`` (a CSV; a (benchmark, target) already there is not recomputed, so
the script can be re-run while the builds progress and after they finish). The summary: per benchmark and method,
mean τ_w, its paired difference to the default with a seeded bootstrap 95 % interval over targets, τ_w within
families, top-1/top-3 regret (absolute and relative error), seconds per target -- as a markdown table.

Usage::

    python benchmarks/selection_eval.py --bench b1=/work/selbench/b1 --bench b2=/work/selbench/b2 \\
        [--methods logme,leep,nce,hscore,knn,ncti,sfda,gbc,transrate,linear_probe] [--out benchmarks/selection_eval.csv]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = "logme,leep,nce,hscore,knn,ncti,sfda_pca,gbc,transrate,linear_probe"  # sfda: see sfda_pca (§5)


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    fmt = [[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in fmt])


def evaluate_bench(name: str, folder: Path, methods: list[str], out: Path, max_targets: int | None) -> None:
    """Rank the complete targets not yet in ``out``; append their per-target rows."""
    from zooscope.bench.selection import evaluate_selection, read_truth
    from zooscope.zoo import Zoo

    if not (folder / "truth.csv").is_file() or not (folder / "zoo").is_dir():
        logging.info("%s: no truth.csv or zoo yet in %s", name, folder)
        return
    truth = read_truth(folder / "truth.csv")
    seeds = folder / "truth_seeds.csv"
    done = set()
    if out.is_file():
        prev = pd.read_csv(out)
        done = set(prev.loc[prev["bench"] == name, "dataset"])
    todo = [t for t in sorted(truth["dataset"].unique()) if t not in done][: max_targets or None]
    if not todo:
        logging.info("%s: nothing new (%d targets done)", name, len(done))
        return
    zoo = Zoo.open(folder / "zoo")
    for t in todo:
        bench = evaluate_selection(zoo, truth, methods, targets=[t], static=True,
                                   truth_seeds=seeds if seeds.is_file() else None)
        rows = bench.per_target.assign(bench=name)
        rows.to_csv(out, mode="a", header=not out.is_file(), index=False)
        logging.info("%s %s done", name, t)


def history_rows(name: str, folder: Path, default_rows: pd.DataFrame, ks: tuple[int, ...] = (3, 5)) -> pd.DataFrame:
    """Leave-one-target-out history baselines from the truth alone (no select call), on the evaluated targets.

    ``history:prior(loto)``: each model's mean z-scored accuracy on the other targets
    (`zooscope.zoo.history_model.prior_scores`); ``history:rank2-k{k}(loto)``: the prior's top k fine-tuned on the
    target (their true accuracy revealed) and every model re-estimated by the rank-2 projection shrunk toward the
    prior (`impute_column(..., toward_prior=True)`). Targets ranked = those in ``default_rows``.
    """
    from zooscope.bench.selection import ranking_metrics, read_truth
    from zooscope.zoo.history_model import impute_column, prior_scores

    truth = read_truth(folder / "truth.csv")
    mat = truth.pivot(index="model", columns="dataset", values="value")
    rows = []
    for t in sorted(set(default_rows["dataset"]) & set(mat.columns)):
        hist = mat.drop(columns=t).to_numpy(float)
        if hist.shape[1] < 2:
            continue
        acc = mat[t].to_numpy(float)
        names = list(mat.index)
        prior = prior_scores(hist)
        preds = {"history:prior(loto)": prior}
        for k in ks:
            top = np.argsort(-prior, kind="stable")[:k]
            preds[f"history:rank2-k{k}(loto)"] = impute_column(hist, {int(i): float(acc[i]) for i in top}, 2,
                                                               alpha=1.0, toward_prior=True)
        for label, p in preds.items():
            m = ranking_metrics(p, acc, names)
            rows.append({"method": label, "dataset": t, "tau_w": m["tau_w"], "regret@1": m["regret@1"],
                         "regret@3": m["regret@3"], "relerr@1": m["relerr@1"], "relerr@3": m["relerr@3"],
                         "best": m["best"], "models": len(names), "seconds": 0.0, "bench": name})
    return pd.DataFrame(rows)


def summary_table(per_target: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    from zooscope.bench.selection import DEFAULT, paired_bootstrap, summarize

    out = []
    for name, g in per_target.groupby("bench", sort=False):
        s = summarize(g.drop(columns="bench")).merge(paired_bootstrap(g, DEFAULT, n_resamples=n_resamples,
                                                                      seed=seed), on="method", how="left")
        out.append(s.assign(bench=name))
    res = pd.concat(out, ignore_index=True)
    cols = ["bench", "method", "tau_w", "delta_tau_w", "ci_low", "ci_high", "tau_w_family", "regret@1", "regret@3",
            "relerr@1", "relerr@3", "seconds", "targets"]
    return res[cols]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", action="append", required=True, help="name=folder (repeatable).")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("selection_eval.csv"))
    ap.add_argument("--max-targets", type=int, default=None, help="At most this many new targets per benchmark.")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.table_only:
        for spec in args.bench:
            name, _, folder = spec.partition("=")
            evaluate_bench(name, Path(folder).expanduser(), methods, args.out, args.max_targets)
    per = pd.read_csv(args.out)
    extra = []
    for spec in args.bench:
        name, _, folder = spec.partition("=")
        done = per[(per["bench"] == name) & (per["method"] == "default")]
        if len(done) >= 3:  # the history needs >= 2 other targets
            extra.append(history_rows(name, Path(folder).expanduser(), done))
    per = pd.concat([per, *extra], ignore_index=True)
    print(markdown(compact(summary_table(per))))
    return 0


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as printed in RESULTS.md: one interval column, fewer digits."""
    def ci(r: pd.Series) -> str:
        if r["method"] == "default":
            return "—"
        if not np.isfinite(r["ci_low"]):
            return f"{r['delta_tau_w']:+.3f}"
        return f"{r['delta_tau_w']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"

    out = pd.DataFrame({"bench": table["bench"], "method": table["method"], "mean τ_w": table["tau_w"],
                        "Δ vs default [95 % CI]": table.apply(ci, axis=1),
                        "τ_w within family": table["tau_w_family"], "top-1 regret": table["regret@1"],
                        "top-1 rel. err.": table["relerr@1"], "top-3 regret": table["regret@3"],
                        "top-3 rel. err.": table["relerr@3"], "s/target": table["seconds"],
                        "targets": table["targets"]})
    return out


if __name__ == "__main__":
    sys.exit(main())
