"""`Zoo.similar`: which zoo models are most like this one. Reads only (see `SimilarContext`).

Model-level score from layer-level CKA (``by="cka"``, or any other model kind whose vectors are unit vectors
with inner product = similarity, e.g. ``gradsketch``):

* ``rule="layer"`` (default): CKA between the query's ``layer`` (default its penultimate layer) and each zoo
  model's penultimate layer (the last layer before the classifier, see `zooscope.nets.models.penultimate_layer`).
* ``rule="best_match"``: the mean over the query's layers of the best CKA with any layer of the other model.

Path of a query: FAISS index of (kind, policy, comparability group) → ``k * oversample`` candidates → exact
re-rank from the stored vectors (`zooscope.index.rerank`). Only models embedded on the same probe set with the
same parameters are comparable, and that group is part of the index key, so k rows come back whenever k
comparable models exist. ``exact=True`` scores every comparable model (the reference the index is tested
against). ``by="task2vec"`` ranks models by 1 − d_sym between the task vectors of their ``trained_on`` datasets
and the query's: the task2vec index proposes the nearest datasets, d_sym re-ranks them exactly.

A new checkpoint (``arch=…``) is embedded in memory on the zoo's probe set (computed in memory, cached under
the zoo's cache folder, when the probe set is not materialised yet); nothing is added to the zoo.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope._io import file_sha256
from zooscope._validation import ZooscopeInputError, check_choice, unknown_name_error
from zooscope.zoo.catalog import Catalog, EmbeddingRecord, ModelRecord
from zooscope.zoo.indices import IndexKey, IndexReader
from zooscope.zoo.integrity import model_problem, screen_rows, skipped_note
from zooscope.zoo.pairsimilar import pair_kinds, similar_by_pair
from zooscope.zoo.probes import ProbeContext, find_input_shape, probe_inputs, shape_candidates, untrained_note
from zooscope.zoo.settings import ZooSettings
from zooscope.zoo.vectors import VectorRepo, comparability_group, request_group

__all__ = ["COLUMNS", "SimilarContext", "similar"]

COLUMNS = ["rank", "model", "score", "arch", "trained_on", "layer", "rule"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimilarContext:
    """What `similar` reads: catalog, stored vectors, indices, probe sets, settings."""

    catalog: Catalog
    vectors: VectorRepo
    indices: IndexReader
    probes: ProbeContext
    settings: ZooSettings


@dataclass(frozen=True)
class _Query:
    stack: np.ndarray  # (L, D) float64
    layers: list[str]
    penultimate: str
    group: str
    exclude: str | None


def _kinds() -> Any:
    from zooscope.embed._kinds import EMBEDDINGS

    return EMBEDDINGS


def _model_kinds() -> list[str]:
    reg = _kinds()
    return [k for k in reg.available() if reg.get(k).meta.subject == "model"]


def _query(ctx: SimilarContext, model: str, by: str, *, arch: str | None, checkpoint: Any,
           kwargs: dict | None) -> _Query:
    """Return the query's vectors: a zoo model's stored stack, or a new spec embedded in memory."""
    if arch is None:
        rec = ctx.catalog.get_model(model)  # unknown name: error with close names
        _refuse_if_changed(rec)
        rows = ctx.vectors.current_rows(by, model=model)
        if not rows:
            raise ZooscopeInputError(f"Model {model!r} has no {by!r} embedding yet; run zoo.embed(kinds=('{by}',)).")
        if not _current(rows[-1], rec):
            raise ZooscopeInputError(f"Model {model!r}: its {by!r} vector was computed from an earlier checkpoint; "
                                     "run `zooscope embed` (zoo.embed()) to re-embed it.")
        p = rows[-1].params
        return _Query(ctx.vectors.read64(rows[-1]), p["layers"], p["penultimate"], comparability_group(rows[-1]),
                      model)
    if ctx.catalog.has_model(model):
        raise ZooscopeInputError(f"{model!r} is already a zoo model; give the new spec another label, or omit "
                                 "arch/checkpoint to query the zoo model itself.")
    from zooscope.nets.models import build_model, penultimate_layer

    net = build_model(arch, kwargs, None if checkpoint is None else os.fspath(checkpoint)).eval()
    # first the shapes zoo models of the same spec were embedded on, then those with a probe set, then the rest:
    # in a zoo with several probe shapes the query lands where its peers are
    same = [tuple(m.input_shape) for m in ctx.catalog.models() if m.spec == arch and m.input_shape]
    probed = [tuple(r["input_shape"]) for r in ctx.settings.probe_sets.values() if r.get("input_shape")]
    cands = list(dict.fromkeys([*same, *probed, *shape_candidates(ctx.catalog.datasets(), None, None, kwargs, net)]))
    shape = find_input_shape(net, cands)
    probe, x = probe_inputs(ctx.probes, shape)
    entry = _kinds().get(by)
    params = ctx.settings.params_of(by, entry.meta.params)
    out = entry.fn(net, x, layers=None, **params)
    layers = list(out)
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in out.values()])
    group = request_group({"probe_set": probe["id"], "params": params})
    return _Query(stack, layers, penultimate_layer(net, layers), group, None)


def _refuse_if_changed(rec: ModelRecord) -> None:
    """Return a query about a model whose checkpoint is missing or changed since it was added.

    Its stored vectors describe other weights, so refuse, with the fix.
    """
    if not rec.checkpoint:
        return
    path = Path(rec.checkpoint)
    if not path.is_file():
        raise ZooscopeInputError(f"Model {rec.name!r}: its checkpoint {str(path)!r} is missing, so its stored "
                                 "vectors cannot be trusted. Restore the file, or remove the model "
                                 f"(zooscope remove model {rec.name}).")
    if rec.checkpoint_sha256 and file_sha256(path, memo=True) != rec.checkpoint_sha256:
        raise ZooscopeInputError(f"Model {rec.name!r}: its checkpoint {str(path)!r} changed since it was "
                                 "embedded (sha256 differs from the recorded one), so its stored vectors are stale. "
                                 "Run `zooscope check --fix` then `zooscope embed` (zoo.check(fix=True); zoo.embed()).")


def _current(row: EmbeddingRecord, rec: ModelRecord | None) -> bool:
    """Whether a model's vector row was computed from the checkpoint the catalog records now."""
    return rec is not None and row.request.get("checkpoint_sha256", rec.checkpoint_sha256) == rec.checkpoint_sha256


