"""Stored vectors of a zoo: which rows are current, reading stacks, JL projections and the FAISS indices.

Layout of a stored embedding (one catalog row per (kind, model) or (kind, dataset), written in one transaction
after its vector file): model kinds store a stack of shape (n_layers, dim) with ``params["layers"]`` naming the
rows and ``params["penultimate"]`` the default layer; dataset kinds store one vector of shape (dim,).

Index ids. Policy ``"penultimate"`` (model kinds) and ``"all"`` (dataset kinds) use the catalog row id.
Policy ``"layers"`` holds every layer of every model under id ``row_id * LAYER_STRIDE + layer_index``.
Vectors longer than ``JL_MAX_DIM`` (CKA signatures: n² entries) enter the index as their seeded JL projection
(`zooscope.embed.signature.jl_project`), cached under ``<zoo>/cache/jl/``; the zoo re-ranks candidates exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zooscope.embed.signature import jl_project

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

log = logging.getLogger(__name__)

LAYER_STRIDE = 4096  # ids of the "layers" index: row_id * LAYER_STRIDE + layer index
JL_MAX_DIM = 1024  # longer vectors are indexed through a JL projection
MODEL_POLICIES = ("penultimate", "layers")
DATASET_POLICIES = ("all",)


def current_rows(zoo: Zoo, kind: str, *, model: str | None = None, dataset: str | None = None) -> list[dict]:
    """The complete embedding rows of ``kind`` (one per subject: the newest when several exist)."""
    rows = zoo.catalog.embeddings(kind=kind, model=model, dataset=dataset)
    best: dict[tuple[str | None, str | None], dict] = {}
    for r in rows:
        best[(r["model"], r["dataset"])] = r  # rows come in id order: the newest wins
    return list(best.values())


def read_stack(zoo: Zoo, row: dict[str, Any]) -> np.ndarray:
    """The stored array of a row, memory-mapped (read-only): (n_layers, dim) or (dim,)."""
    return np.load(zoo.store.path(row["vector_key"]), mmap_mode="r", allow_pickle=False)


def layer_vector(zoo: Zoo, row: dict[str, Any], layer: str | None = None) -> np.ndarray:
    """One layer's stored vector (default: the penultimate layer) as float64."""
    arr = read_stack(zoo, row)
    if arr.ndim == 1:
        return np.asarray(arr, dtype=np.float64)
    layers = row["params"]["layers"]
    name = row["params"]["penultimate"] if layer in (None, "penultimate") else layer
    if name not in layers:
        from zooscope._validation import unknown_name_error

        raise unknown_name_error(f"layer of model {row['model']!r}", str(name), layers)
    return np.asarray(arr[layers.index(name)], dtype=np.float64)


def index_view(zoo: Zoo, row: dict[str, Any]) -> np.ndarray:
    """The vectors of ``row`` as they enter the index: (n_layers, d) or (1, d), JL-projected when long."""
    arr = np.atleast_2d(read_stack(zoo, row))
    if arr.shape[1] <= JL_MAX_DIM:
        return np.asarray(arr, dtype=np.float32)
    dim, seed = zoo.jl_settings()
    cache = zoo.root / "cache" / "jl" / f"{row['vector_key']}_{dim}_{seed}.npy"
    if cache.is_file():
        try:
            return np.load(cache, allow_pickle=False)
        except (OSError, ValueError):
            log.warning("unreadable JL cache %s: recomputing", cache)
    proj = jl_project(arr, dim, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".tmp-{os.getpid()}-{cache.name}")
    np.save(tmp, proj, allow_pickle=False)
    os.replace(tmp, cache)
    return proj


def query_view(zoo: Zoo, vectors: np.ndarray) -> np.ndarray:
    """Query vectors (m, D) in the index's space (JL-projected like `index_view`)."""
    vectors = np.atleast_2d(vectors)
    if vectors.shape[1] <= JL_MAX_DIM:
        return np.asarray(vectors, dtype=np.float32)
    dim, seed = zoo.jl_settings()
    return jl_project(vectors, dim, seed=seed)


def policies(subject: str) -> tuple[str, ...]:
    """Index policies of a kind by its subject."""
    return MODEL_POLICIES if subject == "model" else DATASET_POLICIES


def index_path(zoo: Zoo, kind: str, policy: str) -> Path:
    """``<zoo>/indices/<kind>__<policy>.faiss``."""
    return zoo.root / "indices" / f"{kind}__{policy}.faiss"


def expected_index(zoo: Zoo, kind: str, policy: str, rows: list[dict] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, ids) the index of (kind, policy) should hold, from the current rows."""
    rows = current_rows(zoo, kind) if rows is None else rows
    vecs: list[np.ndarray] = []
    ids: list[int] = []
    for r in rows:
        view = index_view(zoo, r)
        if policy == "layers":
            vecs.append(view)
            ids.extend(r["id"] * LAYER_STRIDE + i for i in range(view.shape[0]))
        elif policy == "penultimate":
            idx = r["params"]["layers"].index(r["params"]["penultimate"])
            vecs.append(view[idx:idx + 1])
            ids.append(r["id"])
        else:
            vecs.append(view[:1])
            ids.append(r["id"])
    if not vecs:
        return np.zeros((0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64)
    dims = {v.shape[1] for v in vecs}
    if len(dims) > 1:  # e.g. gradsketch with different sketch sizes: keep the commonest
        common = max(dims, key=lambda d: sum(v.shape[0] for v in vecs if v.shape[1] == d))
        log.warning("index %s__%s: vectors of dims %s; indexing dim %d only", kind, policy, sorted(dims), common)
        keep = [i for i, v in enumerate(vecs) if v.shape[1] == common]
        flat_ids = _split_ids(ids, vecs)
        vecs = [vecs[i] for i in keep]
        ids = [j for i in keep for j in flat_ids[i]]
    return np.concatenate(vecs).astype(np.float32), np.asarray(ids, dtype=np.int64)


def _split_ids(ids: list[int], vecs: list[np.ndarray]) -> list[list[int]]:
    out, pos = [], 0
    for v in vecs:
        out.append(ids[pos:pos + v.shape[0]])
        pos += v.shape[0]
    return out


def rebuild_indices(zoo: Zoo, kinds: list[str]) -> None:
    """Rebuild and record the FAISS index of every (kind, policy); an empty kind drops its index."""
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.index.faiss_index import VectorIndex

    for kind in kinds:
        meta = EMBEDDINGS.get(kind).meta
        rows = current_rows(zoo, kind)
        for policy in policies(meta.subject):
            path = index_path(zoo, kind, policy)
            vecs, ids = expected_index(zoo, kind, policy, rows)
            if not len(ids):
                zoo.catalog.remove_index(kind, policy)
                path.unlink(missing_ok=True)
                continue
            factory = None if meta.index_factory == "IDMap2,Flat" else meta.index_factory
            index = VectorIndex.build(vecs, ids, metric=meta.metric, normalized=meta.normalized, factory=factory)
            sha = index.save(path)
            zoo.catalog.record_index(kind=kind, policy=policy, path=str(path.relative_to(zoo.root)), sha256=sha,
                                     n=index.ntotal, factory=index.factory)


def load_index(zoo: Zoo, kind: str, policy: str) -> Any:
    """The recorded index of (kind, policy), sha256-checked; None when there is none."""
    from zooscope.index.faiss_index import VectorIndex

    rec = zoo.catalog.get_index(kind, policy)
    if rec is None:
        return None
    return VectorIndex.load(zoo.root / rec["path"], sha256=rec["sha256"])
