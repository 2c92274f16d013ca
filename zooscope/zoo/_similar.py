"""`Zoo.similar`: which zoo models are most like this one.

Model-level score from layer-level CKA (``by="cka"``, or any other model kind whose vectors are unit vectors
with inner product = similarity, e.g. ``gradsketch``):

* ``rule="layer"`` (default): CKA between the query's ``layer`` (default its penultimate layer) and each zoo
  model's penultimate layer (the last layer before the classifier, see `zooscope.zoo.parallel.penultimate_layer`).
* ``rule="best_match"``: the mean over the query's layers of the best CKA with any layer of the other model.

Only models embedded on the same probe set with the same kind parameters are comparable. FAISS proposes
``k * oversample`` candidates (from the JL-projected index); the exact score is then computed from the stored
vectors and the candidates re-ranked. ``by="task2vec"`` ranks models by d_sym between the task vectors of their
``trained_on`` datasets and the query's (score = 1 − d_sym; d_sym is exact over all datasets).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.zoo import _vectors
from zooscope.zoo.parallel import load_kinds, penultimate_layer

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

COLUMNS = ["rank", "model", "score", "arch", "trained_on", "layer", "rule"]


def _model_kinds() -> list[str]:
    from zooscope.embed._kinds import EMBEDDINGS

    load_kinds()
    return [k for k in EMBEDDINGS.available() if EMBEDDINGS.get(k).meta.subject == "model"]


def query_vectors(zoo: Zoo, model: str, by: str, *, arch: str | None, checkpoint: Any, kwargs: dict | None
                  ) -> tuple[np.ndarray, list[str], str, dict[str, Any], str | None]:
    """(stack (L, D), layers, penultimate, request, excluded zoo name) of a zoo model or a new spec."""
    if arch is None:
        zoo.catalog.get_model(model)  # unknown name: error with close names
        rows = _vectors.current_rows(zoo, by, model=model)
        if not rows:
            raise ZooscopeInputError(f"Model {model!r} has no {by!r} embedding yet; run zoo.embed(kinds=('{by}',)).")
        p = rows[0]["params"]
        return (np.asarray(_vectors.read_stack(zoo, rows[0]), dtype=np.float64), p["layers"], p["penultimate"],
                p["request"], model)
    if any(m["name"] == model for m in zoo.catalog.models()):
        raise ZooscopeInputError(f"{model!r} is already a zoo model; give the new spec another label, or omit "
                                 "arch/checkpoint to query the zoo model itself.")
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.zoo._embedrun import probe_set
    from zooscope.zoo.models import build_model
    from zooscope.zoo.parallel import _load_probe
    from zooscope.zoo.zoo import _find_input_shape

    ckpt = None if checkpoint is None else os.fspath(checkpoint)
    net = build_model(arch, kwargs, ckpt).eval()
    shape = _find_input_shape(net, zoo._shape_candidates(None, None, kwargs, net))
    probe = probe_set(zoo, shape)
    meta = EMBEDDINGS.get(by).meta
    params = {**meta.params, **((zoo.catalog.get_setting("kind_params", {}) or {}).get(by, {}))}
    out = EMBEDDINGS.get(by).fn(net, _load_probe(str(zoo.root / probe["file"])), layers=None, **params)
    layers = list(out)
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in out.values()])
    request = {"version": meta.version, "params": params, "probe_set": probe["id"]}
    return stack, layers, penultimate_layer(net, layers), request, None


def similar(zoo: Zoo, model: str, k: int = 10, by: str = "cka", *, arch: str | None = None,
            checkpoint: Any = None, kwargs: dict | None = None, layer: str = "penultimate", rule: str = "layer",
            oversample: int = 4, exact: bool = False) -> pd.DataFrame:
    """Rank the zoo models most similar to ``model`` (a zoo model, or a new ``arch`` + ``checkpoint``).

    Parameters
    ----------
    zoo : Zoo
    model : str
        A zoo model's name, or a label for the new spec given by ``arch``/``checkpoint``/``kwargs`` (embedded on
        the fly on the zoo's probe set and not added).
    k : int, default=10
    by : {"cka", "task2vec", "gradsketch"}, default="cka"
    layer : str, default="penultimate"
        The query's layer for ``rule="layer"``.
    rule : {"layer", "best_match"}, default="layer"
    oversample : int, default=4
        FAISS proposes ``k * oversample`` candidates before the exact re-rank.
    exact : bool, default=False
        Skip FAISS: score every comparable model exactly (the reference the index is tested against).

    Returns
    -------
    pandas.DataFrame
        Columns rank, model, score (larger = more similar; CKA in [0, 1] for ``cka``), arch, trained_on, layer,
        rule. The query never lists itself.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'k' of Zoo.similar must be an int >= 1; got {k!r}.")
    check_choice(by, ["task2vec", *_model_kinds()], "by", "Zoo.similar")
    check_choice(rule, ["layer", "best_match"], "rule", "Zoo.similar")
    recs = {m["name"]: m for m in zoo.catalog.models()}
    if not recs:
        raise ZooscopeInputError("The zoo has no models. Add some (zoo.add_model(name, arch, checkpoint)) and run "
                                 "zoo.embed() first.")
    if by == "task2vec":
        return _by_task(zoo, model, k, recs, arch)
    stack, layers, pen, request, exclude = query_vectors(zoo, model, by, arch=arch, checkpoint=checkpoint,
                                                         kwargs=kwargs)
    qname = pen if layer in (None, "penultimate") else layer
    if rule == "layer" and qname not in layers:
        from zooscope._validation import unknown_name_error

        raise unknown_name_error(f"layer of {model!r}", qname, ["penultimate", *layers])
    rows = [r for r in _vectors.current_rows(zoo, by) if r["model"] != exclude
            and r["params"]["request"].get("probe_set") == request["probe_set"]
            and r["params"]["request"].get("params") == request["params"]]
    if not rows:
        raise ZooscopeInputError(
            f"No other zoo model has a {by!r} embedding on probe set {request['probe_set']!r} with the same "
            f"parameters, so nothing is comparable to {model!r}. Add models of that input shape and run zoo.embed().")
    if not exact:
        rows = _candidates(zoo, by, rows, stack if rule == "best_match" else stack[layers.index(qname)][None],
                           rule, k * max(1, int(oversample)))
    scored = []
    for r in rows:
        if rule == "layer":
            s = float(_vectors.layer_vector(zoo, r) @ stack[layers.index(qname)])
        else:
            s = float((stack @ np.asarray(_vectors.read_stack(zoo, r), dtype=np.float64).T).max(axis=1).mean())
        scored.append((s, r["model"]))
    scored.sort(key=lambda t: (-t[0], t[1]))
    out = [{"rank": i + 1, "model": name, "score": s, "arch": recs[name]["spec"],
            "trained_on": recs[name]["trained_on"], "layer": qname if rule == "layer" else "all", "rule": rule}
           for i, (s, name) in enumerate(scored[:k])]
    return pd.DataFrame(out, columns=COLUMNS)


