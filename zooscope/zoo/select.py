"""Model selection: which zoo model to fine-tune for a new labelled dataset.

Reads only (see `SelectContext`); the one thing written is deletable cache under the zoo's ``cache/``
(pre-logits features per (model, dataset, subset) in ``cache/select_features``, the target's task vector and the
trivial task's vector when task distance is asked for).

Default ranker (``method=None``), chosen by evidence
    The unweighted mean of the rank-normalised LogME, LEEP, NCE and H-score of each candidate, every score computed
    on the candidate's **pre-logits** features (`zooscope.embed.prelogits`: the classifier's pooled input) on a
    stratified subset (≤ ``max_examples``) of the target's labelled data. A model without a classifier head has no
    LEEP/NCE: the mean is over the scores it has. Nothing here needs the model's training data (hub models) or any
    recorded history.

    Evidence (selection benchmark, ``scripts/build_selection_bench.py``: 28 models of 4 families trained on 7
    source tasks, 11 target tasks, truth = full fine-tuning; ``benchmarks/selection_default.py``; mean weighted
    Kendall τ_w over targets, nothing fitted on the target it ranks):

    ========================================  ==========  =========
    rule                                      mean τ_w    min τ_w
    ========================================  ==========  =========
    **rank mean(LogME, LEEP, NCE, H-score)**  **0.659**   0.214
    best rank-mean set chosen on the other    0.656       0.201
    targets (leave one target out)
    ridge on z-scored scores (LOTO-fitted)    0.636       0.320
    z-mean(LogME, LEEP, NCE, H-score)         0.617       0.190
    NCTI / LEEP / LogME / k-NN alone          0.591 / 0.584 / 0.574 / 0.573
    H-score / NCE / SFDA-PCA alone            0.555 / 0.545 / 0.542
    GBC / 3-fold linear probe / TransRate     0.490 / 0.490 / 0.446
    task distance alone (issue 8's zoo)       0.27
    ========================================  ==========  =========

    Choosing the "best" subset of scores on the benchmark does not beat the fixed four out of sample (0.656 vs
    0.659), and a fitted fusion does worse (0.636): the simple rule is the default. Task distance is not in it
    (τ_w 0.27 on issue 8's zoo; the rank mean with it was 0.61); ``method="task2vec"`` remains. Nor is the
    ``fisher`` pair distance: on 4 targets it reaches τ_w 0.17 alone and adding it to the four lowers their rank
    mean from 0.746 to 0.705 (``benchmarks/RESULTS.md``).

History (recorded fine-tuning outcomes, `zooscope.zoo.history`)
    When results on datasets other than the target are recorded, each model gets a prior: its mean z-scored
    outcome over the past datasets, each weighted by task similarity = max(0, Spearman correlation of the default
    score of the models on the target and on that past dataset) (1 when it cannot be computed). The default score
    becomes the mean of the target-side rank mean and the rank-normalised prior (models without a prior keep the
    target-side score). Benchmark, leave one target out: τ_w 0.714 (uniform weights 0.705; prior alone 0.644).
    A result recorded on the target itself is shown in ``result_on_target`` and never used to rank it.

Candidates (stage 1) and exact scores (stage 2)
    Zoos of at most ``STAGE1_ALL`` (200) fitting models: every model is scored. Larger zoos: the task2vec index of
    the target's probe network proposes the nearest source datasets (FAISS on the centred log-Fisher), their models
    are re-ranked by d_asym (`_task_distances`), the ``pool`` nearest kept, plus every model whose training data is
    unknown. Stage 2 scores the candidates exactly as above.

Methods by name (``method=``; the table's ``score`` is then that column, rank-normalised)
    ``logme``, ``leep``, ``nce``, ``hscore``, ``ncti``, ``knn``, ``linear_probe``, ``sfda``, ``sfda_pca``, ``gbc``,
    ``transrate`` (`zooscope.measures.transfer`, on pre-logits features or source-head softmax), ``task2vec``
    (d_asym(source → target) through the zoo's probe network, Achille et al. 2019; smaller is better), ``fisher``
    (d_sym(F_m(source), F_m(target)): the per-filter diagonal Fisher of each candidate itself on its training
    dataset and on the target, Task2Vec's estimator with the candidate as the probe, `FISHER_EXAMPLES` examples,
    cached per (model, dataset) in ``cache/select_fisher``; smaller is better; NaN when the training data is
    unknown), ``history`` (the prior alone).
    ``methods=(...)`` (several) ranks by the rank mean of those columns.

Optional refinement: ``finetune_top=n`` fine-tunes the top n candidates for ``epochs`` (head replaced, all layers
trained, `zooscope.training.train_classifier`, on a stratified 80/20 split of the target's data) and re-orders
those n by validation accuracy (column ``finetune_val_acc``). Off by default. On the benchmark (top 3, 1 epoch):
top-1 regret 0.030 → 0.015, τ_w 0.655 → 0.669, for ~3 s per target.

Speed: one target, 20 small models, default settings, no cached features: 11–19 s on 2 loaded cores; features and
scores are then cached per (model, dataset, subset) and a repeat takes ~0.1 s.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.zoo.catalog import Catalog, params_hash
from zooscope.zoo.embedrun import EmbedContext, compute_missing
from zooscope.zoo.indices import IndexKey, IndexReader
from zooscope.zoo.integrity import model_problem, skipped_note
from zooscope.zoo.probes import ProbeContext, loadable_net, probe_inputs, untrained_note
from zooscope.zoo.vectors import VectorRepo, comparability_group

__all__ = ["DEFAULT_COLUMNS", "METHODS", "STAGE1_ALL", "SelectContext", "combine_ranks", "select"]

log = logging.getLogger(__name__)

# method -> (function name in zooscope.measures, input: "features", "probs" or "labels")
_SCORERS = {"logme": ("logme", "features"), "leep": ("leep", "probs"), "nce": ("nce", "labels"),
            "hscore": ("h_score", "features"), "ncti": ("ncti", "features"), "knn": ("knn_accuracy", "features"),
            "linear_probe": ("linear_probe", "features"), "sfda": ("sfda", "features"),
            "sfda_pca": ("sfda_pca", "features"), "gbc": ("gbc", "features"), "transrate": ("transrate", "features")}
METHODS = ("task2vec", *_SCORERS, "fisher", "history")
FISHER_EXAMPLES = 300  # examples per (model, dataset) Fisher of the ``fisher`` method
DEFAULT_COLUMNS = ("logme", "leep", "nce", "hscore")
STAGE1_ALL = 200  # at most this many fitting models: all are scored; above, the task2vec index proposes candidates
_NAMES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "hscore": "H-score", "ncti": "NCTI", "knn": "k-NN",
          "linear_probe": "linear probe", "sfda": "SFDA", "sfda_pca": "SFDA-PCA", "gbc": "GBC",
          "transrate": "TransRate"}


@dataclass(frozen=True)
class SelectContext:
    """What `select` reads: catalog, stored vectors, indices, probe sets, and the embedding plan (used only to
    compute missing vectors in memory)."""

    catalog: Catalog
    vectors: VectorRepo
    indices: IndexReader
    probes: ProbeContext
    embedding: EmbedContext


def _scorer(method: str) -> Any:
    from zooscope import measures

    fn = getattr(measures, _SCORERS[method][0], None)
    if not callable(fn):
        raise ZooscopeInputError(f"Selection method {method!r} is not available in this install "
                                 f"(zooscope.measures has no {_SCORERS[method][0]}).")
    return fn


def combine_ranks(table: pd.DataFrame, columns: Sequence[str], smaller_is_better: Sequence[str] = ()) -> np.ndarray:
    """Mean of per-column rank-normalised scores in [0, 1] (1 = best), ignoring NaN cells.

    Parameters
    ----------
    table : pandas.DataFrame
    columns : sequence of str
    smaller_is_better : sequence of str
        Columns where smaller values are better (distances).

    Returns
    -------
    ndarray of shape (len(table),)
        NaN for a row with no value in any column.
    """
    parts = []
    for c in columns:
        col = table[c].astype(float)
        col = -col if c in smaller_is_better else col
        r = col.rank(method="average")
        m = int(col.notna().sum())
        parts.append(((r - 1) / (m - 1)) if m > 1 else r.where(r.isna(), 1.0))
    if not parts:
        return np.full(len(table), np.nan)
    return pd.concat(parts, axis=1).mean(axis=1, skipna=True).to_numpy(dtype=float)


def _task_distances(ctx: SelectContext, target: str, models: list[dict], alpha: float,
                    pool: int) -> tuple[dict[str, float], set[str]]:
    """(d_asym(source → target) of the models whose source task the index proposes (exact re-rank), names of
    the models whose source task is unknown: not registered, or its task vector cannot be computed)."""
    from zooscope.embed.task2vec import task_distance
    from zooscope.index.faiss_index import rerank

    tvec, trow = compute_missing(ctx.embedding, "task2vec", target)
    if note := untrained_note([trow["params"]["request"].get("probe_net")]):
        log.warning("%s", note)
    group = comparability_group(trow)
    registered = {d["name"] for d in ctx.catalog.datasets()}
    sources = sorted({m["trained_on"] for m in models if m["trained_on"] in registered})
    ids = ctx.indices.search(IndexKey("task2vec", "all", group), tvec[None], 2 * pool + 1)
    rows = ctx.vectors.current_rows("task2vec") if ids is None else ctx.catalog.embeddings(kind="task2vec",
                                                                                          ids=ids.tolist())
    near = {r["dataset"] for r in rows if comparability_group(r) == group}
    stored = {r["dataset"] for r in ctx.vectors.current_rows("task2vec") if comparability_group(r) == group}
    vecs: dict[str, np.ndarray] = {}
    failed: set[str] = set()
    for name in sources:
        if name in near or name not in stored:  # not stored yet: computed in memory (cached), always a candidate
            try:
                vecs[name] = compute_missing(ctx.embedding, "task2vec", name)[0]
            except ZooscopeInputError as e:
                log.warning("no task vector for source %r: %s", name, e)
                failed.add(name)
    trivial = _trivial(ctx, target, trow)
    cands = {i: m for i, m in enumerate(models) if m["trained_on"] in vecs}
    ranked = rerank(tvec, sorted(cands), lambda ids: np.stack([vecs[cands[i]["trained_on"]] for i in ids]),
                    lambda t, C: np.array([task_distance(c, t, kind="asym", alpha=alpha, trivial=trivial)
                                           for c in C]), larger_is_better=False)
    unknown = {m["name"] for m in models if m["trained_on"] not in registered or m["trained_on"] in failed}
    return {cands[i]["name"]: float(d) for i, d in ranked}, unknown


def _trivial(ctx: SelectContext, target: str, row: dict[str, Any]) -> np.ndarray:
    """The trivial task's vector for the target's probe network (kept in ``<cache>/task2vec_trivial``)."""
    from zooscope._io import atomic_write
    from zooscope.embed.task2vec import Task2Vec
    from zooscope.zoo.models import build_model

    req = row["params"]["request"]
    shape = tuple(ctx.catalog.get_dataset(target)["input_shape"])
    probe, x = probe_inputs(ctx.probes, shape)
    path = ctx.probes.paths.cache / "task2vec_trivial" / f"fisher-{params_hash({**req, 'probe': probe['id']})[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    net = loadable_net(ctx.probes, req["probe_net"])
    params = {k: v for k, v in req["params"].items() if k not in ("progress",)}
    t2v = Task2Vec(build_model(net["arch"], net.get("kwargs"), net.get("checkpoint"),
                               pretrained=bool(net.get("pretrained"))), **params)
    # the raw Fisher: task_distance needs its absolute scale (index_vector is only for the FAISS index)
    vec = np.asarray(t2v.embed_trivial(x).hessian, dtype=np.float32)
    try:
        atomic_write(path, lambda f: np.save(f, vec, allow_pickle=False))
    except OSError as e:
        log.warning("could not cache %s (%s)", path, e)
    return vec


def _cache_path(ctx: SelectContext, m: dict[str, Any], rec: dict[str, Any], key: dict[str, Any]) -> Any:
    """``cache/select_features/<hash>.npz`` for (model, dataset, subset); its scores sit next to it in
    ``<hash>.scores-<zooscope version>.json``."""
    h = params_hash({**key, "model": m["name"], "spec": m["spec"], "kwargs": m["kwargs"],
                     "checkpoint": m["checkpoint"], "sha": m.get("checkpoint_sha256"),
                     "dataset": rec["name"], "source": rec["source"], "meta": rec["meta"], "rule": "prelogits"})
    return ctx.probes.paths.cache / "select_features" / f"{h[:32]}.npz"


def _features(m: dict[str, Any], sub: Any, path: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(pre-logits features (n, p), softmax of the source head (n, C) or None), cached at ``path``."""
    from zooscope._io import atomic_write
    from zooscope.embed.prelogits import prelogits_features
    from zooscope.zoo.models import build_model

    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["features"], (z["probs"] if z["probs"].size else None)
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache %s (%s)", path, e)
    net = build_model(m["spec"], m["kwargs"], m["checkpoint"])
    feats, logits = prelogits_features(net, sub.x)
    probs = None
    if logits is not None:
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
    try:
        atomic_write(path, lambda f: np.savez(f, features=feats, probs=probs if probs is not None else np.zeros(0)))
    except OSError as e:
        log.warning("could not cache %s (%s)", path, e)
    return feats, probs


