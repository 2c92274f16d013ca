"""``compare(model_a, model_b, data)``: a layer × layer table of one similarity measure.

Two paths:

* **Full-batch** measures (any registered measure with ``layerwise=True``): both models see the same
  inputs, one hooked forward pass per model per batch records every layer, the activations are collected
  (bounded by ``max_memory_gb``), then every layer pair is scored. ``linear_cka`` goes through
  ``linear_cka_matrix`` (all pairs at once); ``inputs="gram"`` measures get ``gram_linear`` of each layer.
* **Streaming comparers** (`COMPARERS`): measures that need their own pass over the data, in bounded memory.
  ``minibatch_cka`` streams through ``MinibatchCKA`` in O(L·B²) memory for any n. It estimates the
  **debiased** (HSIC₁, Song et al. 2012) CKA, averaged over batches (Nguyen, Raghu, Kornblith 2021), so it
  tracks ``linear_cka(debiased=True)``, not the biased full-batch value. Other modules add comparers with
  `register_comparer` (``zooscope.embed.gradsketch`` adds ``grad_cka`` and ``grad_nbs``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from zooscope._validation import ZooscopeInputError
from zooscope.embed.capture import (
    iter_activations,
    iter_batches,
    n_examples,
    on_device,
    resolve_layers,
    track,
)
from zooscope.measures._base import MEASURES

__all__ = ["COMPARERS", "compare", "register_comparer"]

log = logging.getLogger(__name__)

Pairs = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
Comparer = Callable[..., np.ndarray]

COMPARERS: dict[str, Comparer] = {}
"""Streaming comparers by name: ``fn(model_a, model_b, pairs, layers_a, layers_b, *, device, progress, **kw)``
returning an (La, Lb) array. ``pairs()`` returns a fresh iterator of ``(x_a, x_b)`` input batches (the same
tensor twice unless ``data_b`` was given). Set ``fn.cross_dataset = True`` to accept ``data_b``."""

_PLUGINS = ("zooscope.embed.gradsketch",)  # modules that register comparers when imported


def register_comparer(name: str) -> Callable[[Comparer], Comparer]:
    """Register a streaming comparer under ``name`` (see `COMPARERS` for the signature)."""

    def add(fn: Comparer) -> Comparer:
        if name in COMPARERS or name in MEASURES:
            raise RuntimeError(f"comparer {name!r} is registered twice (or clashes with a measure)")
        COMPARERS[name] = fn
        return fn

    return add


def _load_plugins() -> None:
    for mod in _PLUGINS:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(mod)


def _pair_models(
    model_a: nn.Module, model_b: nn.Module, layers_a: list[str], layers_b: list[str], pairs: Pairs,
    device: str | torch.device, flatten: str = "full",
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Per batch pair, one hooked forward of each model (a single one when A is B on the same inputs).

    Yields ``(acts_a, acts_b)`` dicts of (batch, n_features) tensors.
    """
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def side(i: int) -> Iterator[torch.Tensor]:  # replays the pair currently being processed
        while True:
            yield batches[-1][i]

    it = pairs()
    first = next(it, None)
    if first is None:
        raise ZooscopeInputError("data holds no batches; pass at least one example.")
    shared = model_a is model_b and first[0] is first[1]
    if shared:
        union = list(dict.fromkeys([*layers_a, *layers_b]))
        gen_a = iter_activations(model_a, side(0), union, device=device, flatten=flatten)
        gen_b = None
    else:
        gen_a = iter_activations(model_a, side(0), layers_a, device=device, flatten=flatten)
        gen_b = iter_activations(model_b, side(1), layers_b, device=device, flatten=flatten)
    try:
        pair: tuple[torch.Tensor, torch.Tensor] | None = first
        while pair is not None:
            if shared and pair[0] is not pair[1]:
                raise RuntimeError("pairs() mixed shared and separate inputs")
            batches.append(pair)
            if len(pair[0]) != len(pair[1]):
                raise ZooscopeInputError(
                    f"data and data_b gave batches of {len(pair[0])} and {len(pair[1])} examples; "
                    "they must batch the same number of examples."
                )
            acts_a = next(gen_a)
            acts_b = acts_a if gen_b is None else next(gen_b)
            yield {n: acts_a[n] for n in layers_a}, {n: acts_b[n] for n in layers_b}
            batches.clear()
            pair = next(it, None)
    finally:
        gen_a.close()
        if gen_b is not None:
            gen_b.close()


