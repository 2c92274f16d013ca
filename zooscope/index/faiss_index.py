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
import re
import tempfile
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError, _to_numpy, check_choice

__all__ = ["FLAT_MAX", "VectorIndex", "choose_factory", "estimate_memory", "rerank"]

log = logging.getLogger(__name__)

FLAT_MAX = 50_000  # exact search stays < 1 ms/query (batched) below this on 2 cores (env_probe §4)
QUERY_BATCH = 4096
ADD_CHUNK = 65_536  # rows validated, normalised and added at a time (bounds the build's extra memory)
LARGE_BUILD = 200_000  # builds from this size on announce their memory estimate
OVERSAMPLE = 10  # exact re-rank of k × this candidates (IVF-SQ8 alone: recall@10 0.96-0.98 at 1M)
NPROBE = 8  # 1M bench: recall@10 0.999-1.0 at nprobe 8 (0.9935-0.9954 at 4); raise it for harder data
RERANK_BLOCK = 32  # queries re-ranked together: 32 × 100 candidates × 256 dims = 3 MB, stays in cache
_MAGIC = b"ZOOSCOPE-FAISS\n"
_FORMAT = 1
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
_EXACT_SUFFIX = ".exact.npy"
_EXACT_NAME = re.compile(r"\.[0-9a-f]{16}\.exact\.npy")


def ivf_lists(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest sqrt(n), within [64, 65536] (1,024 at a million)."""
    return int(min(65536, max(64, 2 ** round(np.log2(max(1.0, np.sqrt(n)))))))


def choose_factory(n: int, dim: int, metric: str = "ip") -> str:
    """The factory string for ``n`` vectors of ``dim``, from `benchmarks/bench_index.py` (RESULTS.md).

    * ``n < FLAT_MAX`` (50,000): ``"IDMap2,Flat"``, exact; a batched query costs well under a millisecond.
    * above: ``"IDMap2,IVF{nlist},SQ8"`` with ``nlist`` ≈ sqrt(n) (`ivf_lists`), probed 8 lists deep (`NPROBE`), and
      `VectorIndex.build` keeps the exact float vectors beside it (in RAM, or memory-mapped from disk when they
      would not fit) to re-rank k × 10 candidates exactly. Measured at a million 256-d clustered signatures on
      one thread (RESULTS.md): recall@10 ≥ 0.999, ~15 s of CPU to build, ≤ 0.5 ms of CPU a query batched and
      under 1 ms single, 1.4 GB of RAM with the exact vectors in RAM (0.4 GB memory-mapped). The alternatives
      measured there lose: exact Flat costs ~10× more a query; IVF-SQ8 without re-rank has recall 0.96-0.98;
      HNSW32-SQ8 took ~20× longer to build with recall 0.86 and cannot remove vectors; IVF-PQ32 trains
      slowly and its coarse codes keep only 0.59 of the true neighbours among 100 candidates.
    """
    check_choice(metric, _METRICS, "metric", "choose_factory")
    if n < 0 or dim < 1:
        raise ZooscopeInputError(f"choose_factory needs n >= 0 and dim >= 1; got n={n}, dim={dim}.")
    return "IDMap2,Flat" if n < FLAT_MAX else f"IDMap2,IVF{ivf_lists(n)},SQ8"


def _is_lossy(factory: str) -> bool:
    """Whether the factory stores vectors approximately (scalar / product / residual quantisation, LSH)."""
    return re.search(r"SQ|PQ|LSH|RQ", factory) is not None


def estimate_memory(n: int, dim: int, factory: str, *, exact: bool | None = None) -> int:
    """Bytes of RAM an index of ``n`` × ``dim`` vectors built from ``factory`` needs (faiss part + exact copy).

    ``exact`` (default: whether the factory stores vectors lossily) adds the float32 vectors kept for the
    exact re-rank; they can be memory-mapped from disk instead (`VectorIndex.build`'s ``memory_budget``).
    The estimate counts codes, ids, IVF centroids and HNSW links, plus one build chunk; faiss's own slack
    (list growth) is within ~20 %.
    """
    parts = [p.strip() for p in factory.split(",") if p.strip()]
    exact = _is_lossy(factory) if exact is None else exact
    per = 0.0
    fixed = ADD_CHUNK * dim * 4 * 2  # one validated chunk + its normalised copy
    for p in parts:
        if p.startswith("IDMap"):
            per += 8 + (16 if p == "IDMap2" else 0)  # id array (+ reverse map)
        elif p.startswith("IVF"):
            nlist = int("".join(ch for ch in p[3:].split("_")[0] if ch.isdigit()) or 1)
            per += 8  # stored id per list entry
            fixed += nlist * dim * 4
        elif p.startswith("HNSW"):
            m = int("".join(ch for ch in p[4:].split("_")[0] if ch.isdigit()) or 32)
            per += m * 2 * 4 * 1.05  # level-0 links + upper levels
            code = p.split("_", 1)[1] if "_" in p else "Flat"
            per += _code_bytes(code, dim)
        else:
            per += _code_bytes(p, dim)
    if exact:
        per += dim * 4
    return int(n * per + fixed)


def _code_bytes(code: str, dim: int) -> float:
    if code.startswith("SQ"):
        bits = {"SQ8": 8, "SQ6": 6, "SQ4": 4, "SQfp16": 16, "SQbf16": 16}.get(code.split("x")[0], 8)
        return dim * bits / 8
    if code.startswith("PQ"):
        digits = code[2:].split("x")
        m = int("".join(ch for ch in digits[0] if ch.isdigit()) or 8)
        nbits = int("".join(ch for ch in digits[1] if ch.isdigit()) or 8) if len(digits) > 1 else 8
        return m * nbits / 8
    return dim * 4.0  # Flat and anything unknown: float32


def ram_budget() -> int:
    """Bytes an index may hold in RAM: ``ZOOSCOPE_INDEX_RAM_BUDGET`` (bytes; suffix K/M/G allowed), else half
    of MemAvailable."""
    env = os.environ.get("ZOOSCOPE_INDEX_RAM_BUDGET")
    if env:
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(env.strip()[-1:].upper(), 1)
        return int(float(env.strip().rstrip("KMGkmg")) * mult)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 * 2**30


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
        return self.ntotal

    def __repr__(self) -> str:
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
        check_choice(metric, _METRICS, "metric", "VectorIndex.build")
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
            index = faiss.index_factory(dim, factory, _METRICS[metric])
        except RuntimeError as e:
            raise ZooscopeInputError(
                f"faiss cannot build factory {factory!r} ({str(e).splitlines()[-1]}). Examples of valid "
                "strings: 'IDMap2,Flat', 'IDMap2,HNSW32', 'IDMap2,IVF256,Flat', 'IDMap2,IVF1024,SQ8'."
            ) from None
        exact = _is_lossy(factory) if exact is None else bool(exact)
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
        """Rows to train on: all of a small set, else a sorted random sample of 64 per IVF list (≥ 100k for
        codecs without lists), which is what faiss would subsample to anyway."""
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
        """The catalog ids in the index, in insertion order: shape (ntotal,)."""
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
        """The ``k`` nearest stored vectors of each query.

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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "dim": self.dim, "metric": self.metric, "normalized": self.normalized,
                "factory": self.factory, "ntotal": self.ntotal}
        if self.exact is not None:
            side, digest = _write_exact(path, self.exact)
            meta["exact"] = {"file": side.name, "sha256": digest,
                             "rows": int(self.exact.shape[0])}
        header = json.dumps(meta).encode()
        payload = faiss.serialize_index(self.index)
        parts = (_MAGIC, len(header).to_bytes(8, "little"), header, payload.tobytes())
        digest = atomic_write(path, lambda f: [f.write(part) for part in parts])
        if self.exact is not None:  # older exact files of this index (content-addressed names)
            for old in path.parent.glob(path.name + ".*" + _EXACT_SUFFIX):
                if old.name != meta["exact"]["file"] and _EXACT_NAME.fullmatch(old.name[len(path.name):]):
                    old.unlink(missing_ok=True)
        return digest

    @staticmethod
    def files(path: str | Path) -> list[Path]:
        """The files an index saved at ``path`` occupies: ``path`` and its exact-vector files, if any."""
        path = Path(path)
        side = [p for p in path.parent.glob(path.name + ".*" + _EXACT_SUFFIX)
                if _EXACT_NAME.fullmatch(p.name[len(path.name):])]
        return ([path] if path.exists() else []) + sorted(side)

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
        exact = _load_exact(path, meta, mmap) if meta.get("exact") else None
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=start + hlen))
        del data
        if exact is not None and exact.shape != (int(index.ntotal), int(index.d)):
            raise ZooscopeInputError(f"{path}: the exact vectors have shape {exact.shape}, the index "
                                     f"({index.ntotal}, {index.d}); rebuild the index.")
        return cls(index, metric=meta["metric"], normalized=meta["normalized"], factory=meta["factory"],
                   exact=exact)


