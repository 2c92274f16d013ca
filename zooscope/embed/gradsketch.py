"""Seed 000 (Tang et al. 2020) end to end: streamed, sketched gradient kernels; comparers and an embedding.

* :func:`grad_kernels` streams a model over data once and returns, per layer, the sketched kernel
  K̃ = (SF)(SF)ᵀ/T ∘ (SG)(SG)ᵀ/T (M × M, memory O(M·d) per layer, any n), or the exact n × n kernel
  (FFᵀ) ∘ (GGᵀ) with ``sketch_dim=None``.  F are activations, G label-free activation gradients
  (:mod:`zooscope.embed.gradients`).
* Comparers ``grad_cka``, ``grad_nbs``, ``grad_euclidean`` for :func:`zooscope.compare`:
  ``compare(a, b, data, measure="grad_cka", sketch_dim=512, sketch_blocks=1, seed=0, beta=0.5)``.  They accept
  ``data_b`` (model A on one dataset, model B on another, same number of examples): the sketch of example i
  depends only on (seed, i), so both models' buckets line up by index, as in the xfer README's CIFAR-10 vs
  CIFAR-100 example.  That alignment is by index only; across datasets it is a heuristic.
* Embedding kind ``gradsketch`` (subject "model"): per layer, the upper triangle of K̄/‖K̄‖_F (K̄ the centred
  sketched kernel) with off-diagonal entries × √2, a unit vector of M(M+1)/2 floats whose inner product with
  another model's vector (same probe inputs, same M, T, seed) is their sketched gradient-kernel CKA.

Sketching inflates cross-network similarity: on the seed-A ResNet-18s the reference's M = 64/128 sketches give
CKA 0.95–0.99 where the exact kernels give 0.64–0.94, and ``benchmarks/bench_sketch.py`` finds that the gap does
not shrink with M (16–256 at n = 512): a common feature mean survives the signed bucket sums as a component shared
by both networks.  Compare sketched values only with each other; use ``sketch_dim=None`` (exact, O(n·d) memory)
when n is small.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.embed._comparers import COMPARERS, ComparerMeta
from zooscope.embed._kinds import EMBEDDINGS, EmbeddingMeta
from zooscope.embed.gradients import iter_features_and_gradients
from zooscope.measures.sketch import SketchAccumulator, center_kernel, gradient_kernel, kernel_index_matrix

__all__ = ["grad_cka", "grad_euclidean", "grad_kernels", "grad_nbs", "gradsketch"]

log = logging.getLogger(__name__)

_SKETCH_KW = ("sketch_dim", "sketch_blocks", "seed", "beta", "sketch_dtype")


class _ExactAccumulator:
    """Keeps F and G whole: the exact n × n kernel (memory O(n·d))."""

    def __init__(self) -> None:
        self.F: list[np.ndarray] = []
        self.G: list[np.ndarray] = []
        self.n_seen_ = 0

    def update(self, F: np.ndarray, G: np.ndarray) -> None:
        self.F.append(F)
        self.G.append(G)
        self.n_seen_ += len(F)

    def kernel(self) -> np.ndarray:
        return gradient_kernel(np.concatenate(self.F), np.concatenate(self.G))


def grad_kernels(
    model: nn.Module,
    batches: Iterable[Any],
    layers: Sequence[str] | None,
    *,
    sketch_dim: int | None = 512,
    sketch_blocks: int = 1,
    seed: int = 0,
    beta: float = 0.5,
    sketch_dtype: str = "float64",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-layer gradient kernels of one model, in one streamed pass over ``batches``.

    Parameters
    ----------
    model : nn.Module
        Returns logits (n, n_classes); run in eval mode; must be on ``device``.
    batches : iterable of Tensor of shape (b, ...) or of (x, y) tuples
        In a fixed order: example i (counting across batches) always uses sketch column i.
    layers : sequence of str or None
        Module names, plus the pseudo-layer ``"input"`` (see :mod:`zooscope.embed.gradients`).
    sketch_dim : int or None, default=512
        M buckets (the xfer default); None keeps the exact n × n kernel (memory O(n·d)).
    sketch_blocks : int, default=1
        T non-zeros per sketch column (block OSNAP when > 1).
    seed : int, default=0
        Sketch hash seed.  Use the same seed for every model you compare.
    beta : float, default=0.5
        Temperature of the label-free score.
    sketch_dtype : {"float64", "float32"}
        Accumulator precision; float32 halves memory for very wide layers.
    device : str or torch.device, default="cpu"
    progress : bool, default=False
        Rich progress bar (stderr).

    Returns
    -------
    dict of str to ndarray of shape (M, M) (or (n, n) when exact), float64
    """
    if sketch_dtype not in ("float64", "float32"):
        raise ZooscopeInputError(f"'sketch_dtype' must be 'float64' or 'float32'; got {sketch_dtype!r}.")
    accs: dict[str, Any] = {}
    stream = iter_features_and_gradients(model, batches, layers, beta=beta, device=device)
    if progress:
        from zooscope._progress import track

        stream = track(stream, total=None, description="gradient kernels", enabled=True)
    for out in stream:
        for name, (F, G) in out.items():
            if name not in accs:
                accs[name] = (_ExactAccumulator() if sketch_dim is None
                              else SketchAccumulator(sketch_dim, sketch_blocks, seed, dtype=sketch_dtype))
            accs[name].update(F, G)
    if not accs:
        raise ZooscopeInputError("data holds no batches; pass at least one example.")
    n = next(iter(accs.values())).n_seen_
    if sketch_dim is not None and n < sketch_dim:
        warnings.warn(
            f"sketch_dim={sketch_dim} exceeds the {n} examples: the sketch compresses nothing and its empty "
            "buckets shift the centring. Use sketch_dim=None for the exact kernel.", stacklevel=2)
    return {name: acc.kernel() for name, acc in accs.items()}