def _score_table(ctx: SelectContext, rec: dict[str, Any], models: list[dict[str, Any]], columns: Sequence[str],
                 max_examples: int, seed: int, progress: bool = False,
                 skipped: list[tuple[str, str]] | None = None) -> tuple[pd.DataFrame, Any]:
    """One row per model: the transferability ``columns`` on ``rec``'s labelled data (pre-logits features);
    features and scores cached per (model, dataset, subset)."""
    import json

    from zooscope._version import __version__
    from zooscope._io import atomic_write
    from zooscope.zoo.datasets import probe_subset

    ds = _load_labelled(rec)
    sub = probe_subset(ds, min(max_examples, len(ds)), seed=seed)
    y = sub.y.numpy()
    scorers = {c: _scorer(c) for c in columns}
    key = {"n": len(sub), "seed": seed}
    rows = []
    for m in _progress(models, f"features and scores of {len(models)} candidates", progress):
        row: dict[str, Any] = {"model": m["name"]}
        if scorers:
            path = _cache_path(ctx, m, rec, key)
            spath = path.with_name(f"{path.stem}.scores-{__version__}.json")
            try:
                cached = json.loads(spath.read_text()) if spath.is_file() else {}
            except (OSError, ValueError):
                cached = {}
            todo = [c for c in scorers if c not in cached]
            if todo:
                feats, probs = _features(m, sub, path)
                if not np.isfinite(feats).all():  # NaN weights or activations: skipped, never fatal for the zoo
                    if skipped is not None:
                        skipped.append((m["name"], "non-finite features (NaN or Inf weights or activations)"))
                    continue
                for c in todo:
                    cached[c] = _one_score(c, scorers[c], feats, probs, y, m["name"], rec["name"])
                try:
                    atomic_write(spath, json.dumps(cached).encode())
                except OSError as e:
                    log.warning("could not cache %s (%s)", spath, e)
            row.update({c: float(cached[c]) for c in scorers})
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", *columns]), ds


