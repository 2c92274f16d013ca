"""FAISS indices of a zoo: one per (kind, layer policy, comparability group), kept in step with the catalog.

Keys. Model kinds have two policies: ``"penultimate"`` (one vector per model, id = catalog row id) and
``"layers"`` (every layer, id = ``row_id * LAYER_STRIDE + layer_index``); dataset kinds have ``"all"``. The
group (`zooscope.zoo.vectors.comparability_group`: probe set or probe network, plus parameters) is part of the
key, so a search returns k comparable rows whenever k exist. The catalog's ``indices.policy`` column stores
``"<policy>@<group>"``.

Index space. Vectors longer than `JL_MAX_DIM` (CKA signatures: n² entries) enter as their seeded JL projection
(`zooscope.measures.sketch.jl_project`, Rademacher), cached under the zoo's cache folder; a kind may declare
``fn.index_transform`` (task2vec: the centred log-Fisher) applied first. Queries re-rank candidates exactly
from the stored vectors (`zooscope.index.rerank`).

One step for readers. Index files are content-addressed (``<kind>__<policy>@<group>__<sha256[:16]>.faiss``):
a writer saves the new file under its own name, then commits the catalog row naming it (one transaction), then
deletes the old file. A reader loads the file its row names; if a concurrent writer deleted it in between, the
reader reads the row again. So no reader sees a row whose file is missing or has another checksum.

Incremental. Embedding adds rows to the indices of their keys and retiring removes them (`IndexWriter.sync`);
flat indices change in place, HNSW/IVF are rebuilt by `zooscope.index.VectorIndex.remove` from their own
vectors. `IndexWriter.rebuild` builds everything from the vector store (``check --fix``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zooscope._io import cached_array
from zooscope.zoo.catalog import Catalog, EmbeddingRecord, IndexRecord
from zooscope.zoo.settings import ZooPaths, ZooSettings
from zooscope.zoo.vectors import VectorRepo, comparability_group, layer_position

__all__ = ["DATASET_POLICIES", "JL_MAX_DIM", "LAYER_STRIDE", "MODEL_POLICIES", "IndexKey", "IndexReader",
           "IndexWriter", "policies"]

log = logging.getLogger(__name__)

LAYER_STRIDE = 4096  # ids of the "layers" index: row_id * LAYER_STRIDE + layer index
JL_MAX_DIM = 1024  # longer vectors are indexed through a JL projection
JL_KIND = "rademacher"
MODEL_POLICIES = ("penultimate", "layers")
DATASET_POLICIES = ("all",)


def policies(subject: str) -> tuple[str, ...]:
    """Index policies of a kind by its subject ("model" or "dataset")."""
    return MODEL_POLICIES if subject == "model" else DATASET_POLICIES


@dataclass(frozen=True, order=True)
class IndexKey:
    """Which index: (kind, policy, comparability group)."""

    kind: str
    policy: str
    group: str

    @property
    def column(self) -> str:
        """The catalog's ``indices.policy`` value."""
        return f"{self.policy}@{self.group}"

    @classmethod
    def from_record(cls, rec: IndexRecord) -> IndexKey:
        """Return the from record."""
        policy, _, group = rec.policy.partition("@")
        return cls(rec.kind, policy, group)

    def file_name(self, sha256: str) -> str:
        """ASCII, at most ~120 bytes whatever the group's (dataset) names hold: names are data, never paths."""
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in self.column)
        if not self.column.isascii() or len(safe) > 64:  # keep a prefix, add a hash of the whole
            safe = f"{safe[:48]}.{hashlib.sha256(self.column.encode('utf-8')).hexdigest()[:12]}"
        return f"{self.kind}__{safe}__{sha256[:16]}.faiss"


def _kind_meta(kind: str) -> Any:
    from zooscope.embed._kinds import EMBEDDINGS

    return EMBEDDINGS.get(kind)


