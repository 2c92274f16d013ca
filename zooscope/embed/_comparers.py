"""The registry of streaming comparers for :func:`zooscope.compare` (one ``_registry.Registry``, no import cycle).

A streaming comparer is a measure that makes its own pass(es) over the data in bounded memory instead of
collecting full-batch activations: ``fn(model_a, model_b, pairs, layers_a, layers_b, *, device, progress, **kw)``
returns an (La, Lb) array. ``pairs()`` returns a fresh iterator of ``(x_a, x_b)`` input batches (the same tensor
twice unless ``data_b`` was given). ``zooscope.embed.compare`` registers ``minibatch_cka``; the modules named in
``PLUGINS`` register more when imported (a missing one raises, it never disappears silently).
"""

from __future__ import annotations

from dataclasses import dataclass

from zooscope._registry import Registry

__all__ = ["COMPARERS", "PLUGINS", "ComparerMeta"]


@dataclass(frozen=True)
class ComparerMeta:
    """What `compare` needs to know about a streaming comparer."""

    cross_dataset: bool = False
    """Accepts ``data_b`` (model B on other inputs, paired with A's by example index)."""
    larger_is_more_similar: bool = True
    symmetric: bool = True


PLUGINS = ("zooscope.embed.gradsketch",)
"""Modules that register comparers when imported; the registry imports each one on first lookup."""

COMPARERS: Registry[ComparerMeta] = Registry("comparer", modules=PLUGINS)
