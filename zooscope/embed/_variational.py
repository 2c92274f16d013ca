"""The variational ("robust") Fisher of Achille et al.'s reference code, used by ``Task2Vec(method="variational")``.

Each conv filter ``o`` gets a posterior log-variance ``log σ_o²`` (shared by its weights), each conv layer a
prior ``log λ²``; the weights stay at the probe's values.  Noise enters the conv outputs by the local
reparameterisation trick (output variance = ``conv(x², σ²)``).  Minimised: cross-entropy on the TRUE labels +
``β · Σ KL(N(w, σ²) ‖ N(0, λ²))``, β = 1e-7, by Adam (lr 1e-2 for σ, λ; 5e-4 for the head), 2 epochs of
``n_samples`` (default 10000) class-balanced draws.  Initialisation: ``σ_o² = 0.05 var(filter o)``,
``λ² = mean(w²)`` of the layer.  Output: ``hessian = 1/σ_o²`` per filter, ``scale = 1/λ²`` per layer.

Departures from the reference: BatchNorm stays in eval mode (the reference leaves it in train mode, frozen);
only plain ``nn.Conv1d/Conv2d`` layers are covered (the reference: its probe's convs).  After few steps the
vectors mostly reflect the initialisation (see the oracle README): prefer the Monte Carlo method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.embed.fisher import FisherTarget

BETA = 1e-7
EPOCHS = 2


def variational_fisher(net: nn.Module, targets: list[FisherTarget], x: torch.Tensor, y: torch.Tensor,
                       w: torch.Tensor, cfg, gen: torch.Generator):
    """Return (hessian, scale, conv targets, info); see the module docstring."""
    convs, start = [], 0
    for t in targets:
        if type(t.module) in (nn.Conv1d, nn.Conv2d):
            convs.append(FisherTarget(t.name, t.module, t.weight, start, start + t.weight.shape[0]))
            start += t.weight.shape[0]
    if not convs:
        raise ZooscopeInputError("method='variational' needs plain Conv1d/Conv2d layers in the probe; use "
                                 "method='montecarlo'.")
    logvar = [torch.log(0.05 * t.weight.detach().reshape(t.weight.shape[0], -1).var(1) + 1e-8).requires_grad_()
              for t in convs]
    loglam = [torch.log(t.weight.detach().pow(2).mean() + 1e-8).reshape(1).requires_grad_() for t in convs]

    def noisy(i: int):
        def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> torch.Tensor:
            var_w = logvar[i].exp().view(-1, *([1] * (m.weight.ndim - 1))).expand_as(m.weight)
            var_out = m._conv_forward(inp[0].pow(2), var_w, None)  # local reparameterisation
            return out + var_out.clamp_min(0).add(1e-16).sqrt() * torch.randn(out.shape, generator=gen)
        return hook

    def kl() -> torch.Tensor:
        total = torch.zeros(())
        for t, lv, ll in zip(convs, logvar, loglam, strict=True):
            fan = t.weight[0].numel()
            lam2 = ll.exp()
            total = total + 0.5 * (fan * (lv.exp() / lam2 - 1 - lv + ll).sum() + t.weight.detach().pow(2).sum() / lam2)
        return total.sum()

    opt = torch.optim.Adam([{"params": logvar + loglam, "lr": 1e-2},
                            {"params": net.head.parameters(), "lr": 5e-4}])
    for p in net.head.parameters():
        p.requires_grad_(True)
    handles = [t.module.register_forward_hook(noisy(i)) for i, t in enumerate(convs)]
    bs, draws = int(cfg.batch_size), int(cfg.n_samples or 10_000)
    steps = 0
    try:
        for _ in range(EPOCHS):
            idx = torch.multinomial(w, draws, replacement=True, generator=gen)
            for i in range(0, draws - bs + 1, bs):
                b = idx[i:i + bs]
                opt.zero_grad()
                loss = F.cross_entropy(net(x[b]), y[b]) + BETA * kl()
                loss.backward()
                opt.step()
                steps += 1
    finally:
        for h in handles:
            h.remove()
    hess = torch.cat([(-lv.detach()).exp() for lv in logvar]).double().numpy()
    scale = torch.cat([(-ll.detach()).exp().expand(t.weight.shape[0]) for t, ll in zip(convs, loglam, strict=True)])
    return hess, scale.double().numpy(), convs, {"estimator": "variational", "steps": steps, "beta": BETA}
