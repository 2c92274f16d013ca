"""FAISS indices over embedding vectors, and the on-disk vector store they are built from.

One file per job: `factory` (which factory string for how many vectors, and its RAM), `file_format` (the
checked index file), `reranking` (the generic exact re-rank), `vector_index` (`VectorIndex`), `store`.
"""

from zooscope.index.factory import FLAT_MAX, choose_factory, estimate_memory
from zooscope.index.reranking import rerank
from zooscope.index.store import VectorStore
from zooscope.index.vector_index import VectorIndex

__all__ = ["FLAT_MAX", "VectorIndex", "VectorStore", "choose_factory", "estimate_memory", "rerank"]
