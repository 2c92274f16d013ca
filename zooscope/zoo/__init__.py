"""zooscope.zoo: the model zoo (catalog, datasets, models, embeddings, indices) behind one facade, `Zoo`.

Heavy modules load on first use: ``from zooscope.zoo import Zoo`` imports the catalog, not torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Zoo", "clusters", "duplicates", "pair_heatmap", "zoo_map"]


def __getattr__(name: str) -> Any:
    if name == "Zoo":
        from zooscope.zoo.zoo import Zoo

        return Zoo
    if name in ("clusters", "duplicates", "pair_heatmap", "zoo_map"):
        from zooscope.zoo import curate

        return getattr(curate, name)
    raise AttributeError(f"module 'zooscope.zoo' has no attribute {name!r}")
