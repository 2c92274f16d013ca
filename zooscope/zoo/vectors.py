"""The zoo's stored vectors: a small read-only repository over catalog rows and vector files.

Layout of a stored embedding (one catalog row per (kind, model) or (kind, dataset), written in one transaction
after its vector file): model kinds store a stack of shape (n_layers, dim) with ``params["layers"]`` naming the
rows and ``params["penultimate"]`` the default layer; dataset kinds store one vector of shape (dim,), and so do
pair kinds (one row per (kind, model, dataset)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from zooscope._validation import unknown_name_error
from zooscope.index.store import VectorStore
from zooscope.zoo.catalog import Catalog, EmbeddingRecord, params_hash
from zooscope.zoo.integrity import CorruptFileError, verify_file

__all__ = ["VectorRepo", "comparability_group", "request_group"]


def comparability_group(row: EmbeddingRecord) -> str:
    """Rows of one kind are comparable iff they share this.

    The probe set (model kinds), the probe network (dataset kinds) or the model's architecture (pair kinds:
    ``arch-<hash>``), plus the kind's parameters. It is part of every index key.
    """
    return request_group(row.request)


def request_group(request: Mapping[str, Any]) -> str:
    """Return the comparability group of a row computed for ``request`` (see `comparability_group`)."""
    if request.get("architecture") is not None:  # pair kinds: one parameter space per architecture
        return f"arch-{params_hash(request['architecture'])[:12]}.{params_hash(request.get('params'))[:8]}"
    base = request.get("probe_set") or params_hash(request.get("probe_net"))[:12]
    return f"{base}.{params_hash(request.get('params'))[:8]}"


@dataclass(frozen=True)
class VectorRepo:
    """Read access to embedding rows and their vectors."""

    catalog: Catalog
    store: VectorStore

    def current_rows(self, kind: str, *, model: str | None = None,
                     dataset: str | None = None) -> list[EmbeddingRecord]:
        """Return the embedding rows of ``kind`` (one per subject: the newest when several exist), in id order."""
        best: dict[tuple[str | None, str | None], EmbeddingRecord] = {}
        for r in self.catalog.embeddings(kind=kind, model=model, dataset=dataset):
            best[(r.model, r.dataset)] = r  # rows come in id order: the newest wins
        return sorted(best.values(), key=lambda r: r.id)

    def read(self, row: EmbeddingRecord) -> np.ndarray:
        """Return the stored array of a row, memory-mapped (read-only): (n_layers, dim) or (dim,).

        The file is checked against the sha256 the catalog recorded (rows written before schema v2 have none),
        and must hold finite numbers.

        Raises
        ------
        CorruptFileError
            (a `ZooscopeInputError`) the file differs from its recorded sha256, cannot be parsed, or holds NaN/Inf;
            the message names the file and ``zooscope check --fix``.
        KeyError
            The file is missing.
        """
        path = self.store.path(row.vector_key)
        verify_file(path, row.sha256, f"{row.kind} vector")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CorruptFileError(f"The {row.kind} vector file {path} cannot be read ({e}). Run `zooscope "
                                   "check --fix` (then `zooscope embed`) to drop and recompute it.", path) from None
        if not np.isfinite(arr).all():
            raise CorruptFileError(f"The {row.kind} vector file {path} holds NaN or Inf. Run `zooscope check "
                                   "--fix` (then `zooscope embed`) to drop and recompute it.", path)
        return arr

    def problem(self, row: EmbeddingRecord) -> str | None:
        """Why a row's vector cannot be used (missing, corrupt, non-finite), or None when it reads fine."""
        try:
            self.read(row)
        except KeyError:
            return f"{row.kind} vector file {row.vector_key}.npy is missing (run `zooscope check --fix`)"
        except CorruptFileError as e:
            return str(e)
        return None

    def read64(self, row: EmbeddingRecord) -> np.ndarray:
        """Return the stored array of a row as float64 (in memory)."""
        return np.asarray(self.read(row), dtype=np.float64)

    def layer_vector(self, row: EmbeddingRecord, layer: str | None = None) -> np.ndarray:
        """One layer's stored vector (default: the penultimate layer) as float64."""
        arr = self.read(row)
        if arr.ndim == 1:
            return np.asarray(arr, dtype=np.float64)
        return np.asarray(arr[layer_position(row, layer)], dtype=np.float64)


def layer_position(row: EmbeddingRecord, layer: str | None = None) -> int:
    """Row index of ``layer`` (None or "penultimate": the penultimate layer) in a model row's stack."""
    layers = row.params["layers"]
    name = row.params["penultimate"] if layer in (None, "penultimate") else layer
    if name not in layers:
        raise unknown_name_error(f"layer of model {row.model!r}", str(name), layers)
    return layers.index(name)


def stored_bytes(catalog: Catalog, store: VectorStore) -> dict[str, int]:
    """Model name -> bytes of its stored vector files (every kind; a missing file counts 0). Reads only sizes."""
    sizes: dict[str, int] = {}
    for r in catalog.embeddings():
        if r.model is None:
            continue
        path = store.path(r.vector_key)
        sizes[r.model] = sizes.get(r.model, 0) + (path.stat().st_size if path.is_file() else 0)
    return sizes