@dataclass(frozen=True)
class IndexReader:
    """Searches the recorded indices; writes nothing but the JL cache."""

    catalog: Catalog
    paths: ZooPaths
    vectors: VectorRepo
    settings: ZooSettings

    # -- index space --------------------------------------------------------------------------------------
    def _transform(self, kind: str, arr: np.ndarray) -> np.ndarray:
        fn = getattr(_kind_meta(kind).fn, "index_transform", None)
        return np.atleast_2d(np.asarray(fn(arr) if fn is not None else arr, dtype=np.float64))

    def _project(self, arr: np.ndarray) -> np.ndarray:
        from zooscope.measures.sketch import jl_project

        return jl_project(arr, self.settings.jl_dim, self.settings.jl_seed, kind=JL_KIND).astype(np.float32)

    def view(self, row: EmbeddingRecord) -> np.ndarray:
        """Return the vectors of ``row`` as they enter the index: (n_layers, d) or (1, d), float32."""
        arr = self._transform(row.kind, np.asarray(self.vectors.read(row)))
        if arr.shape[1] <= JL_MAX_DIM:
            return arr.astype(np.float32)
        s = self.settings
        cache = self.paths.cache / "jl" / f"{row.vector_key}_{JL_KIND}_{s.jl_dim}_{s.jl_seed}.npy"
        return cached_array(cache, lambda: self._project(arr))

    def query_view(self, kind: str, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (m, D) in the index space of ``kind`` (transformed and JL-projected like `view`)."""
        arr = self._transform(kind, np.asarray(vectors))
        return arr.astype(np.float32) if arr.shape[1] <= JL_MAX_DIM else self._project(arr)

    # -- contents -------------------------------------------------------------------------------------------
    def expected(self, key: IndexKey, rows: Sequence[EmbeddingRecord] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) the index ``key`` should hold, from the current rows of its group."""
        if rows is None:
            rows = [r for r in self.vectors.current_rows(key.kind) if comparability_group(r) == key.group]
        vecs: list[np.ndarray] = []
        ids: list[int] = []
        for r in rows:
            v, i = self._entries(key.policy, r)
            vecs.append(v)
            ids.extend(i)
        if not vecs:
            return np.zeros((0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.concatenate(vecs).astype(np.float32), np.asarray(ids, dtype=np.int64)

    def _entries(self, policy: str, row: EmbeddingRecord) -> tuple[np.ndarray, list[int]]:
        view = self.view(row)
        if policy == "layers":
            return view, [row.id * LAYER_STRIDE + i for i in range(view.shape[0])]
        if policy == "penultimate":
            i = layer_position(row)
            return view[i:i + 1], [row.id]
        return view[:1], [row.id]

    def keys(self, kind: str | None = None) -> list[IndexKey]:
        """Return the recorded index keys (of one kind, or all)."""
        return sorted(IndexKey.from_record(r) for r in self.catalog.indices() if kind is None or r.kind == kind)

    def expected_keys(self, kind: str) -> list[IndexKey]:
        """Return the keys the current rows of ``kind`` call for."""
        groups = sorted({comparability_group(r) for r in self.vectors.current_rows(kind)})
        return [IndexKey(kind, p, g) for g in groups for p in policies(_kind_meta(kind).meta.subject)]

    def record(self, key: IndexKey) -> IndexRecord | None:
        """Return the record."""
        return self.catalog.get_index(key.kind, key.column)

    def load(self, key: IndexKey) -> Any:
        """Return the recorded index of ``key`` (sha256-checked), or None when none is recorded."""
        from zooscope.index import VectorIndex

        for attempt in range(3):
            rec = self.record(key)
            if rec is None:
                return None
            try:
                return VectorIndex.load(self.paths.root / rec.path, sha256=rec.sha256)
            except FileNotFoundError:  # a writer replaced it between our read of the row and of the file
                if attempt == 2:
                    raise
        return None

    def search(self, key: IndexKey, queries: np.ndarray, m: int) -> np.ndarray:
        """Catalog row ids of the ``m`` nearest entries of each query (layer ids mapped to their rows).

        Or None when no index is recorded.
        """
        index = self.load(key)
        if index is None:
            return None
        q = self.query_view(key.kind, queries)
        _, ids = index.search(q, int(min(max(m, 1), max(index.ntotal, 1))))
        ids = ids[ids >= 0]
        if key.policy == "layers":
            ids = ids // LAYER_STRIDE
        return np.unique(ids)


class IndexWriter(IndexReader):
    """An `IndexReader` that also changes the indices (only `Zoo.embed`, removals and ``check --fix``)."""

    def _save(self, key: IndexKey, index: Any) -> None:
        """Content-addressed save, then the catalog row, then delete the old file (see the module docstring)."""
        old = self.record(key)
        tmp = self.paths.indices / f".new-{key.kind}-{os.getpid()}.faiss"  # two writers never share it
        sha = index.save(tmp)
        final = self.paths.indices / key.file_name(sha)
        tmp.replace(final)
        self.catalog.record_index(kind=key.kind, policy=key.column, path=str(final.relative_to(self.paths.root)),
                                  sha256=sha, n=index.ntotal, factory=index.factory)
        if old is not None and old.path != str(final.relative_to(self.paths.root)):
            (self.paths.root / old.path).unlink(missing_ok=True)

    def drop(self, key: IndexKey) -> None:
        """Forget the index of ``key`` and delete its file."""
        old = self.record(key)
        self.catalog.remove_index(key.kind, key.column)
        if old is not None:
            (self.paths.root / old.path).unlink(missing_ok=True)

    def build(self, key: IndexKey) -> None:
        """Build ``key``'s index from the vector store (or drop it when its group is empty)."""
        from zooscope.index import VectorIndex

        vecs, ids = self.expected(key)
        if not len(ids):
            self.drop(key)
            return
        meta = _kind_meta(key.kind).meta
        self._save(key, VectorIndex.build(vecs, ids, metric=meta.metric, normalized=meta.normalized,
                                          factory=meta.index_factory))

    def rebuild(self, kinds: Iterable[str]) -> None:
        """Rebuild every index of ``kinds`` from the vector store; drop indices of groups with no rows."""
        for kind in kinds:
            for key in self._drop_unwanted(kind):
                self.build(key)

    def _drop_unwanted(self, kind: str) -> list[IndexKey]:
        """Drop the indices of ``kind`` whose group has no rows; returns the keys the rows call for."""
        want = set(self.expected_keys(kind))
        for key in self.keys(kind):
            if key not in want:
                self.drop(key)
        return sorted(want)

    def sync(self, kind: str) -> None:
        """Bring every index of ``kind`` in step with the catalog, in place.

        Add the vectors of rows it lacks, remove ids whose rows are gone, build missing indices, drop those of
        groups without rows.
        """
        rows = self.vectors.current_rows(kind)
        for key in self._drop_unwanted(kind):
            group_rows = [r for r in rows if comparability_group(r) == key.group]
            want_ids = {i: r for r in group_rows for i in self._ids_of(key.policy, r)}
            try:
                index = self.load(key)
            except Exception as e:  # unreadable or changed file: rebuild it from the store
                log.warning("rebuilding index %s: %s", key, str(e).splitlines()[0])
                index = None
            if index is not None and group_rows and index.dim != self.view(group_rows[0]).shape[-1]:
                log.info("rebuilding index %s: the zoo's settings (e.g. configure --jl-dim) changed its views", key)
                index = None
            if index is None:
                self.build(key)
                continue
            have = set(index.ids().tolist())
            extra = sorted(have - set(want_ids))
            missing = {r.id: r for i, r in want_ids.items() if i not in have}
            if not extra and not missing:
                continue
            if extra:
                index.remove(extra)
            if missing:
                vecs, ids = self.expected(key, list(missing.values()))
                keep = ~np.isin(ids, list(have - set(extra)))
                index.add(vecs[keep], ids[keep])
            if index.ntotal == 0:
                self.drop(key)
            else:
                self._save(key, index)

    def _ids_of(self, policy: str, row: EmbeddingRecord) -> list[int]:
        if policy == "layers":
            n = len(row.params.get("layers") or [None])
            return [row.id * LAYER_STRIDE + i for i in range(n)]
        return [row.id]
