"""`Zoo.similar(..., by="fisher")`: models ranked by their stored (model, dataset) pair vectors. Reads only.

* ``dataset=None``: the query is the model's Fisher on the dataset it was trained on (``trained_on``); the
  candidates are the other models' Fisher on *their* training sets. Close = trained on data that shaped the
  same filters alike: "which checkpoints were trained on data like this one's?".
* ``dataset=D``: the query is the model's Fisher on D; the candidates are the other models' Fisher on D.

Score: the cosine of the stored Fisher vectors (larger = more similar; see `zooscope.embed.pairfisher`). Path: the
FAISS index of (kind, "all", the query's architecture group) proposes ``k * oversample`` rows, the cosine of the
stored float32 vectors re-ranks them exactly; when the candidates of the right datasets are too few among them,
every row of the group is scored. Only vectors of the query's architecture are ever compared: a zoo whose other
pair vectors are all of other architectures gets a one-line refusal naming them (across architectures, compare the
training sets: ``by="task2vec"``, Task2Vec of each training set through the zoo's probe network).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import EmbeddingRecord
from zooscope.zoo.indices import IndexKey
from zooscope.zoo.integrity import model_problem, screen_rows, skipped_note
from zooscope.zoo.pairs import arch_label
from zooscope.zoo.vectors import comparability_group

__all__ = ["CrossArchitectureError", "cosine", "pair_kinds", "similar_by_pair"]

COLUMNS = ["rank", "model", "score", "arch", "trained_on", "dataset", "layer", "rule"]


class CrossArchitectureError(ZooscopeInputError):
    """Pair vectors of different architectures were to be compared (they live in different parameter spaces)."""


def pair_kinds() -> list[str]:
    """Return the registered embedding kinds whose subject is a (model, dataset) pair."""
    from zooscope.embed._kinds import EMBEDDINGS

    return [k for k in EMBEDDINGS.available() if EMBEDDINGS.get(k).meta.subject == "pair"]


def refuse_cross_architecture(kind: str, query: EmbeddingRecord, others: list[EmbeddingRecord]) -> None:
    """Raise the one-line `CrossArchitectureError` naming the query's architecture and the others'."""
    archs = sorted({arch_label(r.request) for r in others} - {arch_label(query.request)})
    if not archs:  # same architecture, other kind parameters
        raise ZooscopeInputError(f"The other {kind} vectors of {arch_label(query.request)} were computed with other "
                                 f"parameters than {query.model!r}'s; re-embed them (zooscope embed --kinds {kind}).")
    raise CrossArchitectureError(
        f"Refused: {kind} vectors of different architectures are not comparable; {query.model!r} is "
        f"{arch_label(query.request)} and the other candidates are {', '.join(archs)}. Across architectures compare "
        "training sets with by='task2vec' (Task2Vec of each training set through the zoo's probe network).")


def cosine(q: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Cosine of one vector ``q`` (d,) with each row of ``cands`` (m, d)."""
    norms = np.linalg.norm(cands, axis=1) * np.linalg.norm(q)
    return cands @ q / np.where(norms > 0, norms, 1.0)


def _current(ctx: Any, row: EmbeddingRecord) -> bool:
    """Return the row was computed from the model's recorded checkpoint and the dataset's recorded contents."""
    try:
        m, d = ctx.catalog.get_model(row.model), ctx.catalog.get_dataset(row.dataset)
    except ValueError:
        return False
    req = row.request
    return req.get("checkpoint_sha256") == m.checkpoint_sha256 and req.get("dataset_sha256") == d.probe_sha256


def similar_by_pair(ctx: Any, model: str, k: int, kind: str = "fisher", *, dataset: str | None = None,
                    oversample: int = 4, exact: bool = False) -> pd.DataFrame:
    """Rank zoo models of ``model``'s architecture by their ``kind`` pair vectors (see the module docstring).

    ``ctx`` is a `zooscope.zoo.similar.SimilarContext`. Returns the columns of `Zoo.similar` plus ``dataset``
    (the dataset of each candidate's vector).
    """
    from zooscope.index import rerank

    rec = ctx.catalog.get_model(model)
    bad = model_problem(rec)
    if bad:
        raise ZooscopeInputError(f"Model {model!r}: {bad}; its stored vectors cannot be trusted.")
    qdata = dataset if dataset is not None else rec.trained_on
    if qdata is None:
        raise ZooscopeInputError(f"Model {model!r} has no trained_on dataset, so by={kind!r} has no default pair; "
                                 "pass dataset=… (--dataset) or record it (add_model(..., trained_on=…)).")
    ctx.catalog.get_dataset(qdata)  # unknown name: error with close names
    qrows = [r for r in ctx.vectors.current_rows(kind, model=model, dataset=qdata) if _current(ctx, r)]
    if not qrows:
        raise ZooscopeInputError(f"({model!r}, {qdata!r}) has no current {kind!r} vector; run `zooscope embed "
                                 f"--kinds {kind} --pairs {model}:{qdata}` (zoo.embed(kinds=('{kind}',), "
                                 f"pairs=['{model}:{qdata}'])).")
    qrow = qrows[-1]
    qvec = ctx.vectors.read64(qrow)
    group = comparability_group(qrow)
    models = {m.name: m for m in ctx.catalog.models() if m.name != model}

    def wanted(r: EmbeddingRecord) -> bool:  # the right dataset for the question asked
        m = models.get(r.model or "")
        return m is not None and r.dataset == (qdata if dataset is not None else m.trained_on)

    everything = [r for r in ctx.vectors.current_rows(kind) if wanted(r) and _current(ctx, r)]
    same = {r.id: r for r in everything if comparability_group(r) == group}
    if not same and everything:
        refuse_cross_architecture(kind, qrow, everything)
    if not exact and len(same) > k:
        ids = ctx.indices.search(IndexKey(kind, "all", group), qvec[None], k * max(1, int(oversample)) + 1)
        if ids is not None:
            proposed = {i: same[i] for i in ids.tolist() if i in same}
            if len(proposed) >= k:
                same = proposed
    rows, skipped = screen_rows(ctx.catalog, ctx.vectors, same)
    if not rows:
        why = f" ({'; '.join(skipped_note(skipped))})" if skipped else ""
        raise ZooscopeInputError(f"No other zoo model of {model!r}'s architecture has a {kind!r} vector "
                                 f"{'on ' + repr(qdata) if dataset is not None else 'on its training set'}{why}. "
                                 f"Embed more pairs (zooscope embed --kinds {kind} --pairs …).")
    ranked = rerank(qvec, sorted(rows), lambda ids: np.stack([ctx.vectors.read64(rows[i]) for i in ids]), cosine)
    ranked = sorted(ranked, key=lambda t: (-t[1], rows[t[0]].model))[:k]
    out = [{"rank": j + 1, "model": rows[i].model, "score": s, "arch": models[rows[i].model].spec,
            "trained_on": models[rows[i].model].trained_on, "dataset": rows[i].dataset, "layer": None,
            "rule": "pair_fisher_cosine"} for j, (i, s) in enumerate(ranked)]
    table = pd.DataFrame(out, columns=COLUMNS)
    table.attrs["skipped"] = skipped
    table.attrs["query"] = f"{model}:{qdata}"
    return table
