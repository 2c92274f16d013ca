"""FAISS indices whose ids are catalog ids: build, add, remove, search, save, checked load, exact re-rank.

An index is one faiss factory string (``"IDMap2,Flat"``, ``"IDMap2,HNSW32"``, ``"IDMap2,IVF256,Flat"``): to scale,
change the string, not code. ``IDMap2`` makes the ids the catalog's embedding ids.

Scores. ``metric="ip"`` returns inner products (cosine when ``normalized``: vectors and queries are
`faiss.normalize_L2`-ed), larger is nearer; ``metric="l2"`` returns *squared* Euclidean distances, smaller is
nearer. A missing hit (k larger than the index) has id -1 and score -inf (ip) or +inf (l2).

Files. `VectorIndex.save` writes a small zooscope container -- a magic line, a JSON header (dim, metric,
normalized, factory) and the faiss serialisation -- to a temp name, fsyncs it and renames it into place; it
returns the file's sha256. `VectorIndex.load` reads the file into memory, checks that sha256 and only then hands
the same bytes to faiss (``read_index`` on a crafted file can run code, so nothing unverified reaches it, and the
file cannot change between the check and the read).

Removal. Flat indices remove ids in place. HNSW cannot remove, and IVF under ``IDMap2`` would mis-map ids
after ``remove_ids``; for both, `VectorIndex.remove` rebuilds from the index's own exact vectors minus the
removed ids (an HNSW rebuild costs a full build). Variants with lossy storage (PQ/SQ) raise instead: rebuild
with `VectorIndex.build` from the vector store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, _to_numpy, check_choice
from zooscope.index.store import _fsync_dir

__all__ = ["FLAT_MAX", "VectorIndex", "choose_factory", "rerank"]

log = logging.getLogger(__name__)

FLAT_MAX = 50_000  # exact search stays < 1 ms/query (batched) below this on 2 cores (env_probe §4)
QUERY_BATCH = 4096
_MAGIC = b"ZOOSCOPE-FAISS\n"
_FORMAT = 1
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def choose_factory(n: int, dim: int, metric: str = "ip") -> str:
    """The factory string for ``n`` vectors of ``dim``: exact below `FLAT_MAX`, HNSW above.

    ``"IDMap2,Flat"`` (exact) below 50,000 vectors, where a batched exact search costs well under a millisecond a
    query on 2 cores; ``"IDMap2,HNSW32"`` above (graph search: sub-millisecond at a million vectors, build
    ~30 s per 100k × 512, recall well above 0.9 on clustered embeddings but poor on uniform random data).
    Candidates are re-ranked exactly afterwards (`rerank`), so approximate recall only needs to be high enough
    to keep the true neighbours among the candidates.
    """
    check_choice(metric, _METRICS, "metric", "choose_factory")
    if n < 0 or dim < 1:
        raise ZooscopeInputError(f"choose_factory needs n >= 0 and dim >= 1; got n={n}, dim={dim}.")
    return "IDMap2,Flat" if n < FLAT_MAX else "IDMap2,HNSW32"


def _as_vectors(x: npt.ArrayLike, dim: int | None, name: str) -> np.ndarray:
    """Our own float32 C-contiguous (n, dim) copy, checked before faiss (which only asserts)."""
    arr = _to_numpy(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
        raise ZooscopeInputError(f"{name} must be a numeric array; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ZooscopeInputError(f"{name} must have shape (n, dim); got {arr.shape}.")
    if dim is not None and arr.shape[1] != dim:
        raise ZooscopeInputError(
            f"{name} have dimension {arr.shape[1]} but the index holds {dim}-dimensional vectors. Use the "
            "same embedding kind and parameters as the index, or rebuild it."
        )
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise ZooscopeInputError(f"{name} contain NaN or Inf (first in row {row}); fix the embedding first.")
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def _as_ids(ids: npt.ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(_to_numpy(ids)).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ZooscopeInputError(f"ids must be integers (catalog embedding ids); got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.shape[0] != n:
        raise ZooscopeInputError(f"Got {n} vectors but {arr.shape[0]} ids; give one id per vector.")
    if (arr < 0).any():
        raise ZooscopeInputError("ids must be >= 0 (-1 means 'no hit' in search results).")
    if np.unique(arr).size != arr.size:
        raise ZooscopeInputError("ids must be unique; the same id appears twice.")
    return arr


def _sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class VectorIndex:
    """A FAISS index over embedding vectors, keyed by catalog ids (use `build` or `load`, not the constructor)."""

    def __init__(self, index: faiss.Index, *, metric: str, normalized: bool, factory: str) -> None:
        self.index = index
        self.metric = metric
        self.normalized = bool(normalized)
        self.factory = factory
        self.ef_search = 128  # HNSW breadth at query time (raised to k when k is larger)
        self.nprobe = 16  # IVF lists visited per query

    @property
    def ntotal(self) -> int:
        """Number of vectors in the index."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index.d)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return (f"VectorIndex(factory={self.factory!r}, metric={self.metric!r}, normalized={self.normalized}, "
                f"dim={self.dim}, ntotal={self.ntotal})")

    @classmethod
    def build(
        cls, vectors: npt.ArrayLike, ids: npt.ArrayLike, *, metric: Literal["ip", "l2"] = "ip",
        normalized: bool = True, factory: str | None = None,
    ) -> VectorIndex:
        """Build an index over ``vectors`` with catalog ``ids``.

        Parameters
        ----------
        vectors : array-like of shape (n, dim)
        ids : array-like of int of shape (n,)
            Unique, non-negative catalog ids; search returns these.
        metric : {"ip", "l2"}
            Inner product (larger is nearer) or squared L2 distance (smaller is nearer).
        normalized : bool
            L2-normalise vectors and queries, so inner product is cosine similarity.
        factory : str, optional
            A faiss factory string; ``"IDMap2,"`` is prepended when missing. None: `choose_factory`.

        Raises
        ------
        ZooscopeInputError
            Bad shapes, NaN, duplicate ids, an unknown factory, or too few vectors to train an IVF/PQ index.
        """
        check_choice(metric, _METRICS, "metric", "VectorIndex.build")
        vecs = _as_vectors(vectors, None, "vectors")
        n, dim = vecs.shape
        if dim < 1:
            raise ZooscopeInputError("vectors must have at least one dimension.")
        factory = choose_factory(n, dim, metric) if factory is None else str(factory)
        if not factory.startswith("IDMap"):
            factory = "IDMap2," + factory
        try:
            index = faiss.index_factory(dim, factory, _METRICS[metric])
        except RuntimeError as e:
            raise ZooscopeInputError(
                f"faiss cannot build factory {factory!r} ({str(e).splitlines()[-1]}). Examples of valid "
                "strings: 'IDMap2,Flat', 'IDMap2,HNSW32', 'IDMap2,IVF256,Flat'."
            ) from None
        self = cls(index, metric=metric, normalized=normalized, factory=factory)
        self._train_if_needed(vecs)
        self.add(vecs, ids)
        return self

    def _prepare(self, x: npt.ArrayLike, name: str) -> np.ndarray:
        arr = _as_vectors(x, self.dim, name)
        if self.normalized and arr.shape[0]:
            norms = np.linalg.norm(arr, axis=1)
            if (norms == 0).any():
                raise ZooscopeInputError(
                    f"{name} include an all-zero vector (row {int(np.argmax(norms == 0))}), which has no "
                    "direction to normalise; drop it or build the index with normalized=False."
                )
            faiss.normalize_L2(arr)
        return arr

    def _train_if_needed(self, vecs: np.ndarray) -> None:
        if self.index.is_trained:
            return
        ivf = faiss.try_extract_index_ivf(self.index)
        need = int(ivf.nlist) if ivf is not None else 1
        if vecs.shape[0] < need:
            raise ZooscopeInputError(
                f"{self.factory!r} must be trained on at least {need} vectors (faiss recommends 39 per list); "
                f"got {vecs.shape[0]}. Use 'IDMap2,Flat' for a small zoo, or fewer IVF lists."
            )
        train = self._prepare(vecs, "vectors")
        try:
            self.index.train(train)
        except RuntimeError as e:
            raise ZooscopeInputError(
                f"Training {self.factory!r} on {vecs.shape[0]} vectors failed ({str(e).splitlines()[-1]}). Use "
                "more vectors, or 'IDMap2,Flat'."
            ) from None

    def ids(self) -> np.ndarray:
        """The catalog ids in the index, in insertion order: shape (ntotal,)."""
        return faiss.vector_to_array(faiss.downcast_index(self.index).id_map).astype(np.int64)

    def add(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Add vectors of shape (n, dim) with their catalog ids of shape (n,); ids already present raise."""
        vecs = self._prepare(vectors, "vectors")
        id_arr = _as_ids(ids, vecs.shape[0])
        if not vecs.shape[0]:
            return
        clash = np.intersect1d(id_arr, self.ids())
        if clash.size:
            raise ZooscopeInputError(
                f"ids {clash[:10].tolist()} are already in the index; remove them first (remove(ids))."
            )
        if not self.index.is_trained:
            self._train_if_needed(vecs)
        self.index.add_with_ids(vecs, id_arr)

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ``ids`` (absent ids are ignored); returns how many were removed.

        Flat indices remove in place. Others are rebuilt from their own exact vectors minus ``ids``, keeping
        the trained quantizer: HNSW cannot remove at all, and under ``IDMap2`` an IVF's ``remove_ids`` leaves
        the id map pointing at the wrong vectors (IVF does not renumber, IDMap2 assumes it does).
        """
        raw = ids if hasattr(ids, "shape") else list(ids)
        id_arr = np.unique(np.asarray(_to_numpy(raw), dtype=np.int64).reshape(-1))
        present = np.intersect1d(id_arr, self.ids())
        if not present.size:
            return 0
        inner = faiss.downcast_index(faiss.downcast_index(self.index).index)
        if type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2):
            return int(self.index.remove_ids(present))
        if not isinstance(inner, faiss.IndexHNSWFlat | faiss.IndexIVFFlat):
            raise ZooscopeInputError(
                f"{self.factory!r} cannot remove vectors in place and stores them approximately. Rebuild it "
                "with VectorIndex.build from the vector store."
            )
        if isinstance(inner, faiss.IndexIVFFlat):
            inner.make_direct_map()  # lets reconstruct_n find each vector
        all_ids = self.ids()
        vecs = inner.reconstruct_n(0, self.ntotal)  # exact, and already normalised when normalized
        keep = ~np.isin(all_ids, present)
        rebuilt = faiss.clone_index(self.index)
        rebuilt.reset()  # empties the index and its id map; the IVF quantizer stays trained
        if isinstance(inner, faiss.IndexIVFFlat):
            faiss.extract_index_ivf(rebuilt).set_direct_map_type(faiss.DirectMap.NoMap)
        if keep.any():
            rebuilt.add_with_ids(np.ascontiguousarray(vecs[keep]), all_ids[keep])
        self.index = rebuilt
        log.info("rebuilt %s without %d ids", self.factory, present.size)
        return int(present.size)

    def _set_search_params(self, k: int) -> None:
        inner = faiss.downcast_index(faiss.downcast_index(self.index).index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = max(self.ef_search, k)
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            ivf.nprobe = min(self.nprobe, int(ivf.nlist))

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query.

        Parameters
        ----------
        queries : array-like of shape (n, dim) or (dim,)
        k : int
            Neighbours per query (>= 1).

        Returns
        -------
        scores : ndarray of shape (n, k), float32
            Inner products (larger is nearer) or squared L2 distances (smaller is nearer); -inf / +inf where the
            id is -1.
        ids : ndarray of shape (n, k), int64
            Catalog ids, best first; -1 where fewer than k vectors exist.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ZooscopeInputError(f"'k' of VectorIndex.search must be an int >= 1; got {k!r}.")
        q = self._prepare(queries, "queries")
        k = int(k)
        self._set_search_params(k)
        D = np.empty((q.shape[0], k), dtype=np.float32)
        I = np.full((q.shape[0], k), -1, dtype=np.int64)
        if self.ntotal:
            for s in range(0, q.shape[0], QUERY_BATCH):  # batched: one call per 4096 queries
                D[s:s + QUERY_BATCH], I[s:s + QUERY_BATCH] = self.index.search(q[s:s + QUERY_BATCH], k)
        D[I < 0] = -np.inf if self.metric == "ip" else np.inf
        return D, I

    # -- files ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> str:
        """Write the index atomically (temp file, fsync, `os.replace`); returns the file's sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"format": _FORMAT, "dim": self.dim, "metric": self.metric,
                             "normalized": self.normalized, "factory": self.factory,
                             "ntotal": self.ntotal}).encode()
        payload = faiss.serialize_index(self.index)
        h = hashlib.sha256()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                for part in (_MAGIC, len(header).to_bytes(8, "little"), header, payload.tobytes()):
                    f.write(part)
                    h.update(part)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return h.hexdigest()

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None, *, allow_unverified: bool = False) -> VectorIndex:
        """Read an index written by `save`, after checking its sha256.

        Parameters
        ----------
        path : path
        sha256 : str
            The checksum `save` returned (recorded in the catalog). The bytes are hashed in memory and only the
            verified bytes reach faiss.
        allow_unverified : bool, default=False
            Read without a checksum. Only for files you wrote yourself: faiss deserialisation of a crafted
            file can run code.

        Raises
        ------
        ZooscopeInputError
            Missing checksum, checksum mismatch, or not a zooscope index file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No index file at {path}. Rebuild the index (zooscope embed rebuilds it).")
        if sha256 is None and not allow_unverified:
            raise ZooscopeInputError(
                f"Refusing to read {path} without its sha256: faiss deserialisation of a crafted file can run "
                "code. Pass the checksum recorded in the catalog (Catalog.get_index)."
            )
        data = path.read_bytes()
        if sha256 is not None and _sha256_bytes(data) != str(sha256).lower():
            raise ZooscopeInputError(
                f"The index file {path} does not match its recorded sha256 (it was changed or truncated after "
                "it was saved); it was not read. Delete it and rebuild the index from the vector store."
            )
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
            raise ZooscopeInputError(f"{path} is not a zooscope index file (written by VectorIndex.save).")
        start = len(_MAGIC) + 8
        hlen = int.from_bytes(data[len(_MAGIC):start], "little")
        meta = json.loads(data[start:start + hlen])
        if meta.get("format") != _FORMAT:
            raise ZooscopeInputError(f"{path} has index format {meta.get('format')}; this zooscope reads {_FORMAT}.")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=start + hlen))
        return cls(index, metric=meta["metric"], normalized=meta["normalized"], factory=meta["factory"])


