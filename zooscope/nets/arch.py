"""Arch strings: the grammar of ``"timm:<name>"`` and ``"package.module:factory"``, and moved factory modules.

Names. The *arch* is the string naming an architecture; the *spec* is the arch with the kwargs that configure it
and the checkpoint that fills its weights, a `zooscope.nets.models.ModelSpec`. Two stored formats keep their
historical keys: a catalog model row stores the arch under ``"spec"``, a Task2Vec probe-net setting under
``"arch"``; `ModelSpec.from_row` and `ModelSpec.from_dict` read them. This module does not import torch.

Moved factories. Arch strings are data (catalog rows, request hashes, scripts, user commands), so a factory module
that moved keeps its old name: ``zooscope.zoo.models:small_cnn`` still builds ``zooscope.nets.models:small_cnn``
(`MOVED_MODULES`). The stored text is never rewritten, so existing zoos and their vectors stay current.

>>> str(parse_spec("zooscope.zoo.models:small_cnn")), resolve_module("zooscope.zoo.models")
('zooscope.zoo.models:small_cnn', 'zooscope.nets.models')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from zooscope._validation import ZooscopeInputError

__all__ = ["MOVED_MODULES", "ArchRef", "parse_spec", "resolve_module"]

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
        """Return the spec as typed (``module:name``)."""
        return f"{self.module}:{self.name}"


def resolve_module(module: str) -> str:
    """Return the module to import for a factory module path: its new home if it moved (`MOVED_MODULES`), else itself.

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


#: zooscope's own network factories (module -> names): a spec naming one of them (or a ``timm:`` name) runs no
#: code beyond zooscope and timm, so it may arrive from an export folder. Other callables of those modules
#: (``build_model``, ``load_checkpoint``) are not factories: ``build_model`` would build any spec it is given.
REGISTERED_FACTORIES: Mapping[str, tuple[str, ...]] = {"zooscope.nets.models": ("small_cnn", "mlp")}


def is_registered_spec(spec: str) -> bool:
    """Whether ``spec`` names a ``timm:`` model or a factory of zooscope's own (`REGISTERED_FACTORIES`).

    Any other ``package.module:factory`` imports and runs code the user did not type here (e.g. from an export
    folder); `zooscope.zoo.transfer_io.import_zoo` refuses those unless ``trust_code=True``.

    >>> is_registered_spec("timm:resnet18"), is_registered_spec("zooscope.zoo.models:small_cnn")
    (True, True)
    >>> is_registered_spec("subprocess:run"), is_registered_spec("zooscope.nets.models:build_model")
    (False, False)
    """
    try:
        ref = parse_spec(spec)
    except ZooscopeInputError:
        return False
    if ref.source == "timm":
        return True
    return ref.name in REGISTERED_FACTORIES.get(resolve_module(ref.module), ())
