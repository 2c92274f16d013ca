"""Activation gradients of a label-free score, and per-sample parameter gradients (torch.func).

Tang et al. (2020) describe an input x at layer l by two vectors: the activation f_l(x) and the gradient

    g_l(x) = d/d f_l  sum_c q_c(x) log p_c(x),      p = softmax(logits),   q = p^beta / sum_c p_c^beta,

with q held constant (the reference passes it as ``grad_tensors`` to ``backward``), the model in eval mode, and a
+ sign.  No labels are needed.  beta = 1 is useless: sum_c p_c d log p_c = d sum_c p_c = 0, so every gradient
vanishes; the reference uses beta = 0.5.  The kernel built from them, <f, f'><g, g'>, is in
:mod:`zooscope.measures.sketch`.

The pseudo-layer ``"input"`` is the input tensor itself.  Other names are module names of ``model``
(``dict(model.named_modules())``); each module's *output* is taken, as it is at the moment the module returns
(a later in-place op, e.g. ``ReLU(inplace=True)``, does not change it).  :func:`xfer_resnet_layers` lists the
12 layers the xfer reference uses on a torchvision ResNet; there ``conv1`` is the convolution's output *before*
``bn1``.

References
----------
Tang, Maddox, Dickens, Diethe, Damianou 2020, "Similarity of Neural Networks with Gradients", arXiv:2003.11498;
code ``amzn/xfer`` ``nn_similarity_index/sketched_kernels.py``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError, unknown_name_error

__all__ = [
    "INPUT",
    "features_and_gradients",
    "iter_features_and_gradients",
    "label_free_weights",
    "per_sample_grads",
    "xfer_resnet_layers",
]

log = logging.getLogger(__name__)

INPUT = "input"  # pseudo-layer: the network's input tensor


def label_free_weights(logits: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Return the constant weights q = p^beta / sum_c p_c^beta of the label-free score sum_c q_c log p_c.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
    beta : float, default=0.5
        Temperature of q.  beta = 1 makes every activation gradient vanish; beta = 0 gives uniform q.

    Returns
    -------
    Tensor of shape (n_samples, n_classes)
        Detached; rows sum to 1.  Computed as softmax(beta * log_softmax(logits)), which equals
        p^beta / sum p^beta without underflow.
    """
    with torch.no_grad():
        return torch.softmax(beta * torch.log_softmax(_full_precision(logits.detach()), dim=-1), dim=-1)