@register_comparer("minibatch_cka")
def minibatch_cka(
    model_a: nn.Module, model_b: nn.Module, pairs: Pairs, layers_a: list[str], layers_b: list[str], *,
    device: str | torch.device = "cpu", progress: bool = False, total: int | None = None,
    description: str = "minibatch CKA",
) -> np.ndarray:
    """Minibatch linear CKA of every layer pair, streamed: one forward per model per batch, O(L·B²) memory.

    Per batch the unbiased HSIC₁ of every pair is accumulated (all pairs in one matmul, in
    ``MinibatchCKA``); CKA is read off at the end. It tracks **debiased** CKA. Batches need ≥ 4 examples.

    Returns
    -------
    numpy.ndarray of shape (len(layers_a), len(layers_b))
    """
    from zooscope.measures.minibatch import MinibatchCKA

    acc = MinibatchCKA(len(layers_a), len(layers_b))
    stream = _pair_models(model_a, model_b, layers_a, layers_b, pairs, device)
    try:
        for acts_a, acts_b in track(stream, total=total, description=description, enabled=progress):
            acc.update([acts_a[n] for n in layers_a], [acts_b[n] for n in layers_b])
    finally:
        stream.close()
    return np.asarray(acc.result(), dtype=np.float64)


def _unknown_measure(name: str) -> ZooscopeInputError:
    valid = sorted([*MEASURES.available(), *COMPARERS])
    near = difflib.get_close_matches(str(name), valid, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return ZooscopeInputError(f"Unknown measure {name!r}.{hint} Valid names: {', '.join(valid)}.")


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    layers_a: Sequence[str] | str | None = None,
    layers_b: Sequence[str] | str | None = None,
    measure: str = "linear_cka",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    *,
    data_b: Any = None,
    max_memory_gb: float = 4.0,
    progress: bool = False,
    **measure_kwargs: Any,
) -> pd.DataFrame:
    """Compare two networks layer by layer on the same inputs.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The networks (may be the same object). They are switched to eval mode for the call (each module's
        flag is restored after), run under ``torch.no_grad()``, and moved to ``device`` and back.
    data : DataLoader, Dataset, Tensor or numpy array
        Inputs of shape (n, ...); both models see identical batches in identical order (a DataLoader must
        not shuffle between passes if the measure makes several).
    layers_a, layers_b : sequence of str, optional
        Module names (or one comma-separated string); default
        `zooscope.embed.capture.default_layers`. ``layers_b`` defaults to those of ``model_b``.
    measure : str, default="linear_cka"
        ``"linear_cka"`` (the full-batch value, exactly ``measures.linear_cka`` on the collected activations),
        any registered measure with ``layerwise=True``, or a streaming comparer such as ``"minibatch_cka"``
        (debiased CKA in bounded memory, any n).
    batch_size : int, default=256
        Examples per forward pass (a DataLoader keeps its own).
    device : str or torch.device, default="cpu"
    data_b : optional
        Different inputs for ``model_b`` (cross-dataset), only for comparers that declare
        ``cross_dataset = True``.
    max_memory_gb : float, default=4.0
        Full-batch measures fail, naming ``minibatch_cka``, once the activations they must hold would pass
        this (float32 bytes of every layer of both models for every example).
    progress : bool, default=False
        A Rich progress bar over batches on stderr.
    **measure_kwargs
        Passed to the measure, e.g. ``debiased=True`` for ``linear_cka``.

    Returns
    -------
    pandas.DataFrame of shape (len(layers_a), len(layers_b))
        Index = layers of A, columns = layers of B. ``attrs`` holds ``measure``, ``n_examples`` and
        ``larger_is_more_similar``.

    Raises
    ------
    ZooscopeInputError
        Unknown measure (close matches and every valid name), unknown layer (every valid name), a measure
        that cannot compare layers, ``data_b`` with a measure that does not take it, or the memory cap.

    Examples
    --------
    >>> import torch
    >>> from zooscope.zoo.models import small_cnn
    >>> net = small_cnn(seed=0)
    >>> table = compare(net, net, torch.randn(64, 1, 28, 28), measure="linear_cka")
    >>> [round(float(table.loc[n, n]), 6) for n in table.index]
    [1.0, 1.0, 1.0, 1.0]
    """
    _load_plugins()
    names_a = resolve_layers(model_a, layers_a)
    names_b = resolve_layers(model_b, layers_b if layers_b is not None or model_b is not model_a else names_a)
    n = n_examples(data)
    if isinstance(data, DataLoader):
        nb = len(data) if n is not None else None  # the loader's own batch size
    else:
        nb = math.ceil(n / batch_size) if n is not None else None
    desc = f"Comparing {len(names_a)} × {len(names_b)} layers" + (f" on {n:,} inputs" if n else "")

    if measure in COMPARERS:
        fn = COMPARERS[measure]
        if data_b is not None and not getattr(fn, "cross_dataset", False):
            cross = [k for k, f in COMPARERS.items() if getattr(f, "cross_dataset", False)]
            raise ZooscopeInputError(
                f"measure {measure!r} compares both models on the same inputs; data_b is only for "
                f"cross-dataset comparers ({', '.join(cross) or 'none registered'})."
            )

        if data_b is not None and n is not None and n_examples(data_b) not in (None, n):
            raise ZooscopeInputError(
                f"data has {n} examples but data_b has {n_examples(data_b)}; cross-dataset comparison pairs "
                "them by index, so pass the same number of each."
            )

        def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            if data_b is None:
                return ((x, x) for x in iter_batches(data, batch_size))
            return zip(iter_batches(data, batch_size), iter_batches(data_b, batch_size), strict=True)

        _check_kwargs(measure, fn, 5, measure_kwargs)
        extra = {"total": nb, "description": desc} if fn is minibatch_cka else {}
        with on_device(model_a, device), on_device(model_b, device):
            values = fn(model_a, model_b, pairs, names_a, names_b, device=device, progress=progress,
                        **extra, **measure_kwargs)
        larger = getattr(fn, "larger_is_more_similar", True)
    else:
        if measure not in MEASURES:
            raise _unknown_measure(measure)
        entry = MEASURES.get(measure)
        if not entry.layerwise or entry.inputs not in ("features", "gram"):
            raise ZooscopeInputError(
                f"measure {measure!r} does not compare two layers' activations (inputs={entry.inputs!r}); "
                f"use one of: {', '.join(['linear_cka', *COMPARERS])}."
            )
        if data_b is not None:
            raise ZooscopeInputError(
                f"data_b is only for cross-dataset comparers; {measure!r} needs both models on the same inputs."
            )
        _check_kwargs(measure, entry.fn, 2, measure_kwargs)
        acts_a, acts_b = _collect(model_a, model_b, data, names_a, names_b, batch_size, device, n, nb,
                                  max_memory_gb, progress, desc)
        values = _pairwise(measure, entry, acts_a, acts_b, measure_kwargs)
        larger = entry.larger_is_more_similar
        n = int(next(iter(acts_a.values())).shape[0])

    df = pd.DataFrame(np.asarray(values, dtype=np.float64), index=pd.Index(names_a, name="layer_a"),
                      columns=pd.Index(names_b, name="layer_b"))
    df.attrs.update(measure=measure, n_examples=n, larger_is_more_similar=bool(larger))
    return df


