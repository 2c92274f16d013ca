"""Two-stage model selection: which zoo model to fine-tune for a new labelled dataset.

Reads only (see `SelectContext`). What is not stored -- the target's task vector right after ``add_dataset``, the
trivial task's vector -- is computed in memory and kept only in the zoo's deletable cache; ``zoo.embed`` stores it.

Stage 1 (cheap, task vectors). The task2vec index of the target's probe network proposes the nearest source
datasets (FAISS, on the centred log-Fisher); their models are re-ranked exactly by the asymmetric distance
d_asym(source → target) = d_sym − α·d_sym(source, trivial) (Achille et al. 2019; α = 0.15; the trivial task is
the probe with an untrained head on the zoo's probe inputs) with `zooscope.index.rerank`. The ``pool`` nearest
sources' models are kept, plus every model whose training data is unknown (scored by transferability only).

Stage 2 (exact, features). Each candidate's penultimate features on the target (a stratified subset of at most
``max_examples``) are scored with LogME (You et al. 2021) and H-score (Bao et al. 2019); models with a classifier
head also get LEEP (Nguyen et al. 2020) and NCE (Tran et al. 2019) from their softmax outputs.

Combined score (documented rule): every method's column is rank-normalised over the candidates that have it
(best = 1, worst = 0, ties averaged; task distance: smaller is better) and the score is the mean of a candidate's
available normalised ranks. Missing methods (no head, unknown training data) are left out, not counted as zero.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.zoo.catalog import Catalog, params_hash
from zooscope.zoo.embedrun import EmbedContext, compute_missing
from zooscope.zoo.indices import IndexKey, IndexReader
from zooscope.zoo.integrity import model_problem, nonfinite_model, skipped_note
from zooscope.zoo.probes import ProbeContext, probe_inputs
from zooscope.zoo.vectors import VectorRepo, comparability_group

__all__ = ["METHODS", "SelectContext", "combine_ranks", "select"]

log = logging.getLogger(__name__)

METHODS = ("task2vec", "logme", "leep", "nce", "hscore")
# method -> (names tried in zooscope.measures.transfer, input: "features" or "probs" or "labels")
_SCORERS = {"logme": (("logme",), "features"), "hscore": (("h_score", "hscore"), "features"),
            "leep": (("leep",), "probs"), "nce": (("nce",), "labels")}
_COLUMN = {"task2vec": "task_distance"}


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
    from zooscope.measures import transfer

    for name in _SCORERS[method][0]:
        fn = getattr(transfer, name, None)
        if callable(fn):
            return fn
    raise ZooscopeInputError(f"Selection method {method!r} is not available in this install "
                             f"(zooscope.measures.transfer has no {_SCORERS[method][0][0]}). Drop it from methods=.")


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

    registered = {d["name"] for d in ctx.catalog.datasets()}
    sources = sorted({m["trained_on"] for m in models if m["trained_on"] in registered})
    if not sources:  # no candidate's training data is registered: no task vector to compute
        return {}, {m["name"] for m in models}
    tvec, trow = compute_missing(ctx.embedding, "task2vec", target)
    group = comparability_group(trow)
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
    net = req["probe_net"]
    params = {k: v for k, v in req["params"].items() if k not in ("progress",)}
    t2v = Task2Vec(build_model(net["arch"], net.get("kwargs"), net.get("checkpoint")), **params)
    # the raw Fisher: task_distance needs its absolute scale (index_vector is only for the FAISS index)
    vec = np.asarray(t2v.embed_trivial(x).hessian, dtype=np.float32)
    try:
        atomic_write(path, lambda f: np.save(f, vec, allow_pickle=False))
    except OSError as e:
        log.warning("could not cache %s (%s)", path, e)
    return vec


def _features(model: Any, x: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(penultimate features (n, p), softmax outputs (n, C) or None when the model has no classifier head)."""
    import torch

    from zooscope.embed.capture import capture, default_layers
    from zooscope.zoo.models import penultimate_layer

    model.eval()
    layers = default_layers(model)
    pen = penultimate_layer(model, layers)
    feats = capture(model, x, [pen])[pen].double().numpy()
    with torch.no_grad():
        out = model(x[:2])
    probs = None
    if out.ndim == 2 and out.shape[1] > 1 and pen != layers[-1]:
        with torch.no_grad():
            probs = torch.cat([torch.softmax(model(x[i:i + 256]).double(), 1) for i in range(0, len(x), 256)])
        probs = probs.numpy()
    return feats, probs


