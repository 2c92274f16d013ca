"""The registry of embedding kinds: how a (network, dataset) pair becomes vectors for the zoo's indices.

Three shapes of kind exist (``EmbeddingMeta.subject``):

* ``"model"``   -- one vector per (model, layer) on the zoo's fixed probe inputs, e.g. ``cka`` (the CKA signature)
  and ``gradsketch``.  Signature: ``fn(model: nn.Module, x: Tensor, *, layers: list[str] | None, **params)
  -> dict[str, np.ndarray]`` (layer name -> 1-D float32 vector).
* ``"dataset"`` -- one vector per labelled dataset through the zoo's probe network, e.g. ``task2vec``.
  Signature: ``fn(x: Tensor, y: Tensor, *, probe: nn.Module, **params) -> np.ndarray`` (1-D float32).
* ``"pair"``    -- one vector per (model, labelled dataset), e.g. ``fisher`` (the model's own Fisher on the data;
  `zooscope.embed.pairfisher`). Signature: ``fn(model: nn.Module, x: Tensor, y: Tensor, **params) -> np.ndarray``
  (1-D float32). Comparable only within one architecture (the zoo indexes them per architecture).

``version`` is stored with every vector: bumping it tells the zoo to re-embed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from zooscope._registry import Registry


@dataclass(frozen=True)
class EmbeddingMeta:
    """What one embedding kind produces and how its vectors are indexed."""

    subject: Literal["model", "dataset", "pair"]
    metric: Literal["ip", "l2"] = "ip"
    normalized: bool = True  # unit vectors: inner product == cosine
    # The kind's faiss factory string (e.g. "IDMap2,HNSW32"): to scale, change the string, not code. None: sized by
    # `zooscope.index.choose_factory` ("IDMap2,Flat" below 50,000 vectors, IVF-SQ8 with an exact re-rank above).
    index_factory: str | None = None
    version: str = "1"
    params: dict[str, Any] = field(default_factory=dict)  # defaults, stored with each vector
    pending: str = ""  # non-empty: the kind is declared but cannot run yet; the message says why
    description: str = ""


# The modules that register kinds, imported on the first lookup (so every kind is visible wherever the registry
# is used, without importing torch-heavy code at ``import zooscope``). An import error there propagates.
KIND_MODULES = ("zooscope.embed.signature", "zooscope.embed.task2vec", "zooscope.embed.gradsketch",
                "zooscope.embed.pairfisher")

EMBEDDINGS: Registry[EmbeddingMeta] = Registry("embedding kind", modules=KIND_MODULES)
