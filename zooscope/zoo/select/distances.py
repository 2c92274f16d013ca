"""Task distances.

D_asym(source → target) through the zoo's probe network (``task2vec``, and stage 1 of large zoos) and d_sym
between each candidate's own Fisher on its source and on the target (``fisher``); the trivial task's vector
and the per-(model, dataset) Fishers are cached under the zoo's ``cache/``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from zooscope._io import cached_array
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import params_hash
from zooscope.zoo.embedrun import compute_missing
from zooscope.zoo.indices import IndexKey
from zooscope.zoo.pairs import stored_pair_vector
from zooscope.zoo.probes import loadable_net, probe_inputs, untrained_note
from zooscope.zoo.select.context import FISHER_EXAMPLES, SelectContext
from zooscope.zoo.select.scores import load_labelled
from zooscope.zoo.vectors import comparability_group, request_group

__all__ = ["fisher_distances", "pair_fisher", "task_distances"]

log = logging.getLogger(__name__)


def task_distances(ctx: SelectContext, target: str, models: list[dict], alpha: float,
                   pool: int) -> tuple[dict[str, float], set[str]]:
    """(d_asym(source → target) of the models whose source task the index proposes (exact re-rank).

    Names of the models whose source task is unknown: not registered, or its task vector cannot be computed).
    """
    from zooscope.embed.task2vec import task_distance
    from zooscope.index import rerank

    tvec, treq = compute_missing(ctx.embedding, "task2vec", target)
    if note := untrained_note([treq.get("probe_net")]):
        log.warning("%s", note)
    group = request_group(treq)
    registered = {d.name for d in ctx.catalog.datasets()}
    sources = sorted({m.trained_on for m in models if m.trained_on in registered})
    ids = ctx.indices.search(IndexKey("task2vec", "all", group), tvec[None], 2 * pool + 1)
    rows = ctx.vectors.current_rows("task2vec") if ids is None else ctx.catalog.embeddings(kind="task2vec",
                                                                                          ids=ids.tolist())
    near = {r.dataset for r in rows if comparability_group(r) == group}
    stored = {r.dataset for r in ctx.vectors.current_rows("task2vec") if comparability_group(r) == group}
    vecs: dict[str, np.ndarray] = {}
    failed: set[str] = set()
    for name in sources:
        if name in near or name not in stored:  # not stored yet: computed in memory (cached), always a candidate
            try:
                vecs[name] = compute_missing(ctx.embedding, "task2vec", name)[0]
            except ZooscopeInputError as e:
                log.warning("no task vector for source %r: %s", name, e)
                failed.add(name)
    trivial = _trivial(ctx, target, treq)
    cands = {i: m for i, m in enumerate(models) if m.trained_on in vecs}
    ranked = rerank(tvec, sorted(cands), lambda ids: np.stack([vecs[cands[i].trained_on] for i in ids]),
                    lambda t, C: np.array([task_distance(c, t, kind="asym", alpha=alpha, trivial=trivial)
                                           for c in C]), larger_is_better=False)
    unknown = {m.name for m in models if m.trained_on not in registered or m.trained_on in failed}
    return {cands[i].name: float(d) for i, d in ranked}, unknown


def _trivial(ctx: SelectContext, target: str, req: dict[str, Any]) -> np.ndarray:
    """Return the trivial task's vector for the target's probe network (kept in ``<cache>/task2vec_trivial``)."""
    shape = tuple(ctx.catalog.get_dataset(target).input_shape)
    probe, x = probe_inputs(ctx.probes, shape)
    path = ctx.probes.paths.cache / "task2vec_trivial" / f"fisher-{params_hash({**req, 'probe': probe['id']})[:24]}.npy"

    def compute() -> np.ndarray:
        from zooscope.embed.task2vec import Task2Vec
        from zooscope.nets.models import ModelSpec

        net = loadable_net(ctx.probes, req["probe_net"])
        params = {k: v for k, v in req["params"].items() if k not in ("progress",)}
        t2v = Task2Vec(ModelSpec.from_dict(net).build(pretrained=bool(net.get("pretrained"))), **params)
        # the raw Fisher: task_distance needs its absolute scale (index_vector is only for the FAISS index)
        return np.asarray(t2v.embed_trivial(x).hessian, dtype=np.float32)

    return cached_array(path, compute)


def pair_fisher(ctx: SelectContext, m: dict[str, Any], rec: dict[str, Any], seed: int) -> np.ndarray:
    """Return the per-filter diagonal Fisher of zoo model ``m`` itself on dataset ``rec`` (MODEL2VEC's F_i).

    Task2Vec with the model as the probe (its head refitted on the dataset, the task2vec per-sample
    estimator), on a stratified subset of `FISHER_EXAMPLES`: the stored ``fisher`` pair vector when
    `Zoo.embed` computed it with these parameters (`zooscope.zoo.pairs.stored_pair_vector`), else computed by
    the same function and cached in ``cache/select_fisher`` per (model, dataset).
    """
    from zooscope.embed.pairfisher import PAIR_DEFAULTS

    params = {**PAIR_DEFAULTS, "max_samples": FISHER_EXAMPLES, "n_samples": FISHER_EXAMPLES, "seed": seed}
    stored = stored_pair_vector(ctx.vectors, "fisher", m, rec, params)
    if stored is not None:
        return stored
    h = params_hash({**params, "model": m.name, "spec": m.spec, "kwargs": m.kwargs,
                     "checkpoint": m.checkpoint, "sha": m.checkpoint_sha256, "dataset": rec.name,
                     "source": rec.source, "meta": rec.meta, "kind": "fisher"})

    def compute() -> np.ndarray:  # what the ``fisher`` kind computes (`zooscope.embed.pairfisher`)
        from zooscope.embed.pairfisher import pair_fisher_vector
        from zooscope.nets.models import ModelSpec

        ds = load_labelled(rec)
        return pair_fisher_vector(ModelSpec.from_row(m).build(), ds.x, ds.y, **params)

    return cached_array(ctx.probes.paths.cache / "select_fisher" / f"{h[:32]}.npy", compute)


def fisher_distances(ctx: SelectContext, rec: dict[str, Any], models: list[dict[str, Any]],
                     seed: int) -> dict[str, float]:
    """d_sym(F_m(source), F_m(target)) per model whose training dataset is registered (NaN otherwise)."""
    from zooscope.embed.task2vec import task_distance

    registered = {d.name: d for d in ctx.catalog.datasets()}
    out = {}
    for m in models:
        src = registered.get(m.trained_on or "")
        if src is None:
            out[m.name] = np.nan
            continue
        out[m.name] = float(task_distance(pair_fisher(ctx, m, src, seed), pair_fisher(ctx, m, rec, seed),
                                             kind="sym"))
    return out