def similar(ctx: SimilarContext, model: str, k: int = 10, by: str = "cka", *, arch: str | None = None,
            checkpoint: Any = None, kwargs: dict | None = None, layer: str = "penultimate", rule: str = "layer",
            oversample: int = 4, exact: bool = False, dataset: str | None = None) -> pd.DataFrame:
    """Rank the zoo models most similar to ``model`` (a zoo model, or a new ``arch`` + ``checkpoint``).

    Parameters
    ----------
    ctx : SimilarContext
    model : str
        A zoo model's name, or a label for the new spec given by ``arch``/``checkpoint``/``kwargs`` (embedded on
        the fly on the zoo's probe set and not added).
    k : int, default=10
    by : {"cka", "task2vec", "gradsketch", "fisher"}, default="cka"
        ``"fisher"``: stored (model, dataset) pair vectors of the query's architecture only
        (`zooscope.zoo.pairsimilar`).
    layer : str, default="penultimate"
        The query's layer for ``rule="layer"``.
    rule : {"layer", "best_match"}, default="layer"
    oversample : int, default=4
        FAISS proposes ``k * oversample`` candidates before the exact re-rank.
    exact : bool, default=False
        Skip FAISS: score every comparable model exactly.
    dataset : str, optional
        Pair kinds only: compare the models' vectors on this dataset (default: each model's training set).

    Returns
    -------
    pandas.DataFrame
        Columns rank, model, score (larger = more similar; CKA in [0, 1] for ``cka``), arch, trained_on, layer,
        rule. The query never lists itself.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'k' of Zoo.similar must be an int >= 1; got {k!r}.")
    check_choice(by, ["task2vec", *_model_kinds(), *pair_kinds()], "by", "Zoo.similar")
    check_choice(rule, ["layer", "best_match"], "rule", "Zoo.similar")
    if not ctx.catalog.count_models():
        raise ZooscopeInputError("The zoo has no models. Add some (zoo.add_model(name, arch, checkpoint)) and run "
                                 "zoo.embed() first.")
    if by in pair_kinds():
        if arch is not None:
            raise ZooscopeInputError(f"by={by!r} compares stored (model, dataset) vectors of zoo models; a new "
                                     "spec has none. Use by='cka' for a new checkpoint.")
        return similar_by_pair(ctx, model, int(k), by, dataset=dataset, oversample=int(oversample), exact=exact)
    if dataset is not None:
        raise ZooscopeInputError(f"'dataset' of Zoo.similar applies to pair kinds ({', '.join(pair_kinds())}), "
                                 f"not by={by!r}.")
    if by == "task2vec":
        return _by_task(ctx, model, int(k), arch, int(oversample), exact)
    q = _query(ctx, model, by, arch=arch, checkpoint=checkpoint, kwargs=kwargs)
    qname = q.penultimate if layer in (None, "penultimate") else layer
    if rule == "layer" and qname not in q.layers:
        raise unknown_name_error(f"layer of {model!r}", qname, ["penultimate", *q.layers])
    queries = q.stack if rule == "best_match" else q.stack[q.layers.index(qname)][None]
    policy = "layers" if rule == "best_match" else "penultimate"
    ids = None
    if not exact:  # +1 (or + its layers) so that the query itself does not push out a neighbour
        ids = ctx.indices.search(IndexKey(by, policy, q.group), queries,
                                 int(k) * max(1, int(oversample)) + len(queries))
    if ids is None:  # exact, or no index recorded for this group
        rows = ctx.vectors.current_rows(by)
    else:
        rows = ctx.catalog.embeddings(kind=by, ids=ids.tolist())
    shas = {n: ctx.catalog.get_model(n) for n in {r.model for r in rows if r.model}}
    rows = {r.id: r for r in rows if r.model != q.exclude and comparability_group(r) == q.group
            and _current(r, shas.get(r.model))}  # vectors of an earlier checkpoint are skipped
    rows, skipped = screen_rows(ctx.catalog, ctx.vectors, rows)  # a bad model is skipped, never fatal
    if not rows and skipped:
        raise ZooscopeInputError(f"Every comparable zoo model was skipped: {'; '.join(skipped_note(skipped))}.")
    if not rows:
        raise ZooscopeInputError(
            f"No other zoo model has a {by!r} embedding comparable to {model!r} (same probe set and parameters). "
            "Add models of that input shape and run zoo.embed().")
    ranked = _rerank(ctx, rows, queries, rule, int(k))
    recs = {name: ctx.catalog.get_model(name) for name in {rows[i].model for i, _ in ranked}}
    out = [{"rank": i + 1, "model": rows[rid].model, "score": s, "arch": recs[rows[rid].model].spec,
            "trained_on": recs[rows[rid].model].trained_on, "layer": qname if rule == "layer" else "all",
            "rule": rule} for i, (rid, s) in enumerate(ranked)]
    table = pd.DataFrame(out, columns=COLUMNS)
    table.attrs["skipped"] = skipped
    return table


def _rerank(ctx: SimilarContext, rows: dict[int, EmbeddingRecord], queries: np.ndarray, rule: str,
            k: int) -> list[tuple[int, float]]:
    """Exact scores of the candidate rows, best first (`zooscope.index.rerank`)."""
    from zooscope.index import rerank

    if rule == "layer":
        def fetch(ids: list[int]) -> np.ndarray:
            return np.stack([ctx.vectors.layer_vector(rows[i]) for i in ids])

        def score(q: np.ndarray, cands: np.ndarray) -> np.ndarray:
            return cands @ q[0]
    else:
        def fetch(ids: list[int]) -> np.ndarray:  # stacks of different depths: NaN-padded (m, L_max, D)
            stacks = [ctx.vectors.read64(rows[i]) for i in ids]
            out = np.full((len(stacks), max(s.shape[0] for s in stacks), stacks[0].shape[1]), np.nan)
            for j, s in enumerate(stacks):
                out[j, :s.shape[0]] = s
            return out

        def score(q: np.ndarray, cands: np.ndarray) -> np.ndarray:
            sims = np.einsum("qd,mld->mql", q, np.nan_to_num(cands, nan=0.0))
            sims[np.broadcast_to(np.isnan(cands[:, None, :, 0]), sims.shape)] = -np.inf
            return sims.max(axis=2).mean(axis=1)

    return rerank(queries, sorted(rows), fetch, score, k=k)


def _by_task(ctx: SimilarContext, model: str, k: int, arch: str | None, oversample: int,
             exact: bool) -> pd.DataFrame:
    if arch is not None:
        raise ZooscopeInputError("by='task2vec' compares the tasks zoo models were trained on; a new spec has "
                                 "none recorded. Use by='cka' for a new checkpoint.")
    from zooscope.embed.task2vec import task_distance
    from zooscope.index import rerank

    src = ctx.catalog.get_model(model).trained_on
    if src is None:
        raise ZooscopeInputError(f"Model {model!r} has no trained_on dataset, so by='task2vec' cannot place it. "
                                 "Record it (add_model(..., trained_on=…, replace=True)) or use by='cka'.")
    src_rows = ctx.vectors.current_rows("task2vec", dataset=src)
    if not src_rows:
        raise ZooscopeInputError(f"Dataset {src!r} (what {model!r} was trained on) has no task2vec vector. Register "
                                 "it (zoo.add_dataset) and run zoo.embed(kinds=('task2vec',)).")
    qrow = src_rows[-1]
    if note := untrained_note([qrow.request.get("probe_net")]):
        log.warning("%s", note)
    qvec = ctx.vectors.read64(qrow)
    group = comparability_group(qrow)
    models = [m for m in ctx.catalog.models() if m.name != model and m.trained_on]
    skipped = [(m.name, r) for m in models if (r := model_problem(m))]
    models = [m for m in models if m.name not in dict(skipped)]
    ids = None
    if not exact:
        ids = ctx.indices.search(IndexKey("task2vec", "all", group), qvec[None], k * max(1, oversample) + 1)
    rows = ctx.vectors.current_rows("task2vec") if ids is None else ctx.catalog.embeddings(kind="task2vec",
                                                                                           ids=ids.tolist())
    by_data = {r.dataset: r for r in rows if comparability_group(r) == group}
    cands = {i: m for i, m in enumerate(models) if m.trained_on in by_data}
    ranked = rerank(qvec, sorted(cands),
                    lambda ids: np.stack([ctx.vectors.read64(by_data[cands[i].trained_on]) for i in ids]),
                    lambda q, C: np.array([1.0 - float(task_distance(q, c, kind="sym")) for c in C]))
    ranked = sorted(ranked, key=lambda t: (-t[1], cands[t[0]].name))[:k]
    out = [{"rank": j + 1, "model": cands[i].name, "score": s, "arch": cands[i].spec,
            "trained_on": cands[i].trained_on, "layer": None, "rule": "task_distance"}
           for j, (i, s) in enumerate(ranked)]
    table = pd.DataFrame(out, columns=COLUMNS)
    table.attrs["skipped"] = skipped
    return table