def _check_kwargs(measure: str, fn: Callable[..., Any], n_positional: int, kwargs: dict[str, Any]) -> None:
    """Unknown or misspelt measure options fail before any forward pass, naming the valid ones."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind_partial(*range(n_positional), **kwargs)
    except TypeError as e:
        valid = [p.name for p in list(sig.parameters.values())[n_positional:]
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("device", "progress")]
        raise ZooscopeInputError(
            f"measure {measure!r} does not take {sorted(kwargs)} ({e}); its options: {', '.join(valid) or 'none'}."
        ) from None


def _collect(
    model_a: nn.Module, model_b: nn.Module, data: Any, names_a: list[str], names_b: list[str],
    batch_size: int, device: str | torch.device, n: int | None, nb: int | None, max_memory_gb: float,
    progress: bool, desc: str,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Collect full-batch activations (float32, CPU) of both models, enforcing the memory cap."""
    cap = float(max_memory_gb) * 2**30
    chunks_a: dict[str, list[torch.Tensor]] = {k: [] for k in names_a}
    chunks_b: dict[str, list[torch.Tensor]] = {k: [] for k in names_b}

    def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return ((x, x) for x in iter_batches(data, batch_size))

    held = seen = 0
    with on_device(model_a, device), on_device(model_b, device):
        stream = _pair_models(model_a, model_b, names_a, names_b, pairs, device)
        try:
            for acts_a, acts_b in track(stream, total=nb, description=desc, enabled=progress):
                rows = next(iter(acts_a.values())).shape[0]
                per_example = 4 * (sum(t[0].numel() for t in acts_a.values())
                                   + sum(t[0].numel() for t in acts_b.values()))
                seen += rows
                held = per_example * seen
                projected = per_example * max(n or 0, seen)
                if projected > cap:
                    raise ZooscopeInputError(
                        f"Full-batch activations of {max(n or 0, seen):,} examples need "
                        f"{projected / 2**30:.2f} GB (> max_memory_gb={max_memory_gb}). Use "
                        "measure='minibatch_cka' (streams any n in O(L·B²) memory), fewer examples or "
                        "layers, or raise max_memory_gb."
                    )
                for k in names_a:
                    chunks_a[k].append(acts_a[k].float().cpu())
                for k in names_b:
                    chunks_b[k].append(acts_b[k].float().cpu())
        finally:
            stream.close()
    log.debug("collected %d examples, %.1f MB of activations", seen, held / 2**20)
    return ({k: torch.cat(v) for k, v in chunks_a.items()}, {k: torch.cat(v) for k, v in chunks_b.items()})


def _pairwise(measure: str, entry: Any, acts_a: dict[str, torch.Tensor], acts_b: dict[str, torch.Tensor],
              kwargs: dict[str, Any]) -> np.ndarray:
    """Score every (layer_a, layer_b) pair with a full-batch measure."""
    from zooscope import measures as M

    A = [a.numpy() for a in acts_a.values()]
    B = A if acts_b is acts_a else [b.numpy() for b in acts_b.values()]
    if measure in ("linear_cka", "linear_cka_debiased") and hasattr(M, "linear_cka_matrix"):
        debiased = bool(kwargs.pop("debiased", measure == "linear_cka_debiased"))
        if kwargs:
            raise ZooscopeInputError(f"{measure} takes only 'debiased'; got {sorted(kwargs)}.")
        return np.asarray(M.linear_cka_matrix(A, B, debiased=debiased), dtype=np.float64)
    if entry.inputs == "gram":  # cka(K, L), nbs(K, L): linear Grams, each built once
        Ka = [M.gram_linear(a.astype(np.float64)) for a in A]
        Kb = Ka if B is A else [M.gram_linear(b.astype(np.float64)) for b in B]
        A, B = Ka, Kb
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            out[i, j] = float(entry(a, b, **kwargs))
    return out