def _one_score(c: str, fn: Any, feats: np.ndarray, probs: np.ndarray | None, y: np.ndarray, model: str,
               dataset: str) -> float:
    kind = _SCORERS[c][1]
    try:
        if kind == "features":
            return float(fn(feats, y))
        return np.nan if probs is None else float(fn(probs if kind == "probs" else probs.argmax(1), y))
    except ZooscopeInputError:
        raise
    except (ValueError, np.linalg.LinAlgError) as e:  # a degenerate feature matrix: no score
        log.warning("%s of %s on %s failed: %s", c, model, dataset, e)
        return np.nan


def _load_labelled(rec: dict[str, Any]) -> Any:
    from zooscope.zoo.datasets import check_labelled, load_dataset

    return check_labelled(load_dataset(rec["source"], split=rec["meta"].get("split", "train"),
                                       seed=int(rec["meta"].get("seed", 0))))


def _pair_fisher(ctx: SelectContext, m: dict[str, Any], rec: dict[str, Any], seed: int) -> np.ndarray:
    """The per-filter diagonal Fisher of zoo model ``m`` itself on dataset ``rec`` (MODEL2VEC's F_i): Task2Vec
    with the model as the probe (its head refitted on the dataset, the task2vec per-sample estimator), on a
    stratified subset of `FISHER_EXAMPLES`; cached in ``cache/select_fisher`` per (model, dataset)."""
    from zooscope._io import atomic_write
    from zooscope.embed.task2vec import Task2Vec
    from zooscope.zoo.datasets import probe_subset
    from zooscope.zoo.models import build_model

    params = {"max_samples": FISHER_EXAMPLES, "n_samples": FISHER_EXAMPLES, "head_epochs": 3, "head_draws": 2000,
              "seed": seed}
    h = params_hash({**params, "model": m["name"], "spec": m["spec"], "kwargs": m["kwargs"],
                     "checkpoint": m["checkpoint"], "sha": m.get("checkpoint_sha256"), "dataset": rec["name"],
                     "source": rec["source"], "meta": rec["meta"], "kind": "fisher"})
    path = ctx.probes.paths.cache / "select_fisher" / f"{h[:32]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    ds = _load_labelled(rec)
    sub = probe_subset(ds, min(FISHER_EXAMPLES, len(ds)), seed=seed)
    t2v = Task2Vec(build_model(m["spec"], m["kwargs"], m["checkpoint"]), **params)
    vec = np.asarray(t2v.embed(sub.x, sub.y).hessian, dtype=np.float64)
    try:
        atomic_write(path, lambda f: np.save(f, vec, allow_pickle=False))
    except OSError as e:
        log.warning("could not cache %s (%s)", path, e)
    return vec