def _split_kwargs(kw: dict[str, Any], owner: str) -> dict[str, Any]:
    unknown = [k for k in kw if k not in _SKETCH_KW]
    if unknown:
        near = difflib.get_close_matches(unknown[0], _SKETCH_KW, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ZooscopeInputError(f"{owner} got an unexpected option {unknown[0]!r}.{hint} "
                                 f"Valid: {', '.join(_SKETCH_KW)}.")
    return kw


def _compare(index: str, model_a, model_b, pairs, layers_a, layers_b, device, progress, kw) -> np.ndarray:
    kw = _split_kwargs(kw, f"grad_{index}")
    shared = model_a is model_b
    if shared:  # one pass when the same model sees the same inputs in both slots
        first = next(iter(pairs()), None)
        shared = first is not None and first[0] is first[1]
    union = list(dict.fromkeys([*layers_a, *layers_b])) if shared else layers_a
    K_a = grad_kernels(model_a, (xa for xa, _ in pairs()), union, device=device, progress=progress, **kw)
    K_b = K_a if shared else grad_kernels(model_b, (xb for _, xb in pairs()), layers_b, device=device,
                                          progress=progress, **kw)
    return kernel_index_matrix([K_a[n] for n in layers_a], [K_b[n] for n in layers_b], index)


def _comparer(index: str, larger: bool, summary: str):
    def fn(model_a: nn.Module, model_b: nn.Module, pairs, layers_a: list[str], layers_b: list[str], *,
           device: str | torch.device = "cpu", progress: bool = False, **kw: Any) -> np.ndarray:
        return _compare(index, model_a, model_b, pairs, layers_a, layers_b, device, progress, kw)

    fn.__name__ = fn.__qualname__ = f"grad_{index}"
    fn.__doc__ = (
        f"{summary}\n\n"
        "Streaming comparer for ``compare(..., measure=...)``: (La, Lb) heat-map of xfer's index on per-layer\n"
        "gradient kernels (see :func:`grad_kernels` for ``sketch_dim``, ``sketch_blocks``, ``seed``, ``beta``,\n"
        "``sketch_dtype``).  Accepts ``data_b`` (cross-dataset, aligned by example index).\n"
    )
    return COMPARERS.register(ComparerMeta(cross_dataset=True, larger_is_more_similar=larger))(fn)


grad_cka = _comparer("cka", True, "Gradient-kernel CKA per layer pair; in [0, 1], larger is more similar.")
grad_nbs = _comparer("nbs", True, "Gradient-kernel normalized Bures similarity; in [0, 1], larger is more similar.")
grad_euclidean = _comparer("euclidean", False, "‖K_a − K_b‖_F of raw gradient kernels; smaller is more similar.")


def _unit_upper(K: np.ndarray) -> np.ndarray:
    """Upper triangle of K̄/‖K̄‖_F, off-diagonal × √2: <u(K), u(L)> = <K̄, L̄>_F / (‖K̄‖ ‖L̄‖) = CKA."""
    C = center_kernel(K)
    norm = np.linalg.norm(C)
    if not norm > 0:
        raise ZooscopeInputError("A gradient kernel is constant after centring; choose another layer or beta.")
    iu = np.triu_indices(C.shape[0])
    w = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))
    return (C[iu] * w / norm).astype(np.float32)


_EMB_PARAMS = {"sketch_dim": 128, "sketch_blocks": 1, "seed": 0, "beta": 0.5, "batch_size": 128}


@EMBEDDINGS.register(EmbeddingMeta(
    subject="model", metric="ip", normalized=True, params=dict(_EMB_PARAMS),
    description="Sketched gradient kernel (Tang et al. 2020) per layer: upper triangle of the centred, unit "
                "M x M kernel; inner product = sketched gradient-kernel CKA. Dim M(M+1)/2."))
def gradsketch(model: nn.Module, x: torch.Tensor, *, layers: list[str] | None = None, sketch_dim: int = 128,
               sketch_blocks: int = 1, seed: int = 0, beta: float = 0.5, batch_size: int = 128,
               device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Embed each layer of ``model`` on probe inputs ``x`` as its unit, centred sketched gradient kernel.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (n, ...)
        The zoo's fixed probe inputs, in a fixed order (bucket i holds the same examples for every model).
    layers : list of str, optional
        Module names (or ``"input"``); None for :func:`zooscope.embed.capture.resolve_layers`'s defaults.
    sketch_dim, sketch_blocks, seed, beta
        As in :func:`grad_kernels`; vectors are comparable only for equal values.
    batch_size : int, default=128
    device : str or torch.device, default="cpu"

    Returns
    -------
    dict of str to ndarray of shape (M(M+1)/2,), float32
        Unit vectors; the inner product of two models' vectors for a layer pair is their sketched
        gradient-kernel CKA (to float32 round-off).
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
    kernels = grad_kernels(model, batches, layers, sketch_dim=sketch_dim, sketch_blocks=sketch_blocks, seed=seed,
                           beta=beta, device=device)
    return {name: _unit_upper(K) for name, K in kernels.items()}
