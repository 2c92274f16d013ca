"""The features a model's classifier sees ("pre-logits"), for transferability scores and fine-tuning.

Two feature rules, named for what they take:

``prelogits`` (transferability scores: LogME, H-score, linear probe, …)
    The classifier's input: the pooled, flattened vector the final linear layer maps to logits.

    1. timm-style models (``forward_features`` and ``forward_head`` accepting ``pre_logits=``):
       ``forward_head(forward_features(x), pre_logits=True)``, exactly what timm documents as pre-logits
       (global pool, then any head norm / pre-logits MLP; dropout is off in eval mode).
    2. Any other model: a forward *pre*-hook on the classifier module records its input (flattened per example).
       The classifier is ``model.get_classifier()`` when the model has one (timm, zooscope's ``small_cnn`` and
       ``mlp``) and it is a real module found in ``named_modules``; otherwise the **last ``nn.Linear`` in
       ``named_modules`` order**. A model with neither raises `ZooscopeInputError` asking for ``layer=``.
    3. Override with ``layer=``: a module name (its *output*, flattened per example, is taken) or a callable
       ``layer(model, x_batch) -> Tensor (batch, ...)``.

``spatial_map`` (CKA signatures, `zooscope.embed.compare`)
    The output of the last feature stage before pooling (timm ``forward_features``; otherwise the last
    non-classifier layer of `zooscope.embed.capture.default_layers`), flattened. It keeps the spatial layout, which
    is what representation similarity compares; it is *not* what a linear head on top of the model sees.

`classifier_module` and `replace_classifier` use the same rule for the head, so "the features scored" and "the layer a
fine-tune replaces" are one definition.

>>> from zooscope.nets.models import small_cnn
>>> import torch
>>> f, logits = prelogits_features(small_cnn(width=4, seed=0), torch.zeros(3, 1, 28, 28))
>>> f.shape, logits.shape
((3, 392), (3, 10))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError

__all__ = ["FEATURE_RULES", "classifier_module", "features", "prelogits_features", "replace_classifier",
           "spatial_map_features"]

FEATURE_RULES = ("prelogits", "spatial_map")

Layer = str | Callable[[nn.Module, torch.Tensor], torch.Tensor] | None


def classifier_module(model: nn.Module) -> tuple[str, nn.Linear | nn.Module] | None:
    """Return the model's classifier as ``(name, module)``, or None when it has none.

    Rule: ``model.get_classifier()`` when that exists and returns a module registered in ``named_modules``
    other than ``nn.Identity`` (a timm model built with ``num_classes=0`` has no head); else the last ``nn.Linear``
    in ``named_modules`` order; else None.
    """
    names = {id(m): n for n, m in model.named_modules() if n}
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # a get_classifier that needs arguments or fails: use the generic rule
            head = None
        if isinstance(head, nn.Identity):
            return None
        if isinstance(head, nn.Module) and id(head) in names:
            return names[id(head)], head
    linears = [(n, m) for n, m in model.named_modules() if n and isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _is_timm_like(model: nn.Module) -> bool:
    ff, fh = getattr(model, "forward_features", None), getattr(model, "forward_head", None)
    if not (callable(ff) and callable(fh)):
        return False
    try:
        return "pre_logits" in inspect.signature(fh).parameters
    except (TypeError, ValueError):
        return False


def _batches(x: Any, batch_size: int) -> list[torch.Tensor]:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ZooscopeInputError(f"prelogits_features needs a tensor or array of inputs; got {type(x).__name__}.")
    if x.ndim < 2 or len(x) == 0:
        raise ZooscopeInputError(f"prelogits_features needs a batch of inputs (N, ...); got shape {tuple(x.shape)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ZooscopeInputError(f"'batch_size' must be an int >= 1; got {batch_size!r}.")
    x = x.float()
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def _logits_or_none(out: Any, has_head: bool) -> torch.Tensor | None:
    if not has_head or not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        return None
    return out


def prelogits_features(model: nn.Module, x: Any, batch_size: int = 256,
                       layer: Layer = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the classifier's input features (and the logits) of ``model`` on ``x``, in eval mode, without gradients.

    Parameters
    ----------
    model : torch.nn.Module
    x : Tensor or ndarray of shape (N, ...)
    batch_size : int, default=256
    layer : str or callable, optional
        Override the rule (module docstring): a module name whose output is taken, or
        ``layer(model, x_batch) -> Tensor``.

    Returns
    -------
    features : ndarray of shape (N, p), float64
    logits : ndarray of shape (N, C), float64, or None
        The model's outputs when it has a classifier head (``C >= 2``), else None.

    Raises
    ------
    ZooscopeInputError
        No classifier found and no ``layer`` given; an unknown layer name; bad inputs.
    """
    batches = _batches(x, batch_size)
    head = classifier_module(model)
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] | None = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if layer is None and _is_timm_like(model):
                for b in batches:
                    ff = model.forward_features(b)
                    feats.append(model.forward_head(ff, pre_logits=True).flatten(1))
                    out = model.forward_head(ff) if head is not None else None
                    lo = _logits_or_none(out, head is not None)
                    logits = None if lo is None or logits is None else [*logits, lo]
            else:
                feats, logits = _hooked(model, batches, layer, head)
    finally:
        model.train(was_training)
    f = torch.cat(feats).double().numpy()
    return f, (torch.cat(logits).double().numpy() if logits else None)