def _candidates(zoo: Zoo, kind: str, rows: list[dict], queries: np.ndarray, rule: str, m: int) -> list[dict]:
    """The comparable rows FAISS proposes for ``queries`` (all rows when the index is missing or small)."""
    policy = "layers" if rule == "best_match" else "penultimate"
    index = _vectors.load_index(zoo, kind, policy)
    if index is None:
        return rows
    q = _vectors.query_view(zoo, queries)
    if q.shape[1] != index.dim:
        return rows
    _, ids = index.search(q, min(max(m, 1), max(index.ntotal, 1)))
    ids = ids[ids >= 0]
    if policy == "layers":
        ids = ids // _vectors.LAYER_STRIDE
    wanted = set(ids.tolist())
    return [r for r in rows if r["id"] in wanted]


def _by_task(zoo: Zoo, model: str, k: int, recs: dict[str, dict], arch: str | None) -> pd.DataFrame:
    if arch is not None:
        raise ZooscopeInputError("by='task2vec' compares the tasks zoo models were trained on; a new spec has "
                                 "none recorded. Use by='cka' for a new checkpoint.")
    from zooscope.embed.task2vec import task_distance

    src = zoo.catalog.get_model(model)["trained_on"]
    if src is None:
        raise ZooscopeInputError(f"Model {model!r} has no trained_on dataset, so by='task2vec' cannot place it. "
                                 "Record it (add_model(..., trained_on=…, replace=True)) or use by='cka'.")
    vecs = {r["dataset"]: np.asarray(_vectors.read_stack(zoo, r), dtype=np.float64)
            for r in _vectors.current_rows(zoo, "task2vec")}
    if src not in vecs:
        raise ZooscopeInputError(f"Dataset {src!r} (what {model!r} was trained on) has no task2vec vector. Register "
                                 "it (zoo.add_dataset) and run zoo.embed(kinds=('task2vec',)).")
    scored = []
    for name, rec in recs.items():
        if name == model or rec["trained_on"] not in vecs:
            continue
        d = float(task_distance(vecs[src], vecs[rec["trained_on"]], kind="sym"))
        scored.append((1.0 - d, name))
    scored.sort(key=lambda t: (-t[0], t[1]))
    out = [{"rank": i + 1, "model": n, "score": s, "arch": recs[n]["spec"], "trained_on": recs[n]["trained_on"],
            "layer": None, "rule": "task_distance"} for i, (s, n) in enumerate(scored[:k])]
    return pd.DataFrame(out, columns=COLUMNS)
