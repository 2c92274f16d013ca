"""How good is a zoo's model selection? Rankings against ground-truth fine-tuning results.

For every target dataset in the truth table and every selection method, the harness ranks the truth's models
with ``zoo.select(target, k=<all>, method=name)`` and compares the ranking with the fine-tuned accuracies:

- ``tau_w``: weighted Kendall τ, ``scipy.stats.weightedtau(score, accuracy)[0]`` (hyperbolic weights, top
  ranks count most; 1 = same order, −1 = reversed).
- ``regret@1``, ``regret@3``: best accuracy − the best accuracy among the method's top 1 / top 3 picks.
- ``relerr@1``, ``relerr@3``: the same regret as a relative error increase, regret / (1 − best accuracy)
  (NaN when the best accuracy is 1).
- ``tau_w_family``: τ_w within each family (the zoo's ``family`` tag, else the model spec) with ≥ 3 models in the
  truth, averaged over those families.
- ``seconds``: wall time of the ``select`` call for that target.

Per method, the summary adds the mean τ_w difference to the default ranker (``delta_tau_w``, paired over the
targets both ranked) and its 95 % bootstrap interval (``ci_low``, ``ci_high``; `paired_bootstrap`: targets
resampled with replacement by ``numpy.random.default_rng(seed)``, percentile interval of the mean difference).

Rows that are not ``select`` methods (``static=True``; scores from the zoo's records, never from the target's data
except the oracle):

- ``static:family-oracle``: each model scored by its family's mean true accuracy on the target (an oracle:
  it reads the truth, and says how much of the order is "which family").
- ``static:source-acc``: the model's recorded source accuracy (``metrics.source_train_acc`` or
  ``metrics.accuracy``), NaN (ranked last) when absent.
- ``static:params``: the model's parameter count (the architecture built from spec and kwargs, no weights).

``truth_seeds`` (a table with a ``seed`` column: one row per (model, dataset, seed)) adds the row
``ceiling:seed-vs-mean``: per target, the mean over seeds of τ_w(seed mean, that seed's accuracy) -- what a
perfect predictor of the expected accuracy scores against one noisy seed (the noise ceiling).

The score of a method is its own column in the returned table when there is one (``logme``, …;
``task2vec`` → −``task_distance``), else the table's ``score``. Models missing from the table, or with a NaN
score, are ranked last (ties broken by name). ``default`` is ``zoo.select`` without a method.

``history="loto"`` (leave one target out): just before ranking target t, every other target's truth that the zoo
does not already hold is recorded (``zoo.record_result``), nothing on t; right after that one ``select`` call the
harness removes what it recorded, so no other method ever sees the history. Results the zoo already held are
left as they were.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zooscope._progress import Progress
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.kept import save_last

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

__all__ = ["CEILING", "DEFAULT", "LOTO", "SelectionBench", "evaluate_selection", "noise_ceiling", "paired_bootstrap",
           "ranking_metrics", "read_truth"]

log = logging.getLogger(__name__)

DEFAULT = "default"
LOTO = "default+history(loto)"
CEILING = "ceiling:seed-vs-mean"
STATIC = ("static:family-oracle", "static:source-acc", "static:params")
TRUTH_COLUMNS = ("model", "dataset", "metric", "value")


@dataclass
class SelectionBench:
    """The outcome of `evaluate_selection`.

    Attributes
    ----------
    per_target : DataFrame
        One row per (method, dataset): tau_w, regret@1, regret@3, best, picked (the top-1 model), seconds.
    summary : DataFrame
        One row per method: mean tau_w, mean regret@1, mean regret@3, mean seconds per target, targets.
    scores : DataFrame
        One row per (method, dataset, model): score, truth.
    notes : list of str
        Modes skipped and why.
    """

    per_target: pd.DataFrame
    summary: pd.DataFrame
    scores: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def read_truth(truth: str | Path | pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Ground truth as a DataFrame (model, dataset, value) for one ``metric``; one row per (model, dataset)."""
    df = truth.copy() if isinstance(truth, pd.DataFrame) else pd.read_csv(Path(truth).expanduser())
    if "metric" not in df.columns:
        df["metric"] = metric
    missing = [c for c in TRUTH_COLUMNS if c not in df.columns]
    if missing:
        raise ZooscopeInputError(f"The truth table needs columns {', '.join(TRUTH_COLUMNS)} (seed, lr optional); "
                                 f"it lacks {', '.join(missing)}.")
    df = df[df["metric"] == metric]
    if df.empty:
        raise ZooscopeInputError(f"The truth table has no rows with metric {metric!r}.")
    dup = df.duplicated(["model", "dataset"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ZooscopeInputError(f"The truth table has more than one {metric} for ({first['model']}, "
                                 f"{first['dataset']}); keep one row per pair (e.g. the chosen seed and lr).")
    df = df.assign(model=df["model"].astype(str), dataset=df["dataset"].astype(str),
                   value=pd.to_numeric(df["value"], errors="raise").astype(float))
    return df.reset_index(drop=True)


def ranking_metrics(score: Sequence[float], truth: Sequence[float], names: Sequence[str] | None = None,
                    ks: Sequence[int] = (1, 3)) -> dict[str, float]:
    """tau_w = ``scipy.stats.weightedtau(score, truth)[0]`` and regret@k (NaN scores count as worst).

    Returns
    -------
    dict
        ``tau_w``, ``regret@k`` for each k, ``best`` (the best truth) and ``top`` (index of the top-1 pick).
    """
    from scipy.stats import weightedtau

    s = np.asarray(score, dtype=float)
    t = np.asarray(truth, dtype=float)
    if s.shape != t.shape or s.ndim != 1 or len(s) < 2:
        raise ZooscopeInputError(f"ranking_metrics needs two vectors of the same length >= 2; got {s.shape}, "
                                 f"{t.shape}.")
    finite = np.isfinite(s)
    if not finite.any():
        return {"tau_w": np.nan, **{f"regret@{k}": np.nan for k in ks}, **{f"relerr@{k}": np.nan for k in ks},
                "best": float(t.max()), "top": -1}
    s = np.where(finite, s, s[finite].min() - 1.0)
    names = list(names) if names is not None else [f"{i:09d}" for i in range(len(s))]
    order = sorted(range(len(s)), key=lambda i: (-s[i], names[i]))
    out: dict[str, float] = {"tau_w": float(weightedtau(s, t)[0])}
    for k in ks:
        out[f"regret@{k}"] = float(t.max() - t[order[:k]].max())
        out[f"relerr@{k}"] = out[f"regret@{k}"] / (1.0 - t.max()) if t.max() < 1.0 else np.nan
    out["best"] = float(t.max())
    out["top"] = order[0]
    return out


def _method_column(table: pd.DataFrame, method: str | None) -> pd.Series:
    """Return the method's own score column (larger = better) if the table has it, else ``score``."""
    if method == "task2vec" and "task_distance" in table.columns:
        return -table["task_distance"].astype(float)
    if method is not None and method in table.columns and method != "model":
        col = pd.to_numeric(table[method], errors="coerce")
        if col.notna().any():
            return col.astype(float)
    return table["score"].astype(float)


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def run_select(zoo: Any, target: str, k: int, method: str | None, candidates: Sequence[str] | None) -> pd.DataFrame:
    """``zoo.select(target, k=k, method=method)``.

    Falls back to ``methods=[method]`` for a select without ``method=``, and passes ``candidates`` when select
    takes it.
    """
    kwargs: dict[str, Any] = {"k": k}
    if candidates is not None:
        kwargs["candidates"] = list(candidates)
    if method is None:
        return zoo.select(target, **kwargs)
    from zooscope.zoo import select as select_mod

    fn = getattr(select_mod, "select", None)
    takes_method = fn is None or "method" in inspect.signature(fn).parameters
    if takes_method:
        try:
            return zoo.select(target, method=method, **kwargs)
        except TypeError as e:  # a facade that does not forward method=
            if "method" not in str(e):
                raise
    return zoo.select(target, methods=[method], **kwargs)


def _default_methods() -> list[str]:
    from zooscope.zoo import select as select_mod

    return list(getattr(select_mod, "METHODS", ()))


def evaluate_selection(zoo: Zoo, truth: str | Path | pd.DataFrame, methods: Sequence[str] | None = None, *,
                       history: str | None = None, metric: str = "accuracy", default: bool = True,
                       targets: Sequence[str] | None = None, static: bool = False,
                       truth_seeds: str | Path | pd.DataFrame | None = None, n_resamples: int = 9999,
                       seed: int = 0, progress: bool = False) -> SelectionBench:
    """Rank the truth's models for each of its targets with every method and score the rankings.

    Parameters
    ----------
    zoo : Zoo
    truth : path or DataFrame
        Columns model, dataset, metric, value (seed, lr ignored): one row per (model, dataset).
    methods : sequence of str, optional
        Selection methods by name (default: every method of `zooscope.zoo.select.METHODS`).
    history : {None, "loto"}
        ``"loto"`` adds the row ``default+history(loto)`` (module docstring); skipped with a note when the zoo has
        no ``record_result``.
    metric : str, default="accuracy"
    default : bool, default=True
        Include the default ranker (``zoo.select`` without a method).
    targets : sequence of str, optional
        Restrict to these datasets.
    static : bool, default=False
        Add the static baselines ``static:*`` (module docstring).
    truth_seeds : path or DataFrame, optional
        Per-seed truth (model, dataset, value, seed): adds the noise-ceiling row ``ceiling:seed-vs-mean``.
    n_resamples, seed : int
        Bootstrap of the paired difference to the default (`paired_bootstrap`).
    progress : bool, default=False
        Progress on stderr over the (target, method) rankings (a bar, or lines in a log).

    Returns
    -------
    SelectionBench
    """
    if history not in (None, "loto"):
        raise ZooscopeInputError(f"history must be None or 'loto'; got {history!r}.")
    df = read_truth(truth, metric)
    zoo_models = set(zoo.models()["name"])
    zoo_data = set(zoo.datasets()["name"])
    unknown_m = sorted(set(df["model"]) - zoo_models)
    unknown_d = sorted(set(df["dataset"]) - zoo_data)
    if unknown_m or unknown_d:
        raise ZooscopeInputError(
            "The truth names models or datasets the zoo does not have: "
            + "; ".join(p for p in (f"models {', '.join(unknown_m[:5])}" if unknown_m else "",
                                    f"datasets {', '.join(unknown_d[:5])}" if unknown_d else "") if p)
            + ". Use the zoo the truth was built for.")
    if targets is not None:
        df = df[df["dataset"].isin(list(targets))]
    todo: list[tuple[str, str | None, bool]] = [(m, m, False) for m in (methods or _default_methods())]
    if default:
        todo.append((DEFAULT, None, False))
    notes: list[str] = []
    if history == "loto":
        if all(callable(getattr(zoo, a, None)) for a in ("record_result", "remove_result", "results")):
            todo.append((LOTO, None, True))
        else:
            notes.append("--history loto skipped: this zoo has no record_result/remove_result/results "
                         "(the result-history API is not in this install).")
    rows, score_rows = [], []
    family = _families(zoo)
    statics = _static_scores(zoo, df) if static else {}
    recorded: set[tuple[str, str]] = set()
    all_targets = sorted(df["dataset"].unique())
    bar = Progress(f"ranking {len(all_targets)} targets × {len(todo)} methods", len(all_targets) * len(todo),
                   enabled=progress)
    try:
        bar.__enter__()
        for target in all_targets:
            t = df[df["dataset"] == target].sort_values("model")
            if len(t) < 2:
                notes.append(f"{target}: fewer than 2 models in the truth, skipped.")
                bar.advance(len(todo))
                continue
            names = t["model"].tolist()
            for label, method, loto in todo:
                if loto:
                    _record_others(zoo, df, target, metric, recorded)
                t0 = time.perf_counter()
                try:
                    table = run_select(zoo, target, len(names), method, names)
                finally:
                    seconds = time.perf_counter() - t0
                    _remove_recorded(zoo, recorded, metric)  # the other methods never see the history
                col = _method_column(table, method)
                by_model = dict(zip(table["model"].astype(str), col, strict=True))
                s = np.array([by_model.get(n, np.nan) for n in names], dtype=float)
                _add_row(rows, score_rows, label, target, names, s, t["value"].to_numpy(), family, seconds)
                bar.advance()
            truth_t = t["value"].to_numpy()
            for label, fn in statics.items():
                _add_row(rows, score_rows, label, target, names, fn(names, truth_t), truth_t, family, 0.0)
    finally:
        bar.__exit__(None, None, None)
        _remove_recorded(zoo, recorded, metric)
    if truth_seeds is not None:
        ceil = noise_ceiling(truth_seeds, metric)
        ceil = ceil[ceil["dataset"].isin(set(df["dataset"]))]
        for r in ceil.itertuples(index=False):
            rows.append({"method": CEILING, "dataset": r.dataset, "tau_w": r.tau_w, "models": r.models})
        if ceil.empty:
            notes.append("--truth-seeds: no target with >= 2 seeds for every model; no noise ceiling.")
    per_target = pd.DataFrame(rows, columns=PER_TARGET_COLUMNS)
    summary = summarize(per_target)
    if default and len(per_target):
        boot = paired_bootstrap(per_target, DEFAULT, n_resamples=n_resamples, seed=seed)
        summary = summary.merge(boot, on="method", how="left")
    bench = SelectionBench(per_target, summary, pd.DataFrame(score_rows), notes)
    save_last(zoo, bench.summary, bench.per_target, truth, metric)
    return bench


PER_TARGET_COLUMNS = ["method", "dataset", "tau_w", "tau_w_family", "regret@1", "regret@3", "relerr@1", "relerr@3",
                      "best", "picked", "models", "seconds"]


def _add_row(rows: list[dict[str, Any]], score_rows: list[dict[str, Any]], label: str, target: str, names: list[str],
             s: np.ndarray, truth: np.ndarray, family: dict[str, str], seconds: float) -> None:
    m = ranking_metrics(s, truth, names)
    fams = np.array([family.get(n, n) for n in names])
    within = []
    for f in dict.fromkeys(fams):
        idx = np.flatnonzero(fams == f)
        if len(idx) >= 3 and np.ptp(truth[idx]) > 0:
            within.append(ranking_metrics(s[idx], truth[idx], [names[i] for i in idx])["tau_w"])
    rows.append({"method": label, "dataset": target, "tau_w": m["tau_w"],
                 "tau_w_family": float(np.nanmean(within)) if np.isfinite(within).any() else np.nan,
                 "regret@1": m["regret@1"], "regret@3": m["regret@3"], "relerr@1": m["relerr@1"],
                 "relerr@3": m["relerr@3"], "best": m["best"], "picked": names[m["top"]] if m["top"] >= 0 else "",
                 "models": len(names), "seconds": seconds})
    score_rows += [{"method": label, "dataset": target, "model": n, "score": v, "truth": a}
                   for n, v, a in zip(names, s, truth, strict=True)]
    log.info("%s %s tau_w=%.3f regret@1=%.3f (%.1fs)", target, label, m["tau_w"], m["regret@1"], seconds)


def _families(zoo: Any) -> dict[str, str]:
    """Map each model to its ``family`` tag, else its spec."""
    out = {}
    for r in zoo.models().itertuples(index=False):
        tags = getattr(r, "tags", None)
        fam = tags.get("family") if isinstance(tags, dict) else None
        out[str(r.name)] = str(fam) if fam else str(getattr(r, "spec", r.name))
    return out


def _n_params(spec: str, kwargs: Any) -> float:
    from zooscope.nets.models import build_model

    try:
        model = build_model(spec, dict(kwargs or {}))
    except Exception as e:  # an architecture this install cannot build: ranked last, said in the log
        log.warning("static:params: cannot build %s (%s)", spec, e)
        return np.nan
    return float(sum(p.numel() for p in model.parameters()))


def _static_scores(zoo: Any, df: pd.DataFrame) -> dict[str, Any]:
    """{label: fn(names, truth) -> scores} for the static baselines (module docstring)."""
    models = zoo.models().set_index("name")
    family = _families(zoo)
    wanted = sorted(set(df["model"]))
    src_acc, params = {}, {}
    for name in wanted:
        metrics = models.loc[name, "metrics"] if "metrics" in models.columns else None
        metrics = metrics if isinstance(metrics, dict) else {}
        v = metrics.get("source_train_acc", metrics.get("accuracy"))
        src_acc[name] = float(v) if isinstance(v, (int, float)) else np.nan
        params[name] = _n_params(str(models.loc[name, "spec"]), models.loc[name, "kwargs"]) \
            if "spec" in models.columns else np.nan

    def oracle(names: list[str], truth: np.ndarray) -> np.ndarray:
        fams = pd.Series([family.get(n, n) for n in names])
        return fams.map(pd.Series(truth).groupby(fams).mean()).to_numpy(dtype=float)

    return {"static:family-oracle": oracle,
            "static:source-acc": lambda names, truth: np.array([src_acc.get(n, np.nan) for n in names]),
            "static:params": lambda names, truth: np.array([params.get(n, np.nan) for n in names])}


def noise_ceiling(truth_seeds: str | Path | pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per target: mean over seeds of τ_w(seed mean, that seed's values) (columns dataset, tau_w, seeds, models).

    Only targets where every model has the same >= 2 seeds count.
    """
    from scipy.stats import weightedtau

    df = truth_seeds.copy() if isinstance(truth_seeds, pd.DataFrame) else pd.read_csv(Path(truth_seeds).expanduser())
    if "seed" not in df.columns or not {"model", "dataset", "value"} <= set(df.columns):
        raise ZooscopeInputError("The per-seed truth needs columns model, dataset, value, seed.")
    if "metric" in df.columns:
        df = df[df["metric"] == metric]
    rows = []
    for target, g in df.groupby("dataset", sort=True):
        wide = g.pivot_table(index="model", columns="seed", values="value", aggfunc="mean")
        if wide.shape[1] < 2 or wide.isna().any().any() or len(wide) < 2:
            continue
        mean = wide.mean(axis=1).to_numpy()
        taus = [float(weightedtau(mean, wide[c].to_numpy())[0]) for c in wide.columns]
        rows.append({"dataset": str(target), "tau_w": float(np.mean(taus)), "seeds": wide.shape[1],
                     "models": len(wide)})
    return pd.DataFrame(rows, columns=["dataset", "tau_w", "seeds", "models"])


def paired_bootstrap(per_target: pd.DataFrame, reference: str = DEFAULT, column: str = "tau_w",
                     n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per method: mean paired difference to ``reference`` over shared targets and its 95 % bootstrap interval.

    The targets both rank are resampled with replacement (``numpy.random.default_rng(seed).integers(0, n,
    (n_resamples, n))``) and the percentile interval (2.5, 97.5) of the resampled mean difference is returned.
    Columns: method, delta_<column>, ci_low, ci_high, paired (number of targets).
    """
    cols = ["method", f"delta_{column}", "ci_low", "ci_high", "paired"]
    ref = per_target[per_target["method"] == reference].set_index("dataset")[column]
    out = []
    for method, g in per_target.groupby("method", sort=False):
        d = (g.set_index("dataset")[column] - ref).dropna()
        if method == reference or d.empty:
            out.append({"method": method, f"delta_{column}": 0.0 if method == reference else np.nan,
                        "ci_low": np.nan, "ci_high": np.nan, "paired": len(d)})
            continue
        v = d.sort_index().to_numpy(dtype=float)
        idx = np.random.default_rng(seed).integers(0, len(v), size=(n_resamples, len(v)))
        lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
        out.append({"method": method, f"delta_{column}": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi),
                    "paired": len(v)})
    return pd.DataFrame(out, columns=cols)


def _remove_recorded(zoo: Any, recorded: set[tuple[str, str]], metric: str) -> None:
    for model, dataset in sorted(recorded):
        zoo.remove_result(model, dataset, metric=metric)
    recorded.clear()


def _record_others(zoo: Any, df: pd.DataFrame, target: str, metric: str, recorded: set[tuple[str, str]]) -> None:
    """Record every other target's truth not yet in the zoo (and nothing on ``target``)."""
    have = zoo.results()
    existing = set()
    if have is not None and len(have):
        sub = have[have["metric"] == metric] if "metric" in have.columns else have
        existing = set(zip(sub["model"].astype(str), sub["dataset"].astype(str), strict=True))
    for r in df.itertuples(index=False):
        key = (r.model, r.dataset)
        if r.dataset != target and key not in existing:
            zoo.record_result(r.model, r.dataset, float(r.value), metric=metric)
            recorded.add(key)


def summarize(per_target: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean tau_w, tau_w_family, regrets and seconds over targets (in first-seen method order)."""
    stats = ["tau_w", "tau_w_family", "regret@1", "regret@3", "relerr@1", "relerr@3", "seconds"]
    stats = [c for c in stats if c in per_target.columns]
    cols = ["method", *stats, "targets"]
    if per_target.empty:
        return pd.DataFrame(columns=cols)
    g = per_target.groupby("method", sort=False)
    out = g[stats].mean()
    out["targets"] = g.size()
    return out.reset_index()[cols]


def plot_selection(bench: SelectionBench, path: str | Path) -> Path:
    """Per method: τ_w per target (dots) and its mean (bar); top-1 regret likewise. Written to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pt = bench.per_target
    methods = list(dict.fromkeys(pt["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(methods) + 3), 4), constrained_layout=True)
    for ax, col, label in ((axes[0], "tau_w", "weighted Kendall τ_w (higher is better)"),
                           (axes[1], "regret@1", "top-1 regret (lower is better)")):
        means = [pt.loc[pt["method"] == m, col].mean() for m in methods]
        ax.bar(range(len(methods)), means, color="#9ecae1", edgecolor="#3182bd")
        for i, m in enumerate(methods):
            v = pt.loc[pt["method"] == m, col].to_numpy()
            ax.scatter(np.full(len(v), i) + np.linspace(-0.2, 0.2, len(v)), v, s=10, color="k", zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right")
        ax.set_title(label, fontsize=10)
        ax.axhline(0, color="grey", lw=0.5)
    n_t = pt["dataset"].nunique()
    fig.suptitle(f"model selection vs fine-tuning ground truth ({n_t} targets)", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