def _fisher_distances(ctx: SelectContext, rec: dict[str, Any], models: list[dict[str, Any]],
                      seed: int) -> dict[str, float]:
    """d_sym(F_m(source), F_m(target)) per model whose training dataset is registered (NaN otherwise)."""
    from zooscope.embed.task2vec import task_distance

    registered = {d["name"]: d for d in ctx.catalog.datasets()}
    out = {}
    for m in models:
        src = registered.get(m["trained_on"] or "")
        if src is None:
            out[m["name"]] = np.nan
            continue
        out[m["name"]] = float(task_distance(_pair_fisher(ctx, m, src, seed), _pair_fisher(ctx, m, rec, seed),
                                             kind="sym"))
    return out


def _rank01(col: pd.Series) -> pd.Series:
    return pd.Series(combine_ranks(col.to_frame("c"), ["c"]), index=col.index)


def _similarities(ctx: SelectContext, target_score: pd.Series, past: Sequence[str], models: list[dict[str, Any]],
                  max_examples: int, seed: int) -> dict[str, float]:
    """Task similarity of each past dataset to the target: max(0, Spearman correlation over the models of the
    default score on both); 1.0 when it cannot be computed."""
    from scipy.stats import spearmanr

    out = {}
    for p in past:
        try:
            rec = ctx.catalog.get_dataset(p)
            fit = [m for m in models if rec["input_shape"] and tuple(m["input_shape"] or ()) ==
                   tuple(rec["input_shape"])]
            t, _ = _score_table(ctx, rec, fit, DEFAULT_COLUMNS, max_examples, seed)
            other = pd.Series(combine_ranks(t, DEFAULT_COLUMNS), index=t["model"])
            both = pd.concat([target_score, other], axis=1, join="inner").dropna()
            with warnings.catch_warnings():  # a constant profile has no correlation: weight 1 below
                warnings.simplefilter("ignore")
                r = spearmanr(both.iloc[:, 0], both.iloc[:, 1])[0] if len(both) >= 3 else np.nan
            out[p] = max(float(r), 0.0) if np.isfinite(r) else 1.0
        except ZooscopeInputError as e:
            log.warning("no task similarity for past dataset %r: %s", p, e)
            out[p] = 1.0
    return out