def _full_precision(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def xfer_resnet_layers(model: nn.Module) -> list[str]:
    """Return the xfer reference's 12 layers of a torchvision-style ResNet, as names for this module.

    Parameters
    ----------
    model : nn.Module
        A ResNet with ``conv1``, ``maxpool``, ``layer1`` … ``layer4`` (sequences of blocks) and ``avgpool``.

    Returns
    -------
    list of str
        ``["input", "conv1", "maxpool", "layer1.0", …, "layer4.<last>", "avgpool"]``.  ``conv1`` is taken before
        ``bn1``, as in the reference; ``avgpool``'s output is the globally pooled (n, C) vector.
    """
    names = dict(model.named_children())
    missing = [m for m in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool") if m not in names]
    if missing:
        raise ZooscopeInputError(
            f"xfer_resnet_layers needs a torchvision-style ResNet; the model has no {', '.join(missing)}. "
            "Pass the layer names explicitly instead."
        )
    blocks = [f"{stage}.{name}" for stage in ("layer1", "layer2", "layer3", "layer4")
              for name, _ in names[stage].named_children()]
    return [INPUT, "conv1", "maxpool", *blocks, "avgpool"]


def _check_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        from zooscope.embed.capture import resolve_layers  # the package-wide default layer choice

        return list(resolve_layers(model, None))
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ZooscopeInputError("layers is empty; pass at least one module name, or None for the defaults.")
    modules = dict(model.named_modules())
    for name in layers:
        if name != INPUT and (name not in modules or name == ""):
            raise unknown_name_error("layer", name, [INPUT, *(n for n in modules if n)])
    if len(set(layers)) != len(layers):
        raise ZooscopeInputError(f"layers contains duplicates: {layers}.")
    return layers


def _batch_tensor(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if not x.is_floating_point():
        raise ZooscopeInputError(f"Inputs must be floating point; got dtype {x.dtype}. Convert with x.float().")
    return x


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _forward_backward(
    model: nn.Module, x: torch.Tensor, layers: list[str], beta: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One forward and one backward pass on a batch: features and activation gradients per layer."""
    saved: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def hook_for(name: str) -> Callable:
        def hook(_module: nn.Module, _inp: Any, out: Any) -> torch.Tensor:
            if not isinstance(out, torch.Tensor):
                raise ZooscopeInputError(
                    f"Layer {name!r} returns {type(out).__name__}, not a tensor; choose a module that "
                    "returns one tensor."
                )
            if name in saved:
                raise ZooscopeInputError(
                    f"Layer {name!r} runs more than once per forward pass (a shared module); choose a module "
                    "that runs once."
                )
            saved[name] = out
            # Hand a copy downstream so a later in-place op cannot change the tensor we differentiate at.
            return out.clone()

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in layers if n != INPUT]
    try:
        x = x.detach().clone().requires_grad_(True)  # also makes every activation part of the graph
        if INPUT in layers:
            saved[INPUT] = x
        with torch.enable_grad():  # gradients are the point, even inside a caller's no_grad()
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ZooscopeInputError(
            "The model must return logits of shape (n_samples, n_classes); got "
            f"{getattr(logits, 'shape', type(logits).__name__)}."
        )
    missing = [n for n in layers if n not in saved]
    if missing:
        raise ZooscopeInputError(f"Layers {missing} did not run in the forward pass; choose modules that do.")
    # score = sum_c q_c log p_c with q constant: backward of log_softmax with grad_outputs = q (reference sign +).
    with torch.enable_grad():
        logp = torch.log_softmax(_full_precision(logits), dim=-1)
    q = label_free_weights(logits, beta)
    wanted = [n for n in layers if saved[n].requires_grad]
    grads = torch.autograd.grad(logp, [saved[n] for n in wanted], grad_outputs=q, allow_unused=True)
    by_name = dict(zip(wanted, grads, strict=True))
    n = x.shape[0]
    result = {}
    for name in layers:
        f = saved[name].detach().reshape(n, -1)
        g = by_name.get(name)
        if g is None:
            warnings.warn(f"Layer {name!r} does not influence the logits; its gradients are zero.", stacklevel=3)
            g = torch.zeros_like(f)
        result[name] = (_full_precision(f).cpu().numpy(), _full_precision(g.detach().reshape(n, -1)).cpu().numpy())
    return result


def iter_features_and_gradients(
    model: nn.Module,
    batches: Iterable[Any],
    layers: Sequence[str] | None,
    *,
    beta: float = 0.5,
    device: str | torch.device = "cpu",
) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Stream per-layer features f_l and label-free activation gradients g_l, one batch at a time.

    Parameters
    ----------
    model : nn.Module
        Returns logits of shape (n, n_classes).  Put in eval mode for the passes (BatchNorm uses its running
        statistics, dropout is off); its previous mode is restored afterwards.  It must already be on ``device``.
    batches : iterable of Tensor of shape (b, ...) or of (x, y) tuples
        Labels, if present, are ignored.  Iterated once.
    layers : sequence of str or None
        Module names, in the order wanted, plus the pseudo-layer ``"input"``; None for
        :func:`zooscope.embed.capture.resolve_layers`'s defaults.
    beta : float, default=0.5
        q = p^beta / sum p^beta in the score sum_c q_c log p_c.
    device : str or torch.device, default="cpu"
        Where each batch is moved before the forward pass.

    Yields
    ------
    dict of str to (F, G)
        For every layer, ``F`` and ``G`` arrays of shape (b, d_l) (float32; float64 for a float64 model): the
        activation and d score / d activation, flattened per example in (C, H, W) order.  One forward and one
        backward pass per batch; parameter ``.grad`` fields are not touched.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    >>> out = next(iter_features_and_gradients(net, [torch.randn(5, 4)], ["1"]))
    >>> out["1"][0].shape, out["1"][1].shape
    ((5, 8), (5, 8))
    """
    if not np.isfinite(beta):
        raise ZooscopeInputError(f"'beta' of iter_features_and_gradients must be a finite float; got {beta!r}.")
    names = _check_layers(model, layers)
    with _eval_mode(model):
        for batch in batches:
            x = _batch_tensor(batch).to(device)
            yield _forward_backward(model, x, names, float(beta))


def features_and_gradients(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str] | None,
    *,
    beta: float = 0.5,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All of :func:`iter_features_and_gradients` for one tensor ``x`` of shape (n, ...), concatenated.

    Returns
    -------
    dict of str to (F, G)
        float32 arrays of shape (n, d_l) each.  Memory is O(n · sum_l d_l): for many examples stream with
        :func:`iter_features_and_gradients` into a :class:`zooscope.measures.sketch.SketchAccumulator`.
    """
    x = _batch_tensor(x)
    if batch_size < 1:
        raise ZooscopeInputError(f"'batch_size' must be a positive int; got {batch_size!r}.")
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
    for out in iter_features_and_gradients(model, batches, layers, beta=beta, device=device):
        for name, (f, g) in out.items():
            fs, gs = parts.setdefault(name, ([], []))
            fs.append(f)
            gs.append(g)
    return {name: (np.concatenate(fs), np.concatenate(gs)) for name, (fs, gs) in parts.items()}


def per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Sequence[str] | None = None,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example gradients of a loss with respect to parameters, with ``torch.func`` (vmap of grad).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (BatchNorm running statistics; needed by vmap); its mode is restored after.
    x : Tensor of shape (n, ...)
    y : Tensor of shape (n,) or (n, n_classes)
        Class indices, or target probabilities (e.g. :func:`label_free_weights` for the score of Tang et al.).
    params : sequence of str, optional
        Parameter names (``dict(model.named_parameters())``); default every parameter with ``requires_grad``.
    loss_fn : callable, optional
        ``loss_fn(logits_of_one_example (1, C), target (1, ...)) -> scalar``; default ``F.cross_entropy``,
        i.e. -sum_c y_c log p_c for probability targets.
    chunk_size : int, optional
        Examples per vmap chunk, to bound memory.

    Returns
    -------
    dict of str to Tensor
        ``name -> (n, *param.shape)``: d loss(x_i, y_i) / d param for every example i.

    Examples
    --------
    >>> lin = nn.Linear(3, 2)
    >>> g = per_sample_grads(lin, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> tuple(g["weight"].shape)
    (4, 2, 3)
    """
    from torch.func import functional_call, grad, vmap

    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    else:
        names = [params] if isinstance(params, str) else list(params)
        for n in names:
            if n not in named:
                raise unknown_name_error("parameter", n, list(named))
    if not names:
        raise ZooscopeInputError("No parameters to differentiate: pass params=[...] or unfreeze some.")
    if len(x) != len(y):
        raise ZooscopeInputError(f"x and y must have the same length; got {len(x)} and {len(y)}.")
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    wrt = {n: named[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in named.items() if n not in wrt}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**fixed, **p}, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    with _eval_mode(model):
        return vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(wrt, x, y)
