"""FAISS indices over embedding vectors, and the on-disk vector store they are built from."""

from zooscope.index.faiss_index import FLAT_MAX, VectorIndex, choose_factory, rerank
from zooscope.index.store import VectorStore

__all__ = ["FLAT_MAX", "VectorIndex", "VectorStore", "choose_factory", "rerank"]