def select(ctx: SelectContext, dataset: str, k: int = 10, *, method: str | None = None,
           methods: Sequence[str] | None = None, candidates: Sequence[str] | None = None, pool: int | None = None,
           alpha: float = 0.15, max_examples: int = 1000, seed: int = 0, history: bool = True,
           metric: str = "accuracy", finetune_top: int = 0, epochs: int = 1, progress: bool = False) -> pd.DataFrame:
    """Rank the zoo models to transfer from for a registered labelled ``dataset`` (module docstring: the rule).

    Parameters
    ----------
    ctx : SelectContext
    dataset : str
        A registered dataset with at least two classes.
    k : int, default=10
    method : str, optional
        Rank by one method (`METHODS`); default: the evidence-chosen default ranker.
    methods : sequence of str, optional
        Rank by the rank mean of several methods (instead of ``method``).
    candidates : sequence of str, optional
        Restrict to these models (default: every model whose input shape fits the dataset).
    pool : int, optional
        Stage-1 survivors with known source tasks in zoos above `STAGE1_ALL` models (default max(3k, 10)).
    alpha : float, default=0.15
        d_asym's complexity weight (``task2vec``).
    max_examples : int, default=1000
        Target examples used for the transferability scores (stratified, seeded).
    seed : int, default=0
    history : bool, default=True
        Use results recorded on other datasets (default ranker and ``method="history"``).
    metric : str, default="accuracy"
        The recorded metric the history uses.
    finetune_top : int, default=0
        Fine-tune the top n candidates for ``epochs`` and re-order them by validation accuracy.
    epochs : int, default=1
    progress : bool, default=False
        A progress bar on stderr over the candidates' feature passes and scores.

    Returns
    -------
    pandas.DataFrame
        rank, model, score (in [0, 1], larger = better), the method columns, history ("0.88 (4 past)"),
        result_on_target, [finetune_val_acc], arch, trained_on, why. ``attrs["skipped"]``: [(model, reason)] of
        the models left out (checkpoint missing or changed, non-finite weights): one bad model never blocks select.
    """
    from zooscope.zoo import history as hist

    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'k' of Zoo.select must be an int >= 1; got {k!r}.")
    if method is not None and methods is not None:
        raise ZooscopeInputError("Pass either method= (one) or methods= (several) to Zoo.select, not both.")
    if methods is not None:
        chosen = [check_choice(m, METHODS, "methods", "Zoo.select") for m in methods]
        if not chosen:
            raise ZooscopeInputError(f"Zoo.select needs at least one method among {', '.join(METHODS)}.")
    elif method is not None:
        chosen = [check_choice(method, METHODS, "method", "Zoo.select")]
    else:
        chosen = []
    default = not chosen
    if isinstance(finetune_top, bool) or not isinstance(finetune_top, int | np.integer) or finetune_top < 0:
        raise ZooscopeInputError(f"finetune_top must be an int >= 0; got {finetune_top!r}.")
    all_models = ctx.catalog.models()
    if not all_models:
        raise ZooscopeInputError("The zoo has no models. Add some (zoo.add_model) before selecting.")
    rec = ctx.catalog.get_dataset(dataset)
    models = all_models if candidates is None else [ctx.catalog.get_model(n) for n in candidates]
    skipped = [(m["name"], r) for m in models if (r := model_problem(m))]  # one bad model never blocks select
    models = [m for m in models if m["name"] not in dict(skipped)]
    shape = tuple(rec["input_shape"] or ())
    fits = [m for m in models if m["input_shape"] and tuple(m["input_shape"]) == shape]
    if not fits:
        shapes = sorted({tuple(m["input_shape"] or ()) for m in models})
        raise ZooscopeInputError(f"No candidate model takes inputs of shape {shape} (dataset {dataset!r}); "
                                 f"the models take {shapes}. Resize the dataset (e.g. '?size=28') or add models.")
    score_cols = list(DEFAULT_COLUMNS) if default else [c for c in chosen if c in _SCORERS]
    dist: dict[str, float] = {}
    if "task2vec" in chosen or len(fits) > STAGE1_ALL:
        try:
            pool = int(pool or max(3 * k, 10))
            dist, unknown = _task_distances(ctx, dataset, fits, alpha, pool if len(fits) > STAGE1_ALL else len(fits))
            if len(fits) > STAGE1_ALL:
                keep = set(sorted(dist, key=dist.get)[:pool])
                fits = [m for m in fits if m["name"] in keep or m["name"] in unknown]
        except ZooscopeInputError:
            if "task2vec" in chosen:
                raise
            log.warning("no task vectors for %r: scoring all %d models", dataset, len(fits))
    table, ds = _score_table(ctx, rec, fits, score_cols, max_examples, seed, progress, skipped)
    bad = dict(skipped)
    fits = [m for m in fits if m["name"] not in bad]
    table = table[~table["model"].isin(bad)].reset_index(drop=True)
    if not fits:
        raise ZooscopeInputError(f"Every candidate model was skipped: {'; '.join(skipped_note(skipped))}.")
    table["task_distance"] = [dist.get(n, np.nan) for n in table["model"]]
    if "fisher" in chosen:
        fd = _fisher_distances(ctx, rec, fits, seed)
        table["fisher_distance"] = [fd[n] for n in table["model"]]
    table.index = pd.Index(table["model"].to_numpy(), name=None)
    rename = {"task2vec": "task_distance", "fisher": "fisher_distance"}
    cols = [rename.get(c, c) for c in (DEFAULT_COLUMNS if default else chosen)]
    target_side = [c for c in cols if c != "history"]
    smaller = ("task_distance", "fisher_distance")
    base = pd.Series(combine_ranks(table, target_side, smaller_is_better=smaller), index=table.index) \
        if target_side else pd.Series(np.nan, index=table.index)
    # history: results on OTHER datasets only; the target's own results are displayed, never ranked on
    recorded = hist.results(ctx.catalog)
    recorded = recorded[recorded["metric"] == metric]
    own = recorded[recorded["dataset"] == dataset].set_index("model")["value"]
    table["result_on_target"] = own.reindex(table.index).to_numpy(dtype=float)
    prior = pd.DataFrame({"prior": np.nan, "n_past": 0}, index=table.index)
    weights: dict[str, float] = {}
    past = sorted(set(recorded.loc[recorded["dataset"] != dataset, "dataset"]))
    if (history and (default or "history" in chosen) and past):
        sim_base = base if default else pd.Series(combine_ranks(*_default_for(ctx, rec, fits, max_examples, seed)),
                                                  index=table.index)
        sims = _similarities(ctx, sim_base, past, all_models, max_examples, seed)
        prior, weights = hist.history_prior(recorded, dataset, list(table.index), metric, sims)
    table["history"] = [f"{p:.2f} ({n} past)" if np.isfinite(p) else "" for p, n in
                        zip(prior["prior"], prior["n_past"], strict=True)]
    hr = _rank01(prior["prior"])
    if default:
        table["score"] = pd.concat([base, hr], axis=1).mean(axis=1, skipna=True)
    elif chosen == ["history"]:
        table["score"] = hr
    else:
        table["score"] = pd.concat([base, hr], axis=1).mean(axis=1, skipna=True) if "history" in chosen else base
    table["arch"] = [m["spec"] for m in fits]
    table["trained_on"] = [m["trained_on"] for m in fits]
    table = table.sort_values(["score", "model"], ascending=[False, True], na_position="last")
    if finetune_top:
        table = _refine(table, fits, ds, int(finetune_top), int(epochs), seed)
    shown = [c for c in cols if c not in ("history",)]
    registered = {d["name"] for d in ctx.catalog.datasets()}
    table["why"] = [_why(table, name, shown, prior, weights, default, registered) for name in table.index]
    table = table.head(k).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    extra = [c for c in ("task_distance", "fisher_distance", *score_cols)
             if c in table and (c not in ("task_distance", "fisher_distance") or c in cols or table[c].notna().any())]
    order = ["rank", "model", "score", *dict.fromkeys(extra), "history", "result_on_target",
             *(["finetune_val_acc"] if finetune_top else []), "arch", "trained_on", "why"]
    table = table[order]
    table.attrs["skipped"] = sorted(set(skipped))
    return table


