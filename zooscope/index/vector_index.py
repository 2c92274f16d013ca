"""`VectorIndex`: a FAISS index whose ids are catalog ids -- build, add, remove, search, save, checked load.

Scores. ``metric="ip"`` returns inner products (cosine when ``normalized``: vectors and queries are
`faiss.normalize_L2`-ed), larger is nearer; ``metric="l2"`` returns *squared* Euclidean distances, smaller is
nearer. A missing hit (k larger than the index) has id -1 and score -inf (ip) or +inf (l2).

Which factory string for which size: `zooscope.index.factory`; the checked file: `zooscope.index.file_format`.

Removal. Flat indices remove ids in place. HNSW cannot remove, and IVF under ``IDMap2`` would mis-map ids
after ``remove_ids``; for both, `VectorIndex.remove` rebuilds from the index's own exact vectors minus the
removed ids (an HNSW rebuild costs a full build). Variants with lossy storage (PQ/SQ) raise instead: rebuild
with `VectorIndex.build` from the vector store.
"""

from __future__ import annotations

import logging
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, _to_numpy, check_choice
from zooscope.index.factory import ADD_CHUNK, METRICS, choose_factory, estimate_memory, is_lossy, ram_budget
from zooscope.index.file_format import index_files, read_index, write_index

__all__ = ["VectorIndex"]

log = logging.getLogger(__name__)

QUERY_BATCH = 4096
LARGE_BUILD = 200_000  # builds from this size on announce their memory estimate
OVERSAMPLE = 10  # exact re-rank of k × this candidates (IVF-SQ8 alone: recall@10 0.96-0.98 at 1M)
NPROBE = 8  # 1M bench: recall@10 0.999-1.0 at nprobe 8 (0.9935-0.9954 at 4); raise it for harder data
RERANK_BLOCK = 32  # queries re-ranked together: 32 × 100 candidates × 256 dims = 3 MB, stays in cache


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