def _remove_tree(folder: Path) -> None:
    for p in folder.glob("*"):
        p.unlink(missing_ok=True)
    folder.rmdir()


def _write_exact(index_path: Path, arr: np.ndarray) -> tuple[Path, str]:
    """Write ``arr`` as .npy beside the index under a content-addressed name (``<index>.<sha[:16]>.exact.npy``):
    written through `zooscope._io.atomic_write` in chunks. A reader of the previous index file still finds its own
    exact file until the next save removes it. Returns (path, sha256)."""
    header = _npy_header(arr.shape, arr.dtype)

    def chunks():
        yield header
        for s in range(0, arr.shape[0], ADD_CHUNK):
            yield np.ascontiguousarray(arr[s:s + ADD_CHUNK]).tobytes()

    h = hashlib.sha256()  # the name carries the content hash, so hash first, then write under that name
    for block in chunks():
        h.update(block)
    digest = h.hexdigest()
    path = index_path.with_name(f"{index_path.name}.{digest[:16]}{_EXACT_SUFFIX}")
    atomic_write(path, lambda f: [f.write(block) for block in chunks()])
    return path, digest


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                              "fortran_order": False, "shape": tuple(int(s) for s in shape)})
    return buf.getvalue()  # magic string included


def _load_exact(path: Path, meta: dict, mmap: bool | None) -> np.ndarray:
    info = meta["exact"]
    name = str(info.get("file", ""))
    if not (name.startswith(path.name) and _EXACT_NAME.fullmatch(name[len(path.name):])):  # data, never a path
        raise ZooscopeInputError(f"{path}: unexpected exact-vector file name {name!r}; rebuild the index.")
    side = path.with_name(name)
    if not side.is_file():
        raise ZooscopeInputError(f"{path}: its exact vectors {side.name} are missing; rebuild the index.")
    h = hashlib.sha256()
    with open(side, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    if h.hexdigest() != info.get("sha256"):
        raise ZooscopeInputError(f"{side} does not match the sha256 recorded in {path.name}; it was changed "
                                 "after it was saved. Rebuild the index from the vector store.")
    if mmap is None:
        mmap = side.stat().st_size > ram_budget() // 4
    arr = np.load(side, mmap_mode="r" if mmap else None, allow_pickle=False)
    if arr.dtype != np.float32 or arr.ndim != 2:
        raise ZooscopeInputError(f"{side} holds {arr.dtype} {arr.shape}, not float32 vectors; rebuild the index.")
    return arr


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
