"""zooscope: compare networks; embed, index and rank a model zoo.

>>> import zooscope as zs
>>> zs.measures.linear_cka([[0., 1.], [1., 0.], [2., 2.]], [[0., 1.], [1., 0.], [2., 2.]])
1.0
"""

from __future__ import annotations

from typing import Any

from zooscope._validation import ZooscopeInputError
from zooscope._version import __version__

__all__ = ["Zoo", "ZooscopeInputError", "__version__", "compare", "compare_many", "measures"]


def __getattr__(name: str) -> Any:  # torch-heavy parts load on first use (so Ctrl-C while `zooscope` starts
    # reaches the CLI's handler, which is installed once this package is imported)
    if name == "measures":
        import importlib

        return importlib.import_module("zooscope.measures")
    if name == "compare":
        from zooscope.embed.compare import compare

        return compare
    if name == "compare_many":
        from zooscope.embed.compare_many import compare_many

        return compare_many
    if name == "Zoo":
        from zooscope.zoo.zoo import Zoo

        return Zoo
    raise AttributeError(f"module 'zooscope' has no attribute {name!r}")