class VectorIndex:
    """A FAISS index over embedding vectors, keyed by catalog ids (use `build` or `load`, not the constructor).

    When ``exact`` is set (the default for lossy factories such as ``IVF…,SQ8``), the index also keeps the exact
    float32 vectors, row ``i`` being the ``i``-th id in insertion order, in RAM or memory-mapped from a file: a
    search asks faiss for ``k × oversample`` candidates and re-ranks them exactly, and `remove` rebuilds from
    them. `save` writes them beside the index file (``<name>.exact.npy``, its sha256 recorded in the checked
    header); `load` memory-maps them when they would not fit the RAM budget.
    """

    def __init__(self, index: faiss.Index, *, metric: str, normalized: bool, factory: str,
                 exact: np.ndarray | None = None) -> None:
        self.index = index
        self.metric = metric
        self.normalized = bool(normalized)
        self.factory = factory
        self.exact = exact
        self.ef_search = 128  # HNSW breadth at query time (raised to k when k is larger)
        self.nprobe = NPROBE  # IVF lists visited per query
        self.oversample = OVERSAMPLE  # candidates per wanted neighbour when re-ranking from `exact`
        self._idmap: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        """Number of vectors in the index."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index.d)

    @property
    def memory_mapped(self) -> bool:
        """Whether the exact vectors are read from a memory-mapped file rather than held in RAM."""
        return isinstance(self.exact, np.memmap)

    def __len__(self) -> int:
        """Return the number of stored vectors."""
        return self.ntotal

    def __repr__(self) -> str:
        """Return the factory, metric and exact-vector mode."""
        extra = "" if self.exact is None else f", exact={'mmap' if self.memory_mapped else 'ram'}"
        return (f"VectorIndex(factory={self.factory!r}, metric={self.metric!r}, normalized={self.normalized}, "
                f"dim={self.dim}, ntotal={self.ntotal}{extra})")

    @classmethod
    def build(
        cls, vectors: npt.ArrayLike, ids: npt.ArrayLike, *, metric: Literal["ip", "l2"] = "ip",
        normalized: bool = True, factory: str | None = None, exact: bool | None = None,
        memory_budget: int | None = None, mmap_dir: str | Path | None = None,
    ) -> VectorIndex:
        """Build an index over ``vectors`` with catalog ``ids``.

        Parameters
        ----------
        vectors : array-like of shape (n, dim)
            Also a `numpy.memmap` (e.g. ``np.load(path, mmap_mode="r")``): it is read in chunks of `ADD_CHUNK`
            rows, never copied whole.
        ids : array-like of int of shape (n,)
            Unique, non-negative catalog ids; search returns these.
        metric : {"ip", "l2"}
            Inner product (larger is nearer) or squared L2 distance (smaller is nearer).
        normalized : bool
            L2-normalise vectors and queries, so inner product is cosine similarity.
        factory : str, optional
            A faiss factory string; ``"IDMap2,"`` is prepended when missing. None: `choose_factory`.
        exact : bool, optional
            Keep the exact vectors to re-rank candidates (default: when the factory is lossy, SQ/PQ).
        memory_budget : int, optional
            Bytes of RAM the index may take (default `ram_budget`: ``ZOOSCOPE_INDEX_RAM_BUDGET`` or half the
            available memory). The estimate (`estimate_memory`) is logged before a large build; when it exceeds
            the budget the exact vectors are written to a memory-mapped file instead of RAM.
        mmap_dir : path, optional
            Folder for that file (default: a temporary folder, removed with the index).

        Raises
        ------
        ZooscopeInputError
            Bad shapes, NaN, duplicate ids, an unknown factory, or too few vectors to train an IVF/PQ index.
        """
        check_choice(metric, METRICS, "metric", "VectorIndex.build")
        arr = _to_numpy(vectors)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.ndim != 2:
            _as_vectors(arr, None, "vectors")  # raises the precise message
        n, dim = arr.shape
        if dim < 1:
            raise ZooscopeInputError("vectors must have at least one dimension.")
        id_arr = _as_ids(ids, n)
        factory = choose_factory(n, dim, metric) if factory is None else str(factory)
        if not factory.startswith("IDMap"):
            factory = "IDMap2," + factory
        try:
            index = faiss.index_factory(dim, factory, METRICS[metric])
        except RuntimeError as e:
            raise ZooscopeInputError(
                f"faiss cannot build factory {factory!r} ({str(e).splitlines()[-1]}). Examples of valid "
                "strings: 'IDMap2,Flat', 'IDMap2,HNSW32', 'IDMap2,IVF256,Flat', 'IDMap2,IVF1024,SQ8'."
            ) from None
        exact = is_lossy(factory) if exact is None else bool(exact)
        budget = ram_budget() if memory_budget is None else int(memory_budget)
        need = estimate_memory(n, dim, factory, exact=exact)
        to_disk = exact and need > budget
        if n >= LARGE_BUILD or need > budget:
            log.warning("building %s over %s x %d vectors: ~%.2f GB of RAM%s (budget %.2f GB)%s", factory,
                        f"{n:,}", dim, need / 2**30, " incl. exact vectors" if exact else "", budget / 2**30,
                        "; exact vectors memory-mapped from disk instead" if to_disk else "")
        store = None
        if exact:
            if to_disk:
                folder = Path(tempfile.mkdtemp(prefix="zooscope-index-", dir=mmap_dir))
                fname = folder / "exact.npy"
                store = np.lib.format.open_memmap(fname, mode="w+", dtype=np.float32, shape=(n, dim))
                weakref.finalize(store, _remove_tree, folder)
            else:
                store = np.empty((n, dim), dtype=np.float32)
        self = cls(index, metric=metric, normalized=normalized, factory=factory)
        if not index.is_trained:
            self._train_if_needed(self._training_sample(arr))
        for s in range(0, n, ADD_CHUNK):
            chunk = self._prepare(arr[s:s + ADD_CHUNK], "vectors", first_row=s)
            if store is not None:
                store[s:s + len(chunk)] = chunk
            index.add_with_ids(chunk, id_arr[s:s + ADD_CHUNK])
        if isinstance(store, np.memmap):
            store.flush()
        self.exact = store
        return self

    def _training_sample(self, arr: np.ndarray) -> np.ndarray:
        """Rows to train on.

        All of a small set, else a sorted random sample of 64 per IVF list (≥ 100k for codecs without lists),
        which is what faiss would subsample to anyway.
        """
        ivf = faiss.try_extract_index_ivf(self.index)
        m = 64 * int(ivf.nlist) if ivf is not None else 100_000
        m = max(m, 10_000)
        if arr.shape[0] <= m:
            return arr
        rows = np.sort(np.random.default_rng(0).choice(arr.shape[0], size=m, replace=False))
        return arr[rows]

    def _prepare(self, x: npt.ArrayLike, name: str, first_row: int = 0) -> np.ndarray:
        try:
            arr = _as_vectors(x, self.dim, name)
        except ZooscopeInputError as e:
            if first_row and "first in row" in str(e):
                row = int(str(e).split("first in row ")[1].split(")")[0]) + first_row
                raise ZooscopeInputError(f"{name} contain NaN or Inf (first in row {row}); fix the embedding "
                                         "first.") from None
            raise
        if self.normalized and arr.shape[0]:
            norms = np.linalg.norm(arr, axis=1)
            if (norms == 0).any():
                raise ZooscopeInputError(
                    f"{name} include an all-zero vector (row {first_row + int(np.argmax(norms == 0))}), which has "
                    "no direction to normalise; drop it or build the index with normalized=False."
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
        """Return the catalog ids in the index, in insertion order: shape (ntotal,)."""
        if self._idmap is None or self._idmap.shape[0] != self.ntotal:
            self._idmap = faiss.vector_to_array(faiss.downcast_index(self.index).id_map).astype(np.int64)
        return self._idmap

    def add(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Add vectors of shape (n, dim) with their catalog ids of shape (n,); ids already present raise.

        With exact vectors memory-mapped, they are copied into RAM first (the next `save` writes them out).
        """
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
        if self.exact is not None:
            self.exact = np.concatenate([np.asarray(self.exact), vecs])
        self._idmap = None

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ``ids`` (absent ids are ignored); returns how many were removed.

        Flat indices remove in place. Others are rebuilt from exact vectors minus ``ids`` (the kept `exact`
        copy, else the index's own vectors), keeping the trained quantizer: HNSW cannot remove at all, and
        under ``IDMap2`` an IVF's ``remove_ids`` leaves the id map pointing at the wrong vectors (IVF does not
        renumber, IDMap2 assumes it does). Lossy indices without an exact copy raise.
        """
        raw = ids if hasattr(ids, "shape") else list(ids)
        id_arr = np.unique(np.asarray(_to_numpy(raw), dtype=np.int64).reshape(-1))
        present = np.intersect1d(id_arr, self.ids())
        if not present.size:
            return 0
        inner = faiss.downcast_index(faiss.downcast_index(self.index).index)
        if self.exact is None and type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2):
            self._idmap = None
            return int(self.index.remove_ids(present))
        all_ids = self.ids()
        keep = ~np.isin(all_ids, present)
        if self.exact is not None:
            vecs = self.exact
        elif isinstance(inner, faiss.IndexHNSWFlat | faiss.IndexIVFFlat):
            if isinstance(inner, faiss.IndexIVFFlat):
                inner.make_direct_map()  # lets reconstruct_n find each vector
            vecs = inner.reconstruct_n(0, self.ntotal)  # exact, and already normalised when normalized
        else:
            raise ZooscopeInputError(
                f"{self.factory!r} cannot remove vectors in place and stores them approximately. Rebuild it "
                "with VectorIndex.build from the vector store (it keeps exact vectors for lossy factories)."
            )
        rebuilt = faiss.clone_index(self.index)
        rebuilt.reset()  # empties the index and its id map; the IVF quantizer stays trained
        ivf = faiss.try_extract_index_ivf(rebuilt)
        if ivf is not None:
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        kept_ids = all_ids[keep]
        rows = np.flatnonzero(keep)
        new_exact = None if self.exact is None else np.empty((rows.size, self.dim), dtype=np.float32)
        for s in range(0, rows.size, ADD_CHUNK):
            part = np.ascontiguousarray(vecs[rows[s:s + ADD_CHUNK]], dtype=np.float32)
            rebuilt.add_with_ids(part, kept_ids[s:s + ADD_CHUNK])
            if new_exact is not None:
                new_exact[s:s + len(part)] = part
        self.index, self.exact, self._idmap = rebuilt, new_exact, None
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
        """Return the ``k`` nearest stored vectors of each query.

        With exact vectors kept, faiss proposes ``k × oversample`` candidates and their exact scores decide.

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
                if self.exact is None:
                    D[s:s + QUERY_BATCH], I[s:s + QUERY_BATCH] = self.index.search(q[s:s + QUERY_BATCH], k)
                else:
                    D[s:s + QUERY_BATCH], I[s:s + QUERY_BATCH] = self._search_rerank(q[s:s + QUERY_BATCH], k)
        D[I < 0] = -np.inf if self.metric == "ip" else np.inf
        return D, I

    def _search_rerank(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidates from the inner (row-numbered) index, exact scores from `exact`, top k; ids via the map."""
        kc = min(self.ntotal, max(k, k * int(self.oversample)))
        inner = faiss.downcast_index(self.index).index  # labels are rows of `exact` (insertion order)
        _, rows = inner.search(q, kc)
        worst = -np.inf if self.metric == "ip" else np.inf
        D = np.full((len(q), k), worst, dtype=np.float32)
        I = np.full((len(q), k), -1, dtype=np.int64)
        idmap = self.ids()
        b = RERANK_BLOCK
        for s in range(0, len(q), b):  # gather b queries × kc rows at a time (cache-sized)
            r = rows[s:s + b]
            valid = r >= 0
            cand = np.asarray(self.exact[np.where(valid, r, 0)])  # (b, kc, dim) gathered rows
            qb = q[s:s + b, :, None]
            if self.metric == "ip":
                sc = -np.matmul(cand, qb)[..., 0]  # negated: smaller is nearer for both metrics
            else:
                sc = ((cand - qb[..., 0][:, None, :]) ** 2).sum(-1)
            sc[~valid] = np.inf
            if sc.shape[1] > k:  # partial selection, then order the k (ties by candidate rank)
                part = np.argpartition(sc, k - 1, axis=1)[:, :k]
                order = np.take_along_axis(part, np.argsort(np.take_along_axis(sc, part, 1), axis=1,
                                                            kind="stable"), 1)
            else:
                order = np.argsort(sc, axis=1, kind="stable")
            if self.metric == "ip":
                sc = -sc
            top_rows = np.take_along_axis(r, order, 1)
            m = order.shape[1]
            D[s:s + b, :m] = np.take_along_axis(sc, order, 1)
            I[s:s + b, :m] = np.where(top_rows >= 0, idmap[np.maximum(top_rows, 0)], -1)
        return D, I

    # -- files ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> str:
        """Write the index atomically (temp file, fsync, `os.replace`); returns the file's sha256.

        Exact vectors go first to ``<name>.exact.npy`` (also atomic); its sha256 is in the index file's header,
        which the returned checksum covers.
        """
        meta = {"dim": self.dim, "metric": self.metric, "normalized": self.normalized, "factory": self.factory,
                "ntotal": self.ntotal}
        return write_index(Path(path), self.index, meta, self.exact)

    @staticmethod
    def files(path: str | Path) -> list[Path]:
        """Return the files an index saved at ``path`` occupies: ``path`` and its exact-vector files, if any."""
        return index_files(Path(path))

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None, *, allow_unverified: bool = False,
             mmap: bool | None = None) -> VectorIndex:
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
        mmap : bool, optional
            Memory-map the exact vectors (``<name>.exact.npy``) instead of reading them into RAM; default: when
            they exceed a quarter of `ram_budget`. They are checked against the sha256 in the verified header
            and read with ``allow_pickle=False`` (plain numbers, no code).

        Raises
        ------
        ZooscopeInputError
            Missing checksum, checksum mismatch, or not a zooscope index file.
        """
        index, meta, exact = read_index(Path(path), sha256, allow_unverified=allow_unverified, mmap=mmap)
        return cls(index, metric=meta["metric"], normalized=meta["normalized"], factory=meta["factory"],
                   exact=exact)


def _remove_tree(folder: Path) -> None:
    for p in folder.glob("*"):
        p.unlink(missing_ok=True)
    folder.rmdir()
