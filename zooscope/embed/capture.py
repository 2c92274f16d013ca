"""Capture layer activations from any ``nn.Module`` with forward hooks, by module name.

One hooked forward pass per batch records every requested layer. Hooks are removed and the model's
train/eval flags restored afterwards, even when the forward pass raises.

Flattening policy (``flatten=``), per example:

* ``"full"``: every value, in C·H·W order for conv maps, T·D for token sequences → (batch, C·H·W).
* ``"spatial_mean"``: average over the spatial positions → (batch, C). A 4-D output (B, C, H, W) is averaged
  over H, W (NCHW is assumed, as in timm CNNs); a 3-D output (B, T, D) of a transformer block is averaged
  over its T tokens (including any class token); 2-D outputs are kept as they are.
* ``"none"``: the raw output shape (batch, …).

>>> import torch
>>> from zooscope.nets.models import small_cnn
>>> acts = capture(small_cnn(seed=0), torch.randn(6, 1, 28, 28), batch_size=4)
>>> {k: tuple(v.shape) for k, v in acts.items()}
{'conv1': (6, 12544), 'conv2': (6, 6272), 'conv3': (6, 1568), 'fc': (6, 10)}
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zooscope._progress import track
from zooscope._validation import ZooscopeInputError, check_choice, unknown_name_error

__all__ = [
    "Flatten",
    "capture",
    "default_layers",
    "iter_activations",
    "iter_batches",
    "load_inputs",
    "n_examples",
    "on_device",
    "resolve_data",
    "resolve_layers",
]

log = logging.getLogger(__name__)

Flatten = Literal["full", "spatial_mean", "none"]
_LEAF_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def default_layers(model: nn.Module) -> list[str]:
    """Return the layers `compare` uses when none are given.

    Rule: a model with a timm-style ``feature_info`` (every timm model, and zooscope's own ``small_cnn`` and
    ``mlp``) gives its feature-stage modules, in order, followed by its classifier (``get_classifier()``,
    the logits) when that is a real module; the classifier costs nothing extra since the forward pass runs
    anyway. Any other model gives its leaf Conv, Linear and normalisation modules in ``named_modules``
    order.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of str
        Module names accepted by `resolve_layers`.
    """
    names = {id(m): n for n, m in model.named_modules() if n}
    layers: list[str] = []
    info = getattr(model, "feature_info", None)
    if info is not None:
        entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
        layers = [e["module"] for e in entries if isinstance(e, dict) and e.get("module") in names.values()]
    if layers:
        get_classifier = getattr(model, "get_classifier", None)
        head = get_classifier() if callable(get_classifier) else None
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity) and id(head) in names:
            if names[id(head)] not in layers:
                layers.append(names[id(head)])
        return layers
    layers = [n for n, m in model.named_modules() if n and isinstance(m, _LEAF_TYPES)]
    if not layers:
        raise ZooscopeInputError(
            f"{type(model).__name__} has no Conv/Linear/Norm modules to default to; pass layers explicitly "
            f"(valid: {', '.join(list(names.values())[:30])})."
        )
    return layers


def resolve_layers(model: nn.Module, layers: Sequence[str] | str | None = None) -> list[str]:
    """Check layer names against ``model.named_modules()``; ``None`` gives `default_layers`.

    Parameters
    ----------
    model : torch.nn.Module
    layers : sequence of str or str, optional
        Module names (``"layer1.0"``); a single string may be comma-separated.

    Returns
    -------
    list of str
        The names, in the given order, without duplicates.

    Raises
    ------
    ZooscopeInputError
        "Unknown layer 'layer5'. … Valid: conv1, bn1, layer1.0, …" for a name that is not a module.
    """
    if layers is None:
        return default_layers(model)
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    valid = [n for n, _ in model.named_modules() if n]
    known = set(valid)
    out: list[str] = []
    for name in layers:
        if name not in known:
            raise unknown_name_error("layer", name, valid)
        if name not in out:
            out.append(name)
    if not out:
        raise ZooscopeInputError("No layers given; pass module names, or None for the defaults.")
    return out


def load_inputs(spec: str | os.PathLike, n: int | None = None, *, seed: int = 0,
                split: str = "train") -> torch.Tensor:
    """Input tensor (n, ...) of a dataset spec, as ``zooscope compare --data`` reads it.

    Parameters
    ----------
    spec : str or path
        ``builtin:digits``, ``builtin:mnist5k``, ``builtin:mnist1d``, a ``.npz``/``.npy`` file, an ImageFolder
        directory or a saved Hugging Face dataset folder (the grammar of ``zooscope.nets.datasets.load_dataset``).
    n : int, optional
        A seeded, class-stratified subset of this many examples when the dataset is larger; None keeps all.
    seed : int, default=0
        Seed of the subset (and of generated datasets).
    split : {"train", "test", "all"}, default="train"

    Returns
    -------
    torch.Tensor of shape (n, ...)
    """
    from zooscope.nets.datasets import load_dataset, probe_subset

    ds = load_dataset(os.fspath(spec), split=split, seed=seed)
    if n is not None and len(ds) > n:
        ds = probe_subset(ds, n, seed=seed)
    return ds.x


def resolve_data(data: Any) -> Any:
    """Return ``data`` as `iter_batches` takes it: a dataset spec (str or path) is loaded whole with `load_inputs`."""
    if isinstance(data, (str, os.PathLike)):
        return load_inputs(data)
    return data


def n_examples(data: Any) -> int | None:
    """Return number of examples in ``data`` if it is known without iterating (else None)."""
    if isinstance(data, DataLoader):
        try:
            return len(data.dataset)  # type: ignore[arg-type]
        except TypeError:
            return None
    if hasattr(data, "x") and isinstance(data.x, torch.Tensor):
        return int(data.x.shape[0])
    try:
        return len(data)
    except TypeError:
        return None


def _as_input(x: Any) -> torch.Tensor:
    if isinstance(x, (tuple, list)):  # (x, y) pairs from a labelled DataLoader
        if not x:
            raise ZooscopeInputError("A batch from the DataLoader is empty.")
        x = x[0]
    if isinstance(x, dict):
        keys = [k for k in ("x", "pixel_values", "image", "input") if k in x]
        if not keys:
            raise ZooscopeInputError(f"Batches are dicts with keys {list(x)}; zooscope needs an 'x' key.")
        x = x[keys[0]]
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise ZooscopeInputError(f"A batch must be a tensor or an (x, y) tuple; got {type(x).__name__}.")
    return x


def iter_batches(data: Any, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """Yield input tensors, in order, from whatever holds the data.

    Parameters
    ----------
    data : DataLoader, Dataset, Tensor, numpy array, or an object with a tensor attribute ``x``
        A DataLoader is used as it is (its own batch size); its batches may be ``x`` or ``(x, y, …)``.
        A map-style Dataset is batched in order; tensors and arrays are sliced along axis 0 (arrays become
        float32).
    batch_size : int, default=256
        Examples per batch, except for a DataLoader.

    Yields
    ------
    torch.Tensor of shape (batch, ...)
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ZooscopeInputError(f"'batch_size' must be a positive integer; got {batch_size!r}.")
    if hasattr(data, "x") and isinstance(data.x, torch.Tensor) and not isinstance(data, torch.Tensor):
        data = data.x  # zooscope.nets.datasets.DatasetTensors
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if isinstance(data, torch.Tensor):
        if data.ndim == 0 or data.shape[0] == 0:
            raise ZooscopeInputError(f"data must hold at least one example; got shape {tuple(data.shape)}.")
        for start in range(0, data.shape[0], batch_size):
            yield data[start:start + batch_size]
        return
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader) or isinstance(data, Iterable):
        for batch in data:
            yield _as_input(batch)
        return
    raise ZooscopeInputError(
        f"data must be a DataLoader, Dataset, torch.Tensor or numpy array; got {type(data).__name__}."
    )


