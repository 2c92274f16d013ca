"""Build an ``nn.Module`` from an arch string (``timm:<name>`` or ``package.module:factory``), load checkpoints safely.

An arch string names an architecture; kwargs configure it; a checkpoint fills its weights; the three together are a
`ModelSpec`, whose ``.build()`` calls `build_model`. Checkpoints are read with
safetensors, or with ``torch.load(weights_only=True)``: nothing user-supplied is ever unpickled as code.

>>> model = build_model("zooscope.nets.models:small_cnn", {"width": 8})
>>> sum(p.numel() for p in model.parameters()) > 0
True
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.nets.arch import ArchRef, parse_spec, resolve_module

__all__ = [
    "ModelSpec",
    "build_model",
    "module_names",
    "load_checkpoint",
    "mlp",
    "penultimate_layer",
    "save_checkpoint",
    "small_cnn",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One network to build: an arch string, the kwargs of its factory and optionally a checkpoint.

    Attributes
    ----------
    arch : str
        ``"timm:<name>"`` or ``"package.module:factory"`` (see `zooscope.nets.arch.parse_spec`).
    kwargs : mapping
        Keyword arguments for the factory, e.g. ``{"num_classes": 10, "in_chans": 1}``.
    checkpoint : str, optional
        A ``.safetensors`` file or a tensor-only ``torch.save`` file (see `load_checkpoint`).
    """

    arch: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        """Default ``kwargs`` to an empty dict."""
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", {})
        elif not isinstance(self.kwargs, Mapping):
            raise ZooscopeInputError(f"The kwargs of {self.arch!r} must be a mapping; got {self.kwargs!r}.")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            object.__setattr__(self, "checkpoint", os.fspath(self.checkpoint))

    @classmethod
    def from_row(cls, row: Any) -> ModelSpec:
        """Return the spec of a catalog model row.

        A record with ``spec``/``kwargs``/``checkpoint`` attributes, or a mapping with those keys (the arch is
        stored under ``"spec"``, a stored column name).
        """
        if not isinstance(row, Mapping):
            return cls(row.spec, row.kwargs or {}, row.checkpoint)
        return cls(row["spec"], row.get("kwargs") or {}, row.get("checkpoint"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Return the spec of a ``{"arch", "kwargs", "checkpoint"}`` dict (a Task2Vec probe-net setting)."""
        return cls(d["arch"], d.get("kwargs") or {}, d.get("checkpoint"))

    def build(self, *, pretrained: bool = False) -> nn.Module:
        """Build the network and load the checkpoint, if any (`build_model`)."""
        return build_model(self.arch, self.kwargs, self.checkpoint, pretrained=pretrained)


def build_model(
    arch: str,
    kwargs: Mapping[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    *,
    pretrained: bool = False,
) -> nn.Module:
    """Build the network an arch string names, optionally loading a checkpoint.

    Parameters
    ----------
    arch : str
        ``"timm:<name>"`` (via ``timm.create_model``) or ``"package.module:factory"`` (any callable
        returning an ``nn.Module``).
    kwargs : mapping, optional
        Keyword arguments for the factory, e.g. ``{"num_classes": 10, "in_chans": 1}``.
    checkpoint : path, optional
        A ``.safetensors`` file, or a ``torch.save``-d state dict read with ``weights_only=True``.
    pretrained : bool, default=False
        timm only: download the published weights (needs the network; set ``HF_HUB_OFFLINE=1`` to fail fast).

    Returns
    -------
    torch.nn.Module
        The model on the CPU, in whatever mode the factory left it (``compare`` switches to eval itself).

    Raises
    ------
    ZooscopeInputError
        Bad spec, unknown timm name (with close matches), missing module or factory, a factory that does
        not return an ``nn.Module``, or a checkpoint that does not fit (see `load_checkpoint`).
    """
    parsed = parse_spec(arch)
    kwargs = dict(kwargs or {})
    if parsed.source == "timm":
        model = _build_timm(parsed.name, kwargs, pretrained)
    else:
        if pretrained:
            raise ZooscopeInputError(
                f"pretrained=True works only for timm: specs; for {arch!r} pass the weights as a checkpoint."
            )
        model = _build_python(parsed, kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


def module_names(arch: str, kwargs: Mapping[str, Any] | None = None) -> list[str] | None:
    """Return the module names of the network ``arch`` builds, from a skeleton on the meta device.

    No weights are read and no memory is used, so that layer names can be checked before anything loads.

    An unknown timm name or a factory that rejects ``kwargs`` raises `ZooscopeInputError` as `build_model`
    does; a factory that cannot build on the meta device gives ``None`` (the layers are then checked later).
    """
    parsed = parse_spec(arch)
    kwargs = dict(kwargs or {})
    try:
        with torch.device("meta"):
            model = _build_timm(parsed.name, kwargs, False) if parsed.source == "timm" \
                else _build_python(parsed, kwargs)
    except ZooscopeInputError:
        raise
    except Exception:  # e.g. a factory that reads data or moves tensors to a device itself
        return None
    return [n for n, _ in model.named_modules() if n]


def _build_timm(name: str, kwargs: dict[str, Any], pretrained: bool) -> nn.Module:
    import timm

    if not timm.is_model(name):
        near = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ZooscopeInputError(
            f"Unknown timm model {name!r}.{hint} List them with timm.list_models('{name[:4]}*')."
        )
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:
        raise ZooscopeInputError(f"timm.create_model({name!r}, **{kwargs}) rejected the kwargs: {e}") from e


def _build_python(spec: ArchRef, kwargs: dict[str, Any]) -> nn.Module:
    try:
        obj: Any = importlib.import_module(resolve_module(spec.module))
    except ModuleNotFoundError as e:
        raise ZooscopeInputError(
            f"Cannot import {spec.module!r} for model spec '{spec}': {e}. Install the package or fix the path."
        ) from e
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            near = difflib.get_close_matches(part, names, n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ZooscopeInputError(f"{spec.module!r} has no attribute {part!r} (model spec '{spec}').{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ZooscopeInputError(f"'{spec}' is not callable; a model spec must name a factory or class.")
    try:
        inspect.signature(obj).bind(**kwargs)
    except TypeError as e:
        raise ZooscopeInputError(f"'{spec}' does not accept the kwargs {kwargs}: {e}. Fix the kwargs.") from e
    except ValueError:  # no introspectable signature (some builtins): let the call decide
        pass
    model = obj(**kwargs)
    if not isinstance(model, nn.Module):
        raise ZooscopeInputError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module.")
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise ZooscopeInputError(f"Cannot read {path} as safetensors: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ZooscopeInputError(
            f"Refused to load {path}: it is not a plain tensor checkpoint and unpickling it could run code "
            f"({first}). Re-save the weights with safetensors (safetensors.torch.save_file(model.state_dict(), "
            f"'w.safetensors')) in a trusted environment."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ZooscopeInputError(f"Cannot read checkpoint {path}: {e}") from e
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a state dict or the common wrappers {'state_dict': …}, {'model': …}."""
    for _ in range(2):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = [k for k in ("state_dict", "model_state_dict", "model", "module") if k in obj]
            if inner:
                obj = obj[inner[0]]
                continue
        raise ZooscopeInputError(
            f"{path} does not hold a state dict (a mapping of names to tensors); found {type(obj).__name__}"
            f"{' with keys ' + ', '.join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ''}."
        )
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f", … ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Load weights into ``model`` in place, strictly, with a clear error on any mismatch.

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built architecture.
    checkpoint : path
        ``.safetensors``, or any other suffix read with ``torch.load(weights_only=True)``; a
        ``{"state_dict": …}`` / ``{"model": …}`` wrapper and a DataParallel ``module.`` prefix are accepted.

    Returns
    -------
    torch.nn.Module
        ``model``, for chaining.

    Raises
    ------
    ZooscopeInputError
        Missing file; a pickle that would need arbitrary code to load (refused, never executed); missing,
        unexpected or wrongly shaped keys (all listed); integer or bool values for floating-point weights.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise ZooscopeInputError(f"Checkpoint {path} does not exist.")
    sd = _read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:  # tied weights are saved once (safetensors drops aliases): a present alias is enough
        ptrs = {own[k].data_ptr() for k in own if k in sd and own[k].numel()}
        missing = [k for k in missing if not (own[k].numel() and own[k].data_ptr() in ptrs)]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    casts = [f"{k} {str(sd[k].dtype).removeprefix('torch.')}" for k in own
             if k in sd and own[k].is_floating_point() and not (sd[k].is_floating_point() or sd[k].is_complex())]
    if casts:  # int8 / bool values in float weights: quantised or damaged; a silent cast would give a dead model
        raise ZooscopeInputError(
            f"Checkpoint {path.name} stores integer or bool values for floating-point weights ({_listing(casts, 5)}): "
            "quantised or damaged weights are refused, not cast. Save the float (dequantised) weights, e.g. "
            "{k: v.float() for k, v in state_dict.items()} after dequantising.")
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_listing(shapes, 5)}")
        raise ZooscopeInputError(
            f"Checkpoint {path.name} does not fit {type(model).__name__}: {'; '.join(parts)}. Check the "
            "architecture spec and its kwargs (e.g. num_classes, in_chans) match the ones used in training."
        )
    model.load_state_dict(sd, strict=False)  # strictness checked above, with aliases allowed for
    log.debug("loaded %s (%d tensors) into %s", path, len(sd), type(model).__name__)
    return model


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s weights as safetensors (tied weights are stored once); returns the path."""
    from safetensors.torch import save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path))
    return path


class _Net(nn.Sequential):
    """A plain Sequential that declares its layers the timm way (``feature_info``) and its head."""

    def __init__(self, blocks: Mapping[str, nn.Module], features: Sequence[str], head: str) -> None:
        super().__init__(OrderedDict(blocks))  # named children, in order
        self.feature_info = [{"module": n} for n in features]
        self._head = head

    def get_classifier(self) -> nn.Module:
        """Return the final linear layer (read by `zooscope.embed.capture.default_layers`)."""
        return getattr(self, self._head)


def _seeded(seed: int | None) -> contextlib.AbstractContextManager[Any]:
    return torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()


def small_cnn(in_chans: int = 1, num_classes: int = 10, width: int = 16, seed: int | None = None,
              img_size: int = 28) -> nn.Module:
    """Return a 4-layer CNN: conv 3×3 (in→w) · conv 3×3 s2 (w→2w) · conv 3×3 s2 (2w→2w) · linear → classes.

    Each conv is followed by a ReLU inside its named block, so the layers ``conv1``, ``conv2``, ``conv3``
    and ``fc`` are post-activation outputs (``fc`` gives the logits). With 28×28 inputs and ``width=16``
    they have 12,544, 6,272, 1,568 and 10 features per example (the benchmark workload).

    Parameters
    ----------
    in_chans : int, default=1
    num_classes : int, default=10
    width : int, default=16
    seed : int, optional
        Initialise from this torch seed without touching the global RNG state.
    img_size : int, default=28
        Input height = width, used to size the linear layer.

    Returns
    -------
    torch.nn.Module
        Takes (batch, in_chans, img_size, img_size) float32 input.
    """
    side = (img_size + 1) // 2  # stride-2 conv with padding 1: ceil(s / 2)
    side = (side + 1) // 2
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        blocks = {
            "conv1": nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU()),
            "conv2": nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
            "conv3": nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
            "flatten": nn.Flatten(),
            "fc": nn.Linear(2 * width * side * side, num_classes),
        }
        return _Net(blocks, features=("conv1", "conv2", "conv3"), head="fc")


def mlp(in_features: int = 40, hidden: Sequence[int] = (64, 64), num_classes: int = 10,
        seed: int | None = None) -> nn.Module:
    """Return a ReLU MLP for 1-D data such as mnist1d: layers ``fc1``, ``fc2``, … (post-ReLU) and ``head`` (logits).

    Parameters
    ----------
    in_features : int, default=40
    hidden : sequence of int, default=(64, 64)
    num_classes : int, default=10
    seed : int, optional
        Initialise from this torch seed without touching the global RNG state.

    Returns
    -------
    torch.nn.Module
        Takes (batch, in_features) float32 input.
    """
    with _seeded(seed):
        if seed is not None:
            torch.manual_seed(seed)
        blocks: dict[str, nn.Module] = {"flatten": nn.Flatten()}  # (B, 40) and (B, 1, 40) alike
        width = in_features
        for i, h in enumerate(hidden, 1):
            blocks[f"fc{i}"] = nn.Sequential(nn.Linear(width, int(h)), nn.ReLU())
            width = int(h)
        features = [b for b in blocks if b != "flatten"]
        blocks["head"] = nn.Linear(width, num_classes)
        return _Net(blocks, features=features, head="head")


def penultimate_layer(model: Any, layers: list[str]) -> str:
    """Return the layer the zoo compares models at by default.

    Rule: the last captured layer that is not the classifier (``model.get_classifier()``, as timm models and
    zooscope's factories expose it); without a ``get_classifier``, the last but one captured layer when the last
    is an ``nn.Linear`` (taken to be the head), else the last layer.
    """
    if not layers:
        raise ZooscopeInputError("The model has no captured layers.")
    names = {id(m): n for n, m in model.named_modules() if n}
    head_name = None
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        if isinstance(head, nn.Module):
            head_name = names.get(id(head))
    elif len(layers) > 1 and isinstance(dict(model.named_modules()).get(layers[-1]), nn.Linear):
        head_name = layers[-1]
    rest = [name for name in layers if name != head_name]
    return rest[-1] if rest else layers[-1]
