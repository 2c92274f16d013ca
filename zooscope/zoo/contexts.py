"""What each stage of the pipeline gets from the `Zoo` facade: a narrow context, never the Zoo itself."""

from __future__ import annotations

from pathlib import Path

from zooscope.index.store import VectorStore
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.check import CheckContext
from zooscope.zoo.curate import CurateContext
from zooscope.zoo.embedrun import EmbedContext
from zooscope.zoo.indices import IndexReader
from zooscope.zoo.probes import ProbeContext
from zooscope.zoo.select import SelectContext
from zooscope.zoo.settings import ZooPaths, ZooSettings
from zooscope.zoo.similar import SimilarContext
from zooscope.zoo.vectors import VectorRepo

__all__ = ["ZooContexts"]


class ZooContexts:
    """The context builders of `zooscope.zoo.zoo.Zoo` (it sets ``catalog``, ``store``, ``paths``)."""

    catalog: Catalog
    store: VectorStore
    paths: ZooPaths
    root: Path

    def typed_settings(self) -> ZooSettings:
        """Return the settings as a `ZooSettings` (read now from the catalog)."""
        return ZooSettings.load(self.catalog)

    def probe_context(self) -> ProbeContext:
        """Return the context of the probe step."""
        return ProbeContext(self.catalog, self.typed_settings(), self.paths)

    def embed_context(self) -> EmbedContext:
        """Return the context of the embed step."""
        return EmbedContext(self.catalog, self.store, self.paths, self.typed_settings())

    def _reader(self, st: ZooSettings) -> tuple[VectorRepo, IndexReader]:
        vectors = VectorRepo(self.catalog, self.store)
        return vectors, IndexReader(self.catalog, self.paths, vectors, st)

    def similar_context(self) -> SimilarContext:
        """Return the context of the similar step."""
        st = self.typed_settings()
        vectors, indices = self._reader(st)
        return SimilarContext(self.catalog, vectors, indices, ProbeContext(self.catalog, st, self.paths), st)

    def select_context(self) -> SelectContext:
        """Return the context of the select step."""
        st = self.typed_settings()
        vectors, indices = self._reader(st)
        return SelectContext(self.catalog, vectors, indices, ProbeContext(self.catalog, st, self.paths),
                             EmbedContext(self.catalog, self.store, self.paths, st))

    def check_context(self) -> CheckContext:
        """Return the context of the check step."""
        return CheckContext(self.embed_context())

    def curate_context(self) -> CurateContext:
        """Return the context of the curate step."""
        st = self.typed_settings()
        return CurateContext(VectorRepo(self.catalog, self.store), ProbeContext(self.catalog, st, self.paths))