def _progress(items: list, description: str, on: bool) -> Any:
    """``items``, with a Rich progress bar on stderr when ``on``."""
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, disable=not on, console=Console(stderr=True), transient=True)


def _default_for(ctx: SelectContext, rec: dict[str, Any], fits: list[dict[str, Any]], max_examples: int,
                 seed: int) -> tuple[pd.DataFrame, list[str]]:
    t, _ = _score_table(ctx, rec, fits, DEFAULT_COLUMNS, max_examples, seed)
    return t, list(DEFAULT_COLUMNS)


def _refine(table: pd.DataFrame, fits: list[dict[str, Any]], ds: Any, n: int, epochs: int,
            seed: int) -> pd.DataFrame:
    """Fine-tune the top ``n`` rows briefly (head replaced, all layers) and re-order them by validation accuracy."""
    import torch

    from zooscope._sampling import stratified_sample
    from zooscope.embed.prelogits import replace_classifier
    from zooscope.training import train_classifier
    from zooscope.zoo.models import build_model

    y = ds.y.numpy()
    n_val = max(round(0.2 * len(y)), 2 * int(y.max() + 1))
    val = np.asarray(stratified_sample(y, n_val, seed=seed))
    tr = np.setdiff1d(np.arange(len(y)), val)
    by_name = {m["name"]: m for m in fits}
    top = list(table.index[:n])
    acc = {}
    for name in top:
        m = by_name[name]
        torch.manual_seed(seed)
        net = replace_classifier(build_model(m["spec"], m["kwargs"], m["checkpoint"]), int(y.max() + 1), seed=seed)
        res = train_classifier(net, ds.x[tr], ds.y[tr], epochs=epochs, seed=seed, x_val=ds.x[val], y_val=ds.y[val])
        acc[name] = float(res.val_acc)
    table = table.copy()
    table["finetune_val_acc"] = pd.Series(acc).reindex(table.index).to_numpy(dtype=float)
    head = sorted(top, key=lambda t: (-acc[t], top.index(t)))
    return table.loc[head + list(table.index[n:])]