def _flatten(out: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return out
    if how == "spatial_mean" and out.ndim == 4:
        return out.mean(dim=(2, 3))
    if how == "spatial_mean" and out.ndim == 3:
        return out.mean(dim=1)  # (B, T, D): average the tokens
    return out.reshape(out.shape[0], -1)


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # e.g. (hidden, attention) pairs
    return None


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def iter_activations(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    layers: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    flatten: Flatten = "full",
) -> Iterator[dict[str, torch.Tensor]]:
    """Run one hooked forward pass per batch and yield that batch's activations of every layer.

    The model is put in eval mode (every module's previous train/eval flag is restored at the end), each
    forward runs under ``torch.no_grad()``, and the hooks are removed when the generator finishes, raises or
    is closed. Layer names are not checked here: call `resolve_layers` first.

    Parameters
    ----------
    model : torch.nn.Module
        Must already be on ``device``.
    batches : iterable of torch.Tensor of shape (batch, ...)
        E.g. ``iter_batches(data, 256)``. Floating inputs are cast to the model's parameter dtype.
    layers : sequence of str
        Module names.
    device : str or torch.device, default="cpu"
    flatten : {"full", "spatial_mean", "none"}, default="full"
        See the module docstring.

    Yields
    ------
    dict of str to torch.Tensor
        ``{layer: (batch, n_features)}`` (or the raw shape for ``"none"``), detached copies on ``device``
        (copies, so that later in-place operations in the forward pass cannot change them).

    Raises
    ------
    ZooscopeInputError
        A layer that the forward pass never ran, or ran more than once (its output is ambiguous).
    """
    check_choice(flatten, ("full", "spatial_mean", "none"), "flatten", "capture")
    modules = dict(model.named_modules())
    by_module: dict[int, list[str]] = {}
    for name in layers:
        by_module.setdefault(id(modules[name]), []).append(name)
    store: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def make_hook(names: list[str]) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            t = _first_tensor(output)
            for name in names:
                calls[name] = calls.get(name, 0) + 1
                if t is None:
                    raise ZooscopeInputError(
                        f"Layer {name!r} returned {type(output).__name__}, not a tensor; choose a module "
                        "whose output is a tensor (e.g. one of its children).")
                store[name] = _flatten(t.detach(), flatten).clone()
        return hook

    modes = [(m, m.training) for m in model.modules()]
    dtype = _model_dtype(model)
    handles = [modules[names[0]].register_forward_hook(make_hook(names)) for names in by_module.values()]
    try:
        model.eval()
        for x in batches:
            x = x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
            store.clear()
            calls.clear()
            try:
                with torch.no_grad():
                    model(x)
            except RuntimeError as e:  # almost always inputs that do not fit the model
                raise ZooscopeInputError(
                    f"{type(model).__name__} failed on a batch of shape {tuple(x.shape)}: "
                    f"{str(e).strip().splitlines()[0]}. Check that the data fits the model (channels, "
                    "image size, input features).") from e
            for name in layers:
                if calls.get(name, 0) != 1:
                    what = "never ran" if name not in calls else f"ran {calls[name]} times"
                    raise ZooscopeInputError(
                        f"Layer {name!r} {what} in one forward pass of {type(model).__name__}, so it has no "
                        "single activation; choose a module that runs exactly once (e.g. its parent block).")
            yield {name: store[name] for name in layers}
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:  # per module: model.train(flag) would overwrite e.g. frozen BN layers
            m.training = training


def capture(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | str | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    flatten: Flatten = "full",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for every example of ``data``, concatenated over batches.

    Parameters
    ----------
    model : torch.nn.Module
        Moved to ``device`` for the call and moved back to its original device afterwards.
    data : DataLoader, Dataset, Tensor, numpy array or dataset spec (str or path)
        See `iter_batches`; a spec is read whole with `load_inputs`.
    layers : sequence of str or str, optional
        Module names; default `default_layers`.
    batch_size : int, default=256
    device : str or torch.device, default="cpu"
    flatten : {"full", "spatial_mean", "none"}, default="full"
        See the module docstring.
    progress : bool, default=False
        Show a progress bar over batches on stderr.

    Returns
    -------
    dict of str to torch.Tensor
        ``{layer: (n_examples, n_features)}`` on ``device``, in ``layers`` order.
    """
    names = resolve_layers(model, layers)
    data = resolve_data(data)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    n = n_examples(data)
    total = math.ceil(n / batch_size) if n is not None and not isinstance(data, DataLoader) else None
    with on_device(model, device):
        acts = iter_activations(model, iter_batches(data, batch_size), names, device=device, flatten=flatten)
        try:
            for batch in track(acts, total=total, description="capturing", enabled=progress):
                for name in names:
                    chunks[name].append(batch[name])
        finally:
            acts.close()
    return {name: torch.cat(parts) for name, parts in chunks.items()}


@contextlib.contextmanager
def on_device(model: nn.Module, device: str | torch.device) -> Iterator[nn.Module]:
    """Move ``model`` to ``device`` for the ``with`` block and back to where it was afterwards."""
    device = torch.device(device)
    p = next(iter(model.parameters()), None)
    home = p.device if p is not None else device
    if home != device:
        model.to(device)
    try:
        yield model
    finally:
        if home != device:
            model.to(home)