def select(ctx: SelectContext, dataset: str, k: int = 10, *, candidates: Sequence[str] | None = None,
           methods: Sequence[str] = METHODS, pool: int | None = None, alpha: float = 0.15,
           max_examples: int = 1000, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Rank the zoo models to transfer from for a registered labelled ``dataset``.

    Parameters
    ----------
    ctx : SelectContext
    dataset : str
        A registered dataset with at least two classes.
    k : int, default=10
    candidates : sequence of str, optional
        Restrict to these models (default: every model whose input shape fits the dataset).
    methods : sequence of str, default=("task2vec", "logme", "leep", "nce", "hscore")
    pool : int, optional
        Stage-1 survivors with known source tasks (default max(3k, 10)).
    alpha : float, default=0.15
        d_asym's complexity weight.
    max_examples : int, default=1000
        Target examples used for the transferability scores (stratified, seeded).
    seed : int, default=0
    progress : bool, default=False
        A progress bar on stderr over the candidates' feature passes and scores.

    Returns
    -------
    pandas.DataFrame
        rank, model, score (combined, in [0, 1], larger = better), task_distance, logme, leep, nce, hscore,
        arch, trained_on, why.
    """
    from zooscope.zoo.datasets import check_labelled, load_dataset, probe_subset
    from zooscope.zoo.models import build_model

    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'k' of Zoo.select must be an int >= 1; got {k!r}.")
    methods = [check_choice(m, METHODS, "methods", "Zoo.select") for m in methods]
    if not methods:
        raise ZooscopeInputError(f"Zoo.select needs at least one method among {', '.join(METHODS)}.")
    all_models = ctx.catalog.models()
    if not all_models:
        raise ZooscopeInputError("The zoo has no models. Add some (zoo.add_model) before selecting.")
    rec = ctx.catalog.get_dataset(dataset)
    scorers = {m: _scorer(m) for m in methods if m != "task2vec"}
    ds = check_labelled(load_dataset(rec["source"], split=rec["meta"].get("split", "train"),
                                     seed=int(rec["meta"].get("seed", 0))))
    models = all_models if candidates is None else [ctx.catalog.get_model(n) for n in candidates]
    skipped = [(m["name"], r) for m in models if (r := model_problem(m))]  # one bad model never blocks select
    models = [m for m in models if m["name"] not in dict(skipped)]
    fits = [m for m in models if m["input_shape"] and tuple(m["input_shape"]) == ds.input_shape]
    if not fits:
        shapes = sorted({tuple(m["input_shape"] or ()) for m in models})
        raise ZooscopeInputError(f"No candidate model takes inputs of shape {ds.input_shape} (dataset {dataset!r}); "
                                 f"the models take {shapes}. Resize the dataset (e.g. '?size=28') or add models.")
    dist: dict[str, float] = {}
    if "task2vec" in methods:
        pool = int(pool or max(3 * k, 10))
        dist, unknown = _task_distances(ctx, dataset, fits, alpha, pool)
        keep = sorted(dist, key=dist.get)[:pool]
        fits = [m for m in fits if m["name"] in keep or m["name"] in unknown]
    sub = probe_subset(ds, min(max_examples, len(ds)), seed=seed)
    y = sub.y.numpy()
    rows = []
    for m in _progress(fits, f"features and scores of {len(fits)} candidates", progress):
        row: dict[str, Any] = {"model": m["name"], "task_distance": dist.get(m["name"], np.nan)}
        net = build_model(m["spec"], m["kwargs"], m["checkpoint"])
        feats, probs = _features(net, sub.x)
        bad = nonfinite_model(net) or (None if np.isfinite(feats).all() else "non-finite features")
        if bad:
            skipped.append((m["name"], bad))
            continue
        for meth, fn in scorers.items():
            kind = _SCORERS[meth][1]
            if kind == "features":
                row[meth] = float(fn(feats, y))
            elif probs is None:
                row[meth] = np.nan
            else:
                row[meth] = float(fn(probs if kind == "probs" else probs.argmax(1), y))
        rows.append(row | {"arch": m["spec"], "trained_on": m["trained_on"]})
    if not rows:
        raise ZooscopeInputError(f"Every candidate model was skipped: {'; '.join(skipped_note(skipped))}.")
    cols = ["task_distance" if m == "task2vec" else m for m in methods]
    table = pd.DataFrame(rows)
    table["score"] = combine_ranks(table, cols, smaller_is_better=("task_distance",))
    registered = {d["name"] for d in ctx.catalog.datasets()}
    table["why"] = [_why(table, i, cols, registered) for i in range(len(table))]
    table = table.sort_values(["score", "model"], ascending=[False, True], na_position="last").head(k)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    order = ["rank", "model", "score", *[c for c in ("task_distance", *scorers) if c in table]]
    table = table[[*order, "arch", "trained_on", "why"]].reset_index(drop=True)
    table.attrs["skipped"] = sorted(set(skipped))
    return table


def _progress(items: list, description: str, on: bool) -> Any:
    """``items``, with a Rich progress bar on stderr when ``on``."""
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, disable=not on, console=Console(stderr=True), transient=True)


def _why(table: pd.DataFrame, i: int, cols: list[str], registered: set[str] = frozenset()) -> str:
    row = table.iloc[i]
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
    names = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "hscore": "H-score"}
    best = [names[c] for c in cols if c in names and not np.isnan(row[c]) and row[c] >= table[c].max(skipna=True)]
    if best:
        parts.append("best " + ", ".join(best))
    return "; ".join(parts)