def _why(table: pd.DataFrame, name: str, cols: list[str], prior: pd.DataFrame, weights: dict[str, float],
         default: bool, registered: set[str] = frozenset()) -> str:
    row = table.loc[name]
    parts = []
    if "task_distance" in cols:
        if np.isnan(row["task_distance"]) and isinstance(row["trained_on"], str) and row["trained_on"] not in \
                registered:
            parts.append(f"training data {row['trained_on']!r} not registered: transferability only")
        elif np.isnan(row["task_distance"]):
            parts.append("training data unknown: transferability only")
        else:
            nearest = row["task_distance"] <= table["task_distance"].min(skipna=True)
            parts.append(f"{'nearest' if nearest else 'source'} task ({row['trained_on']}, "
                         f"d_asym={row['task_distance']:.3g})")
    elif not (isinstance(row["trained_on"], str) and row["trained_on"] in registered):  # said, not needed to rank
        parts.append(f"training data {row['trained_on']!r} not registered" if isinstance(row["trained_on"], str)
                     else "training data unknown")
    if "fisher_distance" in cols and np.isfinite(row["fisher_distance"]):
        parts.append(f"own Fisher source vs target d_sym={row['fisher_distance']:.3g}")
    best = [_NAMES[c] for c in cols if c in _NAMES and np.isfinite(row[c]) and row[c] >= table[c].max(skipna=True)]
    if best:
        parts.append("best " + ", ".join(best))
    ranks = [f"{_NAMES[c]} {int((table[c] > row[c]).sum()) + 1}/{int(table[c].notna().sum())}" for c in cols
             if c in _NAMES and np.isfinite(row[c]) and _NAMES[c] not in best]
    if ranks and len(table) > 1:
        parts.append("rank " + ", ".join(ranks))
    if default and not any(np.isfinite(row[c]) for c in DEFAULT_COLUMNS if c in ("leep", "nce")):
        parts.append("no classifier head: LogME and H-score only")
    p = prior.loc[name] if name in prior.index else None
    if p is not None and np.isfinite(p["prior"]):
        near = sorted((w, d) for d, w in weights.items() if w > 0)[::-1][:3]
        like = ", ".join(f"{d} (sim {w:.2f})" for w, d in near)
        parts.append(f"history: {'above' if p['prior'] > 0 else 'below'} average (z {p['prior']:+.2f}) on "
                     f"{int(p['n_past'])} past task(s); most similar: {like}")
    if np.isfinite(row.get("result_on_target", np.nan)):
        parts.append(f"recorded on this dataset: {row['result_on_target']:.3g} (shown, not used to rank)")
    if "finetune_val_acc" in table and np.isfinite(row["finetune_val_acc"]):
        parts.append(f"fine-tuned briefly: val acc {row['finetune_val_acc']:.3f}")
    return "; ".join(parts)
