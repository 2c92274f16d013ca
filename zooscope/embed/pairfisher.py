"""The ``fisher`` embedding kind: a (model, dataset) PAIR embedded as the model's own diagonal Fisher on the dataset.

Task2Vec's estimator with the model itself as the probe network (Achille et al. 2019, and MODEL2VEC's F_i):
the model's classifier is set aside, a new linear head is fit on the dataset from the model's penultimate
features, and the per-filter diagonal Fisher of the model's feature-extractor weights is taken with labels sampled
from the model and true per-sample gradients (`zooscope.embed.task2vec.Task2Vec`, `zooscope.embed.fisher`), on a
stratified, seeded subset of ``max_samples`` examples.  The vector layout and its per-filter normalisation are
``task2vec``'s; only the network differs.

Comparability.  Entries are per filter of the model's own architecture, so two pair vectors are comparable only
when the two models share an architecture (spec and the kwargs that shape the feature extractor).  The zoo keys
the FAISS index of this kind by architecture (`architecture_of`; `zooscope.zoo.vectors.request_group`) and refuses
a query across architectures; across architectures the comparable vector is Task2Vec of the training set through
the zoo's probe network (kind ``task2vec``).

Score: the cosine of the stored Fisher vectors, which the FAISS inner-product index of unit vectors computes
exactly. On the toy zoos of ``benchmarks/bench_pairs.py`` it retrieved same-training-data checkpoints better than
d_sym (`zooscope.embed.taskdist.task_distance`) or the centred log-Fisher correlation ``task2vec`` indexes
(benchmarks/RESULTS.md, "Pair Fisher").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.embed._kinds import EMBEDDINGS, EmbeddingMeta

__all__ = ["PAIR_DEFAULTS", "architecture_of", "fisher", "pair_fisher_vector"]

VERSION = "1"
#: defaults of the ``fisher`` kind (Task2Vec parameters; also the ``fisher`` method of `Zoo.select`)
PAIR_DEFAULTS: dict[str, Any] = {"max_samples": 300, "n_samples": 300, "head_epochs": 3, "head_draws": 2000,
                                 "seed": 0}
# kwargs that change only the classifier (excluded from the Fisher), so not the architecture of the vector
_HEAD_KWARGS = ("num_classes",)


def architecture_of(spec: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Return what fixes the parameter space of a pair vector: the model spec and its kwargs but the head's."""
    return {"spec": str(spec), "kwargs": {k: v for k, v in sorted((kwargs or {}).items()) if k not in _HEAD_KWARGS}}


def pair_fisher_vector(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **params: Any) -> np.ndarray:
    """Return the model's per-filter diagonal Fisher on ``(x, y)``, float64 of shape (dim,).

    ``params``: `PAIR_DEFAULTS` overridden by any `zooscope.embed.task2vec.Task2Vec` parameter; the examples are
    first cut to a stratified subset of ``max_samples`` seeded by ``seed`` (`zooscope.nets.datasets.probe_subset`).
    """
    from zooscope.embed.task2vec import _DEFAULTS, Task2Vec
    from zooscope.nets.datasets import DatasetTensors, probe_subset

    unknown = set(params) - set(_DEFAULTS) - {"progress"}
    if unknown:
        raise ZooscopeInputError(f"Unknown fisher parameter(s) {sorted(unknown)}; valid: {sorted(_DEFAULTS)}.")
    params = {**PAIR_DEFAULTS, **params}
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    n = params.get("max_samples")
    if n is not None and len(y) > int(n):
        sub = probe_subset(DatasetTensors("pair", x, y, None), int(n), seed=int(params["seed"]))
        x, y = sub.x, sub.y
    return np.asarray(Task2Vec(model, **params).embed(x, y).hessian, dtype=np.float64)


@EMBEDDINGS.register(EmbeddingMeta(
    subject="pair", metric="ip", normalized=True, version=VERSION, params=dict(PAIR_DEFAULTS),
    description="Pair Fisher: the model's own per-filter diagonal Fisher on a dataset (Task2Vec's estimator with "
                "the model as probe). One FAISS index per architecture (inner product of unit vectors = cosine, "
                "the score); never compared across architectures."))
def fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **params: Any) -> np.ndarray:
    """Return the ``fisher`` embedding kind of a (model, dataset) pair: `pair_fisher_vector` as float32.

    Parameters
    ----------
    model : nn.Module
        The zoo model (its classifier is replaced by a head fit on the dataset; the model is not modified).
    x : Tensor of shape (n, *input_shape)
    y : Tensor of shape (n,)
        Integer labels, at least two classes.
    **params
        Task2Vec parameters (default `PAIR_DEFAULTS`).

    Returns
    -------
    np.ndarray of shape (dim,), float32
        dim = the number of filters (and norm channels) of the model's feature extractor.
    """
    return pair_fisher_vector(model, x, y, **params).astype(np.float32)

