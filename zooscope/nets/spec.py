"""Model specs: an arch string, its kwargs and a checkpoint, as one frozen value (no torch on import).

Names. The *arch* is the string naming an architecture, ``"timm:<name>"`` or ``"package.module:factory"``; the
*spec* is the arch with the kwargs that configure it and the checkpoint that fills its weights, a `ModelSpec`.
Two stored formats keep their historical keys: a catalog model row stores the arch under ``"spec"``, a Task2Vec
probe-net setting under ``"arch"``; `ModelSpec.from_row` and `ModelSpec.from_dict` read them.

Moved factories. Arch strings are data (catalog rows, request hashes, scripts, user commands), so a factory module
that moved keeps its old name: ``zooscope.zoo.models:small_cnn`` still builds ``zooscope.nets.models:small_cnn``
(`MOVED_MODULES`). The stored text is never rewritten, so existing zoos and their vectors stay current.

>>> spec = ModelSpec("zooscope.nets.models:small_cnn", {"width": 8})
>>> sum(p.numel() for p in spec.build().parameters()) > 0
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zooscope._validation import ZooscopeInputError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MOVED_MODULES", "ArchRef", "ModelSpec", "parse_spec", "resolve_module"]

#: Old module path -> new one, for factory modules that moved (zooscope 0.x kept them in ``zooscope.zoo``).
MOVED_MODULES: Mapping[str, str] = {"zooscope.zoo.models": "zooscope.nets.models"}

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SPEC_HELP = ("A model spec is 'timm:<name>' (e.g. timm:resnet18) or 'package.module:factory' "
              "(e.g. zooscope.nets.models:small_cnn), where factory returns an nn.Module.")


@dataclass(frozen=True)
class ArchRef:
    """A parsed arch string.

    Attributes
    ----------
    source : {"timm", "python"}
        Where the architecture comes from.
    module : str
        ``"timm"`` or the importable module path of the factory, as written (see `resolve_module`).
    name : str
        The timm model name, or the (possibly dotted) attribute of ``module`` to call.
    """

    source: Literal["timm", "python"]
    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def resolve_module(module: str) -> str:
    """The module to import for a factory module path: its new home if it moved (`MOVED_MODULES`), else itself.

    >>> resolve_module("zooscope.zoo.models")
    'zooscope.nets.models'
    """
    return MOVED_MODULES.get(module, module)


def parse_spec(spec: str) -> ArchRef:
    """Validate and split an arch string.

    Parameters
    ----------
    spec : str
        ``"timm:<name>"`` or ``"package.module:factory"``.

    Returns
    -------
    ArchRef

    Raises
    ------
    ZooscopeInputError
        If the string is not of either form; the message shows both forms.

    Examples
    --------
    >>> parse_spec("timm:resnet18")
    ArchRef(source='timm', module='timm', name='resnet18')
    >>> parse_spec("zooscope.nets.models:small_cnn").source
    'python'
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ZooscopeInputError(f"Bad model spec {spec!r}: it needs exactly one ':'. {_SPEC_HELP}")
    module, name = (part.strip() for part in spec.split(":"))
    if module == "timm":
        if not re.fullmatch(r"[\w.\-]+", name):
            raise ZooscopeInputError(f"Bad model spec {spec!r}: no timm model name after 'timm:'. {_SPEC_HELP}")
        return ArchRef("timm", "timm", name)
    if not _DOTTED.match(module) or not _DOTTED.match(name):
        raise ZooscopeInputError(
            f"Bad model spec {spec!r}: {module!r} must be an importable module path and {name!r} a Python "
            f"name in it. {_SPEC_HELP}"
        )
    return ArchRef("python", module, name)


@dataclass(frozen=True)
class ModelSpec:
    """One network to build: an arch string, the kwargs of its factory and optionally a checkpoint.

    Attributes
    ----------
    arch : str
        ``"timm:<name>"`` or ``"package.module:factory"`` (see `parse_spec`).
    kwargs : mapping
        Keyword arguments for the factory, e.g. ``{"num_classes": 10, "in_chans": 1}``.
    checkpoint : str, optional
        A ``.safetensors`` file or a tensor-only ``torch.save`` file (see `zooscope.nets.models.load_checkpoint`).
    """

    arch: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", {})
        elif not isinstance(self.kwargs, Mapping):
            raise ZooscopeInputError(f"The kwargs of {self.arch!r} must be a mapping; got {self.kwargs!r}.")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            object.__setattr__(self, "checkpoint", os.fspath(self.checkpoint))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelSpec:
        """The spec of a catalog model row (its arch is stored under ``"spec"``, a stored column name)."""
        return cls(row["spec"], row.get("kwargs") or {}, row.get("checkpoint"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """The spec of a ``{"arch", "kwargs", "checkpoint"}`` dict (a Task2Vec probe-net setting)."""
        return cls(d["arch"], d.get("kwargs") or {}, d.get("checkpoint"))

    def with_checkpoint(self, checkpoint: str | Path | None) -> ModelSpec:
        """The same arch and kwargs with another checkpoint (``None``: freshly initialised weights)."""
        return ModelSpec(self.arch, self.kwargs, None if checkpoint is None else os.fspath(checkpoint))

    def build(self, *, pretrained: bool = False) -> nn.Module:
        """Build the network and load the checkpoint, if any (`zooscope.nets.models.build_model`)."""
        from zooscope.nets.models import build_model

        return build_model(self.arch, self.kwargs, self.checkpoint, pretrained=pretrained)
