"""Diagonal Fisher of a network's parameters from TRUE per-sample gradients, averaged per filter.

For a network ``net(x) -> logits`` with labels ``ŷ`` sampled from its own prediction, one Fisher term per
example is the squared per-sample gradient ``g_i² = (∇_w log p(ŷ_i | x_i))²``.  The per-filter value of a weight
of shape ``(out, ...)`` is the mean of ``g²`` over everything but ``out`` (conv: over ``(in, kh, kw)``; a
norm layer's γ: one value per channel) -- the layout of Achille et al.'s reference code.

Estimators of ``Σ_i w_i · mean_fanin(g_i²)`` (``w_i`` = per-example weights):

``"hooks"``
    Exact, at about the cost of ONE batched backward pass.  A forward hook keeps each layer's input
    (unfolded for a conv), a tensor hook receives the per-sample output gradients ``δ_i`` of the summed
    loss; then per output filter ``o``: ``Σ_c (Σ_p δ_i[o,p] U_i[c,p])²``, computed either directly or with
    the Gram trick ``δ_i[o] (U_iᵀ U_i) δ_i[o]ᵀ`` -- whichever is cheaper (positions ``p``, fan-in ``c``).
    Needs examples to be independent in the forward pass (BatchNorm in eval mode) and supports plain
    ``nn.Conv1d/Conv2d`` (any stride, padding, dilation, groups), ``nn.Linear``, ``nn.BatchNorm1d/2d`` (eval,
    running stats), ``nn.LayerNorm`` and ``nn.GroupNorm`` -- exact types, each called once per forward.
``"vmap"``
    Exact, any module: ``torch.func.vmap(grad(...))`` in chunks.  Memory ~ chunk × #params.
``"loop"``
    Exact, any module: one backward per example (slow; the reference for the tests).
``"random_sign"``
    Unbiased, any module: one backward of ``Σ_i r_i √w_i ℓ_i`` with Rademacher signs ``r_i``;
    ``E_r[(Σ_i r_i √w_i g_i)²] = Σ_i w_i g_i²``.  Noisier (cross terms) but as cheap as ``"hooks"``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from zooscope._validation import ZooscopeInputError

log = logging.getLogger(__name__)

__all__ = ["FisherTarget", "fisher_targets", "hooks_supported", "per_filter_fisher"]

ESTIMATORS = ("auto", "per_sample", "hooks", "vmap", "loop", "random_sign")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_HOOK_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
_DIRECT_MAX = 1 << 24  # floats held at once by the direct per-sample conv gradient (64 MB)


@dataclass
class FisherTarget:
    """One weighted module of the feature extractor and its slice ``[start, stop)`` of the task vector."""

    name: str
    module: nn.Module
    weight: nn.Parameter
    start: int
    stop: int
    is_norm: bool = False
    acc: torch.Tensor = field(default=None, repr=False)  # float64 (out,) accumulator

    @property
    def fan_in(self) -> int:
        """Return the number of inputs of one output filter."""
        return self.weight[0].numel()


def fisher_targets(root: nn.Module, *, exclude: set[int], include_bn: bool = True,
                   skip_layers: int = 0) -> list[FisherTarget]:
    """Every module of ``root`` with its own ``weight`` parameter, in ``named_modules`` order.

    Parameters
    ----------
    root : nn.Module
        The network whose feature extractor is embedded.
    exclude : set of int
        ``id()`` of modules left out (the classifier head).
    include_bn : bool, default=True
        Keep normalisation layers' γ (BatchNorm, GroupNorm, LayerNorm), as the reference does.
    skip_layers : int, default=0
        Leave out every module under the first ``skip_layers`` top-level children of ``root`` (for a ResNet
        the children are conv1, bn1, relu, maxpool, layer1, ...: ``skip_layers=6`` keeps layer3 onwards, as
        in the reference's notebook).  Their weights also get no gradient, which makes the backward cheaper.
    """
    skipped: set[int] = set()
    for child in list(root.children())[:skip_layers]:
        skipped.update(id(m) for m in child.modules())
    out: list[FisherTarget] = []
    start = 0
    for name, m in root.named_modules():
        w = m._parameters.get("weight") if hasattr(m, "_parameters") else None
        if w is None or id(m) in exclude or id(m) in skipped or w.ndim == 0:
            continue
        is_norm = isinstance(m, _NORM_TYPES)
        if is_norm and not include_bn:
            continue
        out.append(FisherTarget(name, m, w, start, start + w.shape[0], is_norm))
        start += w.shape[0]
    return out


def _unsupported_reason(t: FisherTarget) -> str | None:
    m = t.module
    if type(m) not in _HOOK_TYPES:
        return f"{t.name} ({type(m).__name__})"
    if parametrize.is_parametrized(m):
        return f"{t.name} (parametrized weight)"
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None):
        return f"{t.name} (BatchNorm without running statistics)"
    return None


def hooks_supported(targets: list[FisherTarget]) -> list[str]:
    """Names of the targets the exact hook estimator cannot handle (empty: it can handle all)."""
    return [r for r in map(_unsupported_reason, targets) if r is not None]


# ---------------------------------------------------------------------------------------------- hooks estimator
def _conv_operands(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Unfolded conv input ``U`` of shape (B, groups, in/groups·k, P)."""
    if isinstance(m, nn.Conv1d):
        x = x.unsqueeze(2)
        k, s, d = (1, m.kernel_size[0]), (1, m.stride[0]), (1, m.dilation[0])
        pad_1d = m.padding if isinstance(m.padding, str) else (0, m.padding[0])
    else:
        k, s, d, pad_1d = m.kernel_size, m.stride, m.dilation, m.padding
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        rp = m._reversed_padding_repeated_twice
        if isinstance(m, nn.Conv1d):
            rp = (*rp, 0, 0)
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        x, pad = F.pad(x, rp, mode=mode), (0, 0)
    else:
        pad = pad_1d
    U = F.unfold(x, k, dilation=d, padding=pad, stride=s)  # (B, C·kh·kw, P)
    return U.reshape(U.shape[0], m.groups, -1, U.shape[-1])


class _HookEstimator:
    """Exact per-sample Σ_i w_i·mean_fanin(g_i²) for every target, from one batched backward."""

    def __init__(self, targets: list[FisherTarget]) -> None:
        self.targets = targets
        self.handles: list = []
        self.weights: torch.Tensor | None = None
        self.calls: dict[int, int] = {}

    def __enter__(self) -> _HookEstimator:
        for t in self.targets:
            self.handles.append(t.module.register_forward_hook(self._forward_hook(t)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _forward_hook(self, t: FisherTarget) -> Callable:
        def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            if not torch.is_grad_enabled():
                return
            self.calls[id(t)] = self.calls.get(id(t), 0) + 1
            if self.calls[id(t)] > 1:
                raise ZooscopeInputError(f"The hooks estimator needs each module called once per forward, but "
                                         f"{t.name} runs twice (shared weights); use estimator='vmap' or "
                                         "'random_sign'.")
            ctx = self._context(m, inp[0].detach())  # derived tensors: later in-place ops cannot alter them
            out.register_hook(lambda g, t=t, ctx=ctx: self._accumulate(t, ctx, g))

        return hook

    @staticmethod
    def _context(m: nn.Module, x: torch.Tensor):
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            U = _conv_operands(m, x)
            G, C, P = U.shape[1], U.shape[2], U.shape[3]
            O = m.out_channels
            if G * C * P * P + O * P * P < O * C * P:  # Gram trick is cheaper
                return ("gram", U.transpose(-1, -2) @ U)
            return ("direct", U)
        if isinstance(m, nn.Linear):
            a = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, P, in)
            if a.shape[1] == 1:
                return ("rank1", a[:, 0].pow(2).sum(-1))
            U = a.transpose(1, 2).unsqueeze(1)  # (B, 1, in, P)
            return ("gram", U.transpose(-1, -2) @ U) if a.shape[1] < a.shape[2] else ("direct", U)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            xhat = (x - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)
            return ("norm_ch", xhat)
        if isinstance(m, nn.GroupNorm):
            return ("norm_ch", F.group_norm(x, m.num_groups, eps=m.eps))
        return ("norm_ln", F.layer_norm(x, m.normalized_shape, eps=m.eps))

    def _accumulate(self, t: FisherTarget, ctx: tuple, g: torch.Tensor) -> None:
        kind, A = ctx
        B, w = g.shape[0], self.weights
        if kind == "norm_ch":
            s = (g * A).reshape(B, g.shape[1], -1).sum(-1).pow(2)  # (B, C)
        elif kind == "norm_ln":
            lead = g.ndim - len(t.module.normalized_shape)
            gw = (g * A).sum(dim=tuple(range(1, lead))) if lead > 1 else g * A
            s = gw.reshape(B, t.weight.shape[0], -1).pow(2).sum(-1)
        elif kind == "rank1":
            s = g.reshape(B, -1).pow(2) * A[:, None]
        else:
            if isinstance(t.module, nn.Linear):
                d = g.reshape(B, -1, g.shape[-1]).transpose(1, 2).unsqueeze(1)  # (B, 1, out, P)
            else:
                d = g.reshape(B, t.module.groups, -1, A.shape[-1])  # (B, groups, out/groups, P)
            if kind == "gram":
                s = ((d @ A) * d).sum(-1)  # δ K δᵀ per filter
            else:
                s = torch.zeros(d.shape[:3], dtype=d.dtype)
                per = d.shape[1] * d.shape[2] * A.shape[2]
                step = max(1, _DIRECT_MAX // max(per, 1))
                for i in range(0, B, step):
                    s[i:i + step] = (d[i:i + step] @ A[i:i + step].transpose(-1, -2)).pow(2).sum(-1)
            s = s.reshape(B, -1)
        t.acc += (w.to(s.dtype) @ s).double() / t.fan_in


def _ce_terms(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _passes(p: torch.Tensor, w: torch.Tensor, labels: str, n_draws: int,
            generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(labels ŷ, weights) of each backward pass: sampled ŷ ∼ p with weight w, or every class c with w·p_c."""
    if labels == "exact":  # Σ_c p_c g_c²: the expectation over ŷ, no sampling noise (K passes)
        return [(torch.full((p.shape[0],), c, dtype=torch.long), w.double() * p[:, c]) for c in range(p.shape[1])]
    return [(torch.multinomial(p, 1, generator=generator)[:, 0], w.double()) for _ in range(n_draws)]


def per_filter_fisher(
    net: nn.Module,
    targets: list[FisherTarget],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    estimator: str,
    n_draws: int = 1,
    labels: str = "sample",
    generator: torch.Generator,
    vmap_chunk: int | None = None,
    progress: Callable[[Iterator], Iterator] = iter,
) -> torch.Tensor:
    """Accumulate ``Σ_passes Σ_i w_i · mean_fanin(g_i²)`` for every target; return the concatenated sums.

    Parameters
    ----------
    net : nn.Module
        ``net(x) -> logits`` of shape (B, K), in eval mode, examples independent.
    targets : list of FisherTarget
        From `fisher_targets`; their ``weight`` must require grad.
    batches : iterator of (x, w)
        Inputs (B, ...) and per-example weights (B,) float.
    estimator : {"hooks", "vmap", "loop", "random_sign"}
        See the module docstring ("auto"/"per_sample" are resolved by `resolve_estimator`).
    n_draws : int, default=1
        ``labels="sample"``: model-sampled labels per example (each one Fisher term); one shared forward.
    labels : {"sample", "exact"}, default="sample"
        "exact": the expectation over ``ŷ ∼ p(·|x)`` in closed form, ``Σ_c p_c g_c²`` (K backward passes).
    generator : torch.Generator
        Source of the sampled labels (and Rademacher signs); consumed in batch order.

    Returns
    -------
    torch.Tensor of shape (sum of out-channels,), float64
        Unnormalised sums: divide by ``n_draws · Σ w`` ("sample") or ``Σ w`` ("exact").
    """
    for t in targets:
        t.acc = torch.zeros(t.weight.shape[0], dtype=torch.float64)
    params = [t.weight for t in targets]
    est = _HookEstimator(targets) if estimator == "hooks" else None
    for x, w in progress(batches):
        if estimator in ("hooks", "random_sign"):
            est_ctx = est if est is not None else contextlib.nullcontext()
            if est is not None:
                est.calls = {}
            with est_ctx:
                logits = net(x)
            p = torch.softmax(logits.detach().double(), -1)
            passes = _passes(p, w, labels, n_draws, generator)
            for j, (yhat, wj) in enumerate(passes):
                keep = j < len(passes) - 1
                terms = _ce_terms(logits, yhat)
                if est is not None:
                    est.weights = wj
                    # a SUM: the output gradients are per-sample; the hooks do the work
                    torch.autograd.grad(terms.sum(), params, retain_graph=keep)
                    continue
                r = torch.randint(0, 2, (x.shape[0],), generator=generator).to(logits.dtype) * 2 - 1
                grads = torch.autograd.grad((r * wj.to(logits.dtype).sqrt() * terms).sum(), params,
                                            retain_graph=keep)
                for t, gr in zip(targets, grads, strict=True):
                    t.acc += gr.double().pow(2).reshape(gr.shape[0], -1).mean(1)
            continue
        with torch.no_grad():
            p = torch.softmax(net(x).double(), -1)
        passes = _passes(p, w, labels, n_draws, generator)
        if estimator == "loop":
            _loop(net, targets, x, passes)
        else:
            _vmap(net, targets, x, passes, vmap_chunk)
    return torch.cat([t.acc for t in targets])


def _loop(net, targets, x, passes) -> None:
    params = [t.weight for t in targets]
    for i in range(x.shape[0]):
        logits = net(x[i:i + 1])
        for j, (yhat, w) in enumerate(passes):
            loss = _ce_terms(logits, yhat[i:i + 1]).sum()
            grads = torch.autograd.grad(loss, params, retain_graph=j < len(passes) - 1)
            for t, gr in zip(targets, grads, strict=True):
                t.acc += float(w[i]) * gr.double().pow(2).reshape(gr.shape[0], -1).mean(1)


def _vmap(net, targets, x, passes, chunk) -> None:
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in net.named_parameters()}
    keys = [names[id(t.weight)] for t in targets]
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in set(keys)}
    fixed.update(dict(net.named_buffers()))

    def loss_one(theta, xi, yi):
        logits = functional_call(net, {**fixed, **theta}, (xi[None],))
        return _ce_terms(logits, yi[None]).sum()

    theta = {k: t.weight.detach() for k, t in zip(keys, targets, strict=True)}
    n_params = sum(t.weight.numel() for t in targets)
    chunk = chunk or max(1, min(x.shape[0], (1 << 25) // max(n_params, 1)))
    per_grad = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for yhat, w in passes:
        for i in range(0, x.shape[0], chunk):
            gs = per_grad(theta, x[i:i + chunk], yhat[i:i + chunk])
            for k, t in zip(keys, targets, strict=True):
                g2 = gs[k].double().pow(2).reshape(gs[k].shape[0], t.weight.shape[0], -1).mean(-1)
                t.acc += w[i:i + chunk] @ g2


def resolve_estimator(estimator: str, targets: list[FisherTarget]) -> tuple[str, str]:
    """Map "auto"/"per_sample" to a concrete estimator; return it and the reason."""
    if estimator in ("hooks", "vmap", "loop", "random_sign"):
        return estimator, "requested"
    bad = hooks_supported(targets)
    if not bad:
        return "hooks", "every weighted module supports the exact hook estimator"
    n = sum(t.weight.numel() for t in targets)
    if estimator == "per_sample" or n <= 2_000_000:
        choice = "vmap" if n <= 2_000_000 else "loop"
        return choice, f"hooks unsupported for {', '.join(bad[:5])}; {n:,} parameters"
    return "random_sign", f"hooks unsupported for {', '.join(bad[:5])}; {n:,} parameters: vmap/loop too slow"