def rerank(
    query: npt.ArrayLike, candidate_ids: Iterable[int] | npt.ArrayLike,
    fetch: Callable[[list[int]], npt.ArrayLike], score: Callable[[np.ndarray, np.ndarray], npt.ArrayLike],
    *, k: int | None = None, larger_is_better: bool = True,
) -> list[tuple[int, float]]:
    """Re-score ANN candidates exactly and sort them.

    Parameters
    ----------
    query : array-like
        Whatever ``score`` takes as its first argument (e.g. a full-size vector of shape (dim,)).
    candidate_ids : iterable of int
        Ids from `VectorIndex.search`; -1 and repeats are dropped.
    fetch : callable
        ``fetch(ids) -> array of shape (m, ...)``: the exact vectors of ``ids`` in that order (e.g. from the
        vector store).
    score : callable
        ``score(query, candidates) -> array of shape (m,)``: the exact score of each candidate.
    k : int, optional
        Keep the best ``k``.
    larger_is_better : bool, default=True
        False for distances.

    Returns
    -------
    list of (int, float)
        (id, exact score), best first; ties by id.
    """
    seen: dict[int, None] = {}
    for i in np.asarray(_to_numpy(candidate_ids)).reshape(-1).tolist():
        if int(i) >= 0:
            seen.setdefault(int(i), None)
    ids: Sequence[int] = list(seen)
    if not ids:
        return []
    cands = np.asarray(_to_numpy(fetch(list(ids))))
    if cands.shape[0] != len(ids):
        raise ZooscopeInputError(f"fetch returned {cands.shape[0]} rows for {len(ids)} ids; return one per id.")
    scores = np.asarray(_to_numpy(score(np.asarray(_to_numpy(query)), cands)), dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(ids):
        raise ZooscopeInputError(f"score returned {scores.shape[0]} values for {len(ids)} candidates.")
    sign = -1.0 if larger_is_better else 1.0
    order = sorted(range(len(ids)), key=lambda j: (sign * scores[j], ids[j]))
    out = [(int(ids[j]), float(scores[j])) for j in order]
    return out if k is None else out[: int(k)]
