"""``compare_many(models, data)``: every pair of N networks layer by layer, each network run forward once.

The many-model form of `zooscope.embed.compare.compare` (same measures, same table values; see `compare_many`):
full-batch measures collect each model's activations once (``linear_cka`` centres each layer and builds its Gram
once, and scores every pair of models with one stacked matmul), ``minibatch_cka`` streams every batch through
every model into one HSIC₁ accumulator, and other streaming comparers fall back to one `compare` per pair.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from zooscope._progress import track
from zooscope._validation import ZooscopeInputError
from zooscope.embed._comparers import COMPARERS
from zooscope.embed.capture import iter_activations, iter_batches, n_examples, on_device, resolve_data, resolve_layers
from zooscope.embed.compare import (
    _CKA,
    _check_kwargs,
    _cka_kwargs,
    _memory_error,
    _n_batches,
    _pairwise,
    _tables,
    check_measure,
    compare,
    minibatch_cka,
)
from zooscope.measures._base import MEASURES

__all__ = ["compare_many"]


def _named_models(models: Mapping[str, nn.Module] | Sequence[nn.Module]) -> dict[str, nn.Module]:
    if isinstance(models, Mapping):
        named = {str(k): m for k, m in models.items()}
    elif isinstance(models, nn.Module):
        raise ZooscopeInputError("compare_many takes several models (a dict name -> module or a list); got one.")
    else:
        named = {f"model{i}": m for i, m in enumerate(models)}
    for name, m in named.items():
        if not isinstance(m, nn.Module):
            raise ZooscopeInputError(f"compare_many: {name!r} is a {type(m).__name__}, not a torch.nn.Module.")
    if len(named) < 2:
        raise ZooscopeInputError(f"compare_many needs at least two models; got {len(named)}.")
    return named


def _layer_lists(named: dict[str, nn.Module], layers: Any) -> dict[str, list[str]]:
    """``layers``: None (each model's defaults), one list for all, one list per model, or a dict by name."""
    if layers is None or isinstance(layers, str):
        return {k: resolve_layers(m, layers) for k, m in named.items()}
    if isinstance(layers, Mapping):
        missing = [k for k in named if k not in layers]
        if missing:
            raise ZooscopeInputError(f"compare_many: layers has no entry for {missing}; give one list per model.")
        return {k: resolve_layers(m, layers[k]) for k, m in named.items()}
    layers = list(layers)
    if layers and all(isinstance(x, str) for x in layers):
        return {k: resolve_layers(m, layers) for k, m in named.items()}
    if len(layers) != len(named):
        raise ZooscopeInputError(
            f"compare_many: layers must be one list of names for every model or one list per model "
            f"({len(named)}); got {len(layers)} lists."
        )
    return {k: resolve_layers(m, ls) for (k, m), ls in zip(named.items(), layers, strict=True)}


def _iter_all(named: dict[str, nn.Module], lists: dict[str, list[str]], data: Any, batch_size: int,
              device: str | torch.device) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Per batch, one hooked forward of every model on the same inputs: ``{model: {layer: acts}}``."""
    current: list[torch.Tensor] = []

    def replay() -> Iterator[torch.Tensor]:
        while True:
            yield current[-1]

    gens = {k: iter_activations(m, replay(), lists[k], device=device) for k, m in named.items()}
    try:
        for x in iter_batches(data, batch_size):
            current[:] = [x]
            yield {k: next(g) for k, g in gens.items()}
    finally:
        for g in gens.values():
            g.close()


def compare_many(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    data: Any,
    layers: Any = None,
    measure: str = "linear_cka",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    *,
    max_memory_gb: float = 4.0,
    progress: bool = False,
    **measure_kwargs: Any,
) -> pd.DataFrame:
    """Every pair of N networks, layer by layer, with each network run forward once over the data.

    The layer-identification protocol of Kornblith et al. (2019, §6.1) on N nets then costs N forward passes,
    not N·(N−1): for ``linear_cka`` each model's activations are collected once, each layer centred and its
    Gram built once, and every Gram·Gram product of every pair of models comes from one stacked matmul; for
    ``minibatch_cka`` every batch goes through every model once and one (ΣL × ΣL) HSIC₁ accumulator serves
    all pairs; other full-batch measures score every pair on the once-collected activations. Other streaming
    comparers (``grad_cka``, …) have no shared form: they fall back to one `compare` per pair.

    Parameters
    ----------
    models : dict of str to torch.nn.Module, or sequence of torch.nn.Module
        A list is named ``model0``, ``model1``, … in order.
    data : DataLoader, Dataset, Tensor, numpy array, or a dataset spec (str or path)
        As for `compare`.
    layers : optional
        None (each model's default layers), one list (or comma-separated string) of module names for every
        model, one list per model (in order), or a dict name -> list.
    measure : str, default="linear_cka"
        As for `compare`.
    batch_size : int, default=256
    device : str or torch.device, default="cpu"
    max_memory_gb : float, default=4.0
        Cap on the activations (and Grams, for ``linear_cka``) held at once; the error names ``minibatch_cka``.
    progress : bool, default=False
        Rich progress bars on stderr (forward passes, then the measure stage).
    **measure_kwargs
        Passed to the measure.

    Returns
    -------
    pandas.DataFrame
        Long table with columns ``model_a, layer_a, model_b, layer_b, value``: for every pair of models
        (model_a given before model_b; both orders when the measure is not symmetric), every layer of A
        against every layer of B. ``attrs`` as in `compare`. ``table[(table.model_a == a) & (table.model_b ==
        b)].pivot(index="layer_a", columns="layer_b", values="value")`` is ``compare(models[a], models[b])``.

    Examples
    --------
    >>> import torch
    >>> from zooscope.nets.models import small_cnn
    >>> nets = [small_cnn(seed=s) for s in range(3)]
    >>> t = compare_many(nets, torch.randn(64, 1, 28, 28), layers=["conv3", "fc"])
    >>> len(t), sorted(set(zip(t.model_a, t.model_b)))
    (12, [('model0', 'model1'), ('model0', 'model2'), ('model1', 'model2')])
    """
    check_measure(measure)
    named = _named_models(models)
    lists = _layer_lists(named, layers)
    data = resolve_data(data)
    keys = list(named)
    n = n_examples(data)
    nb = _n_batches(data, n, batch_size)
    symmetric = (COMPARERS.get(measure).symmetric if measure in COMPARERS else MEASURES.get(measure).symmetric)
    pairs = [(i, j) for i in range(len(keys)) for j in range(len(keys)) if i < j or (i > j and not symmetric)]

    if measure in COMPARERS and measure != "minibatch_cka":
        tables = {}
        for i, j in pairs:
            t = compare(named[keys[i]], named[keys[j]], data, lists[keys[i]], lists[keys[j]], measure=measure,
                        batch_size=batch_size, device=device, progress=progress, **measure_kwargs)
            tables[(i, j)] = t.to_numpy()
        larger = COMPARERS.get(measure).larger_is_more_similar
    elif measure == "minibatch_cka":
        from zooscope.measures.minibatch import MinibatchCKA

        _check_kwargs(measure, minibatch_cka, 5, measure_kwargs)
        flat = [(k, layer) for k in keys for layer in lists[k]]
        acc = MinibatchCKA(len(flat))
        with _all_on_device(named, device):
            stream = _iter_all(named, lists, data, batch_size, device)
            desc = f"minibatch CKA of {len(keys)} models"
            for acts in track(stream, total=nb, description=desc, enabled=progress):
                acc.update([acts[k][layer] for k, layer in flat])
        C = acc.result()
        off = np.cumsum([0] + [len(lists[k]) for k in keys])
        tables = {(i, j): C[off[i]:off[i + 1], off[j]:off[j + 1]] for i, j in pairs}
        n = acc.n_examples_
        larger = True
    else:
        entry = MEASURES.get(measure)
        _check_kwargs(measure, entry.fn, 2, measure_kwargs)
        kwargs = _cka_kwargs(measure, measure_kwargs) if measure in _CKA else measure_kwargs
        tables, n = _full_batch_many(named, lists, data, measure, entry, kwargs, pairs, batch_size, device, n,
                                     nb, max_memory_gb, progress)
        larger = entry.larger_is_more_similar

    rows = []
    for (i, j), T in tables.items():
        ka, kb = keys[i], keys[j]
        for r, la in enumerate(lists[ka]):
            for c, lb in enumerate(lists[kb]):
                rows.append((ka, la, kb, lb, float(T[r, c])))
    df = pd.DataFrame(rows, columns=["model_a", "layer_a", "model_b", "layer_b", "value"])
    df.attrs.update(measure=measure, n_examples=n, larger_is_more_similar=bool(larger))
    return df


class _all_on_device:
    """``on_device`` for a dict of models."""

    def __init__(self, named: dict[str, nn.Module], device: str | torch.device) -> None:
        self.ctx = [on_device(m, device) for m in {id(m): m for m in named.values()}.values()]

    def __enter__(self) -> None:
        for c in self.ctx:
            c.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for c in reversed(self.ctx):
            c.__exit__(*exc)


def _full_batch_many(named: dict[str, nn.Module], lists: dict[str, list[str]], data: Any, measure: str, entry: Any,
                     kwargs: dict[str, Any], pairs: list[tuple[int, int]], batch_size: int,
                     device: str | torch.device, n: int | None, nb: int | None, max_memory_gb: float,
                     progress: bool) -> tuple[dict[tuple[int, int], np.ndarray], int]:
    """Each model forward once over the data; linear CKA keeps only centred Grams/features between models."""
    from zooscope.measures.minibatch import _Layer

    cap = float(max_memory_gb) * 2**30
    keys = list(named)
    held = 0  # bytes kept from models already done (Grams / centred features, or raw activations)
    kept: list[list[Any]] = []
    n_seen = 0
    for k in keys:
        chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in lists[k]}
        seen = 0
        with on_device(named[k], device):
            stream = iter_activations(named[k], iter_batches(data, batch_size), lists[k], device=device)
            try:
                desc = f"{k}: forward passes"
                for acts in track(stream, total=nb, description=desc, enabled=progress):
                    seen += next(iter(acts.values())).shape[0]
                    per_example = sum(t[0].numel() * t.element_size() for t in acts.values())
                    projected = held + per_example * max(n or 0, seen)
                    if projected > cap:
                        raise _memory_error(max(n or 0, seen), projected, max_memory_gb)
                    for layer, t in acts.items():
                        chunks[layer].append(t)
            finally:
                stream.close()
        if seen == 0:
            raise ZooscopeInputError("data holds no batches; pass at least one example.")
        n_seen = seen
        acts = [torch.cat(chunks.pop(layer)) for layer in lists[k]]
        if measure in _CKA:
            layers = []
            for i, t in enumerate(track(acts, total=len(acts), description=f"{k}: centring, Grams",
                                        enabled=progress)):
                layers.append(_Layer(t, f"{k} layer {lists[k][i]!r}", seen, exact=False,
                                     debiased=kwargs["debiased"]))
            del acts
            kept.append(layers)
            held += sum(u.K.numel() * u.K.element_size() if u.is_gram else u.X.numel() * u.X.element_size()
                        for u in layers)
        else:
            kept.append(acts)
            held += sum(t.numel() * t.element_size() for t in acts)
        if held > cap:
            raise _memory_error(seen, held, max_memory_gb)
    if measure in _CKA:
        return _tables(kept, kwargs["debiased"], pairs), n_seen
    tables, grams = {}, {}
    for i, j in track(pairs, total=len(pairs), description=f"{measure} per model pair", enabled=progress):
        tables[(i, j)] = _pairwise(entry, kept[i], kept[j], kwargs, False, grams)
    return tables, n_seen
