"""Typed catalog rows: what `zooscope.zoo.catalog.Catalog` returns, one frozen record per table.

The fields are the table's columns (`zooscope.zoo.catalog.schema`), with two conversions made once, on reading:
``created`` (and a claim's ``expires``) is a UTC ISO string, and an absent ``model`` / ``dataset`` / ``layer`` key
(stored as ``""``) is None. JSON columns (``params``, ``kwargs``, ``meta`` …) stay plain dicts and lists: they are
data whose keys the kinds and sources define. `dataclasses.asdict` gives the row back as a dict (export, tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClaimRecord", "DatasetRecord", "EmbeddingRecord", "FailureRecord", "IndexRecord", "ModelRecord"]


@dataclass(frozen=True)
class ModelRecord:
    """A recorded model: how to build it (``spec``, ``kwargs``) and which weights (``checkpoint`` + sha256)."""

    id: int
    name: str
    spec: str
    kwargs: dict[str, Any]
    checkpoint: str | None
    checkpoint_sha256: str | None
    trained_on: str | None
    metrics: dict[str, Any]
    tags: list[Any] | dict[str, Any]
    input_shape: tuple[int, ...] | None
    created: str


@dataclass(frozen=True)
class DatasetRecord:
    """A recorded dataset: its source spec, size, classes, input shape and the sha256 of its probe."""

    id: int
    name: str
    source: str
    size: int
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    probe_sha256: str | None
    meta: dict[str, Any]
    created: str


@dataclass(frozen=True)
class EmbeddingRecord:
    """One stored vector (or stack of layer vectors): its id is its id in the FAISS indices.

    ``params`` holds what `zooscope.zoo.embedrun` stored: ``request`` (what was computed) and its
    ``request_hash``; for model kinds also ``layers`` (the names of the stack's rows) and ``penultimate``.
    """

    id: int
    kind: str
    model: str | None
    dataset: str | None
    layer: str | None
    params: dict[str, Any]
    params_hash: str
    vector_key: str
    dim: int
    code_version: str
    created: str
    sha256: str | None = None

    @property
    def subject(self) -> str:
        """The model's name (model kinds) or the dataset's (dataset kinds)."""
        return self.model or self.dataset or ""

    @property
    def request_hash(self) -> str | None:
        """The hash of the request this vector answers (a changed request re-embeds)."""
        return self.params.get("request_hash")

    @property
    def request(self) -> dict[str, Any]:
        """The request this vector answers (kind, version, parameters, probe set or probe network, …)."""
        return self.params.get("request") or {}


@dataclass(frozen=True)
class FailureRecord:
    """An embedding that failed: its last error and how many attempts failed."""

    id: int
    kind: str
    model: str | None
    dataset: str | None
    error: str
    attempts: int
    created: str


@dataclass(frozen=True)
class IndexRecord:
    """A saved FAISS index of (kind, policy): its file (relative to the zoo), sha256, size and factory string."""

    id: int
    kind: str
    policy: str
    path: str
    sha256: str
    n: int
    factory: str
    created: str


@dataclass(frozen=True)
class ClaimRecord:
    """A writer's claim on (kind, model, dataset) until ``expires`` (see `zooscope.zoo.catalog.claims`)."""

    kind: str
    model: str | None
    dataset: str | None
    owner: str
    expires: str
