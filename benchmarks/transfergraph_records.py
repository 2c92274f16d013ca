#!/usr/bin/env python
"""Real fine-tuning records (TransferGraph, Li et al. 2024) as a history benchmark for model selection.

The TransferGraph authors released the fine-tuning results of Hugging Face image models (github
``zLizy/transferability_graph``: ``doc/records.csv``, ``doc/ftrecords_img.csv``, metadata in
``doc/model_config_dataset.csv``). The repository has no licence, so nothing of it is committed here: this script
reads the files at run time from a path the user gives, either a checkout (``<path>/doc/records.csv``) or a bare git
directory (read with ``git --git-dir <path> show HEAD:doc/records.csv``).

``accuracy_matrix`` turns the records into a models × datasets test-accuracy matrix: duplicate runs of a (model,
dataset) are averaged (``--agg max`` takes the best run instead), models with fewer than ``--min-fill`` of the
datasets are dropped, and the fill rate is printed.

Evaluation, leave one dataset out (the other datasets are the history; nothing of the held-out column is read
except the k measured cells):

- ``prior``: each model's mean z-scored accuracy on the history (`zooscope.zoo.history_model.prior_scores`);
- ``rank{r}-k{k}``: the held-out accuracy of k models revealed (the prior's top k), every model re-estimated by a
  rank-r ridge projection onto the history's low-rank basis (`zooscope.zoo.history_model.impute_column`, OBOE).

Score: ``scipy.stats.weightedtau(prediction, accuracy)[0]`` (τ_w) over the models with a held-out accuracy (a
constant prediction scores 0, not NaN), and top-1 regret; means over held-out datasets, with a seeded bootstrap
95 % interval over datasets.

Usage::

    python benchmarks/transfergraph_records.py --repo /work/.mirror/zLizy+transferability_graph/repo
    python benchmarks/transfergraph_records.py --repo ~/src/transferability_graph --file doc/ftrecords_img.csv
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# (model column, dataset column, accuracy column) per released file
COLUMNS = {"records.csv": ("model", "finetuned_dataset", "test_accuracy"),
           "ftrecords_img.csv": ("model_identifier", "train_dataset_name", "test_accuracy")}


def read_text(repo: str | Path, file: str) -> str:
    """The text of ``file`` from a checkout (a file under ``repo``) or a bare git directory (``git show``)."""
    repo = Path(repo).expanduser()
    if (repo / file).is_file():
        return (repo / file).read_text()
    if (repo / "HEAD").is_file() or (repo / ".git").exists():
        git_dir = repo / ".git" if (repo / ".git").exists() else repo
        res = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{file}"], capture_output=True,
                             text=True, check=False)
        if res.returncode == 0:
            return res.stdout
        raise FileNotFoundError(f"{file} is not in the git repository {repo}: {res.stderr.strip()}")
    raise FileNotFoundError(f"{repo} is neither a checkout holding {file} nor a git directory.")


def read_records(repo: str | Path, file: str = "doc/records.csv") -> pd.DataFrame:
    """The released records as a DataFrame with columns model, dataset, accuracy (one row per run)."""
    df = pd.read_csv(io.StringIO(read_text(repo, file)))
    m, d, a = COLUMNS.get(Path(file).name, COLUMNS["records.csv"])
    missing = [c for c in (m, d, a) if c not in df.columns]
    if missing:
        raise ValueError(f"{file} lacks the columns {missing}; columns are {list(df.columns)[:12]}")
    out = pd.DataFrame({"model": df[m].astype(str), "dataset": df[d].astype(str),
                        "accuracy": pd.to_numeric(df[a], errors="coerce")})
    return out.dropna(subset=["accuracy"]).reset_index(drop=True)


def accuracy_matrix(records: pd.DataFrame, agg: str = "mean", min_fill: float = 0.8) -> pd.DataFrame:
    """models × datasets accuracy (``agg`` over duplicate runs), models with ≥ ``min_fill`` of the datasets."""
    mat = records.pivot_table(index="model", columns="dataset", values="accuracy", aggfunc=agg)
    keep = mat.notna().mean(axis=1) >= min_fill
    return mat[keep].sort_index().sort_index(axis=1)


def _tau_w(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import weightedtau

    tau = float(weightedtau(score, truth)[0])
    return 0.0 if np.isnan(tau) else tau  # a constant prediction (e.g. k equal measurements) orders nothing: 0


def _regret(score: np.ndarray, truth: np.ndarray) -> float:
    return float(truth.max() - truth[int(np.argmax(score))])


def leave_one_dataset_out(mat: pd.DataFrame, ks: Sequence[int] = (5,), ranks: Sequence[int] = (2,),
                          alpha: float = 1.0, pick: str = "top") -> pd.DataFrame:
    """One row per (held-out dataset, method): tau_w and top-1 regret over the models that have the dataset.

    The history is ``mat`` without the held-out column; for ``rank{r}-k{k}`` the k measured models are the
    prior's top k among those with a held-out accuracy (their accuracy is revealed, the rest predicted), or with
    ``pick="spread"`` k models at evenly spaced ranks of the prior (measurements chosen for information).
    """
    from zooscope.zoo.history_model import impute_column, lowrank_factors, prior_scores

    R = mat.to_numpy(dtype=float)
    rows = []
    for j, name in enumerate(mat.columns):
        hist = np.delete(R, j, axis=1)
        truth = R[:, j]
        have = np.isfinite(truth)
        prior = prior_scores(hist)
        prior_f = np.where(np.isfinite(prior), prior, np.nanmin(prior) - 1.0)
        rows.append({"dataset": name, "method": "prior", "tau_w": _tau_w(prior_f[have], truth[have]),
                     "regret@1": _regret(prior_f[have], truth[have]), "models": int(have.sum())})
        for r in ranks:
            F = lowrank_factors(hist, r)
            for k in ks:
                cand = np.flatnonzero(have)
                ordered = cand[np.argsort(-prior_f[cand], kind="stable")]
                top = ordered[:k] if pick == "top" else ordered[np.linspace(0, len(ordered) - 1, k).round().astype(int)]
                meas = {int(i): float(truth[i]) for i in top}
                for label, tp in ((f"rank{r}-k{k}", False), (f"rank{r}-k{k}-toward-prior", True)):
                    pred = impute_column(hist, meas, r, alpha=alpha, factors=F, toward_prior=tp)
                    rows.append({"dataset": name, "method": label, "tau_w": _tau_w(pred[have], truth[have]),
                                 "regret@1": _regret(pred[have], truth[have]), "models": int(have.sum())})
    return pd.DataFrame(rows)


def summarize(per_dataset: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per method: mean tau_w with a seeded bootstrap 95 % interval over datasets, mean regret@1."""
    out = []
    rng = np.random.default_rng(seed)
    for method, g in per_dataset.groupby("method", sort=False):
        v = g["tau_w"].to_numpy()
        idx = rng.integers(0, len(v), size=(n_resamples, len(v)))
        lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
        out.append({"method": method, "tau_w": v.mean(), "ci_low": lo, "ci_high": hi,
                    "regret@1": g["regret@1"].mean(), "datasets": len(v)})
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame, index: bool = False, digits: int = 3) -> str:
    """A GitHub markdown table (pandas' to_markdown needs tabulate, which is not a dependency)."""
    if index:
        df = df.reset_index()
    fmt = [[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in fmt])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="A checkout of zLizy/transferability_graph or its git directory.")
    ap.add_argument("--file", default="doc/records.csv", help="doc/records.csv (default) or doc/ftrecords_img.csv")
    ap.add_argument("--agg", choices=("mean", "max"), default="mean", help="Over duplicate runs of a pair.")
    ap.add_argument("--min-fill", type=float, default=0.8, help="Keep models with at least this share of datasets.")
    ap.add_argument("--k", default="5", help="Comma-separated numbers of measured models per held-out dataset.")
    ap.add_argument("--rank", default="2", help="Comma-separated ranks of the low-rank projection.")
    ap.add_argument("--pick", choices=("top", "spread"), default="top",
                    help="Measured models: the prior's top k, or k at evenly spaced prior ranks.")
    ap.add_argument("--alpha", type=float, default=1.0, help="Ridge penalty of the projection.")
    ap.add_argument("--per-dataset", action="store_true", help="Also print one row per held-out dataset.")
    args = ap.parse_args(argv)
    rec = read_records(args.repo, args.file)
    mat = accuracy_matrix(rec, args.agg, args.min_fill)
    dup = rec.groupby(["model", "dataset"]).size()
    print(f"{args.file}: {len(rec)} runs, {rec['model'].nunique()} models × {rec['dataset'].nunique()} datasets; "
          f"{int((dup > 1).sum())} pairs with repeated runs ({args.agg} taken); kept {mat.shape[0]} models with "
          f">= {args.min_fill:.0%} of {mat.shape[1]} datasets; fill rate {mat.notna().to_numpy().mean():.3f}")
    ks = [int(k) for k in args.k.split(",")]
    ranks = [int(r) for r in args.rank.split(",")]
    per = leave_one_dataset_out(mat, ks, ranks, args.alpha, args.pick)
    if args.per_dataset:
        print(markdown(per.pivot(index="dataset", columns="method", values="tau_w"), index=True))
    print(markdown(summarize(per)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