def _hooked(model: nn.Module, batches: list[torch.Tensor], layer: Layer,
            head: tuple[str, nn.Module] | None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] | None = []
    if callable(layer):
        for b in batches:
            feats.append(torch.as_tensor(layer(model, b)).flatten(1))
            lo = _logits_or_none(model(b), head is not None)
            logits = None if lo is None or logits is None else [*logits, lo]
        return feats, logits
    modules = dict(model.named_modules())
    if layer is not None:
        if not isinstance(layer, str) or layer not in modules or not layer:
            near = ", ".join(n for n in list(modules)[1:30])
            raise ZooscopeInputError(f"layer={layer!r} is not a module of {type(model).__name__}; valid names "
                                     f"include: {near}.")
        seen: list[torch.Tensor] = []
        handle = modules[layer].register_forward_hook(lambda _m, _i, o: seen.append(o))
    else:
        if head is None:
            raise ZooscopeInputError(
                f"{type(model).__name__} has no get_classifier() and no nn.Linear, so its pre-logits features are "
                "undefined. Pass layer='<module name>' (or a callable) to choose the features.")
        seen = []
        handle = head[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        for b in batches:
            seen.clear()
            out = model(b)
            if not seen:
                raise ZooscopeInputError(f"The forward pass of {type(model).__name__} never called "
                                         f"{layer or head[0]!r}; pass layer= to choose the features.")
            feats.append(torch.as_tensor(seen[-1 if layer is None else 0]).flatten(1))
            lo = _logits_or_none(out, head is not None)
            logits = None if lo is None or logits is None else [*logits, lo]
    finally:
        handle.remove()
    return feats, logits


def spatial_map_features(model: nn.Module, x: Any, batch_size: int = 256) -> np.ndarray:
    """Return the ``spatial_map`` rule: the last feature stage before pooling, flattened (N, C·H·W), float64."""
    batches = _batches(x, batch_size)
    if _is_timm_like(model):
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = [model.forward_features(b).flatten(1) for b in batches]
        finally:
            model.train(was_training)
        return torch.cat(out).double().numpy()
    from zooscope.embed.capture import default_layers

    head = classifier_module(model)
    layers = [n for n in default_layers(model) if head is None or n != head[0]]
    if not layers:
        raise ZooscopeInputError(f"{type(model).__name__} has no feature layer before its classifier.")
    return prelogits_features(model, torch.cat(batches), batch_size, layer=layers[-1])[0]


def features(model: nn.Module, x: Any, rule: str = "prelogits", batch_size: int = 256) -> np.ndarray:
    """Features of ``model`` on ``x`` by a named rule: ``"prelogits"`` or ``"spatial_map"`` (module docstring)."""
    from zooscope._validation import check_choice

    rule = check_choice(rule, FEATURE_RULES, "rule", "features")
    if rule == "prelogits":
        return prelogits_features(model, x, batch_size)[0]
    return spatial_map_features(model, x, batch_size)


def replace_classifier(model: nn.Module, num_classes: int, *, seed: int | None = None) -> nn.Module:
    """Replace the classifier (same rule as `classifier_module`) by a fresh ``nn.Linear`` to ``num_classes``.

    timm models use ``reset_classifier(num_classes)``; others get ``nn.Linear(in_features, num_classes)`` set on
    the head's parent module. ``seed`` fixes the new layer's initialisation without touching the global RNG.
    Returns ``model`` (changed in place).
    """
    head = classifier_module(model)
    if head is None:
        raise ZooscopeInputError(f"{type(model).__name__} has no classifier to replace (no get_classifier(), "
                                 "no nn.Linear).")
    name, module = head
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        if _is_timm_like(model) and callable(getattr(model, "reset_classifier", None)):
            model.reset_classifier(int(num_classes))
            return model
        if not isinstance(module, nn.Linear):
            raise ZooscopeInputError(f"The classifier {name!r} is a {type(module).__name__}, not nn.Linear; "
                                     "replace it by hand.")
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Linear(module.in_features, int(num_classes), bias=module.bias is not None))
    return model
