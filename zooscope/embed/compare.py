"""``compare(model_a, model_b, data)``: a layer × layer table of one similarity measure; ``compare_many`` for N nets.

Two paths:

* **Full-batch** measures (any registered measure with ``layerwise=True``): both models see the same
  inputs, one hooked forward pass per model per batch records every layer, the activations are collected
  on ``device`` in their own dtype (bounded by ``max_memory_gb``), then every layer pair is scored.
  ``linear_cka`` centres each layer once and builds each wide layer's Gram once, reused for every pair
  (`zooscope.measures.minibatch`); ``inputs="gram"`` measures get ``gram_linear`` of each layer.
* **Streaming comparers** (the `COMPARERS` registry, `zooscope.embed._comparers`): measures that need their
  own pass over the data, in bounded memory. ``minibatch_cka`` streams through ``MinibatchCKA`` in O(L·B²)
  memory for any n. It estimates the **debiased** (HSIC₁, Song et al. 2012) CKA, averaged over batches
  (Nguyen, Raghu, Kornblith 2021), so it tracks ``linear_cka(debiased=True)``, not the biased full-batch
  value. Plugin modules register more (``zooscope.embed.gradsketch`` adds ``grad_cka``, ``grad_nbs``,
  ``grad_euclidean``).

The CKA hot path (hooks, flatten, centring, Grams, U-centring, the stacked HSIC matmul) runs in torch on the
models' device: no numpy BLAS call, and no thread count is changed (torch's own pool, as the user set it).
"""

from __future__ import annotations

import difflib
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

from zooscope._progress import track
from zooscope._validation import ZooscopeInputError
from zooscope.embed._comparers import COMPARERS, ComparerMeta
from zooscope.embed.capture import (
    iter_activations,
    iter_batches,
    n_examples,
    on_device,
    resolve_data,
    resolve_layers,
)
from zooscope.measures._base import MEASURES

__all__ = ["COMPARERS", "check_measure", "compare", "usable_measures"]

log = logging.getLogger(__name__)

Pairs = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
_CKA = ("linear_cka", "linear_cka_debiased")


def _load_plugins() -> None:
    """Import every plugin module of `PLUGINS` (idempotent). A missing or broken one raises."""
    COMPARERS.load()


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


@COMPARERS.register(ComparerMeta())
def minibatch_cka(
    model_a: nn.Module, model_b: nn.Module, pairs: Pairs, layers_a: list[str], layers_b: list[str], *,
    device: str | torch.device = "cpu", progress: bool = False, total: int | None = None,
    description: str = "minibatch CKA",
) -> np.ndarray:
    """Minibatch linear CKA of every layer pair, streamed: one forward per model per batch, O(L·B²) memory.

    Per batch the unbiased HSIC₁ of every pair is accumulated (all pairs in one matmul, in
    ``MinibatchCKA``, on ``device``); CKA is read off at the end. It tracks **debiased** CKA. Batches need
    ≥ 4 examples.

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


def usable_measures() -> list[str]:
    """Every name `compare` accepts: layer-wise measures of activations or Grams, and the streaming comparers."""
    _load_plugins()
    layerwise = [m for m in MEASURES.available()
                 if MEASURES.get(m).layerwise and MEASURES.get(m).inputs in ("features", "gram")]
    return sorted({*layerwise, *COMPARERS.available()})


def _unknown_measure(name: str) -> ZooscopeInputError:
    valid = usable_measures()  # suggestions only among names compare can use (not linear_probe)
    near = difflib.get_close_matches(str(name), valid, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return ZooscopeInputError(f"Unknown measure {name!r}.{hint} Valid names: {', '.join(valid)}.")


def check_measure(measure: str) -> None:
    """Raise the one clear error for a name that is neither a layer-wise measure nor a streaming comparer."""
    _load_plugins()
    if measure in COMPARERS:
        return
    if measure not in MEASURES:
        raise _unknown_measure(measure)
    entry = MEASURES.get(measure)
    if not entry.layerwise or entry.inputs not in ("features", "gram"):
        raise ZooscopeInputError(
            f"measure {measure!r} does not compare two layers' activations (inputs={entry.inputs!r}); "
            f"use one of: {', '.join(usable_measures())}."
        )


def _n_batches(data: Any, n: int | None, batch_size: int) -> int | None:
    if n is None:
        return None
    return len(data) if isinstance(data, DataLoader) else math.ceil(n / batch_size)


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
    data : DataLoader, Dataset, Tensor, numpy array, or a dataset spec (str or path)
        Inputs of shape (n, ...); both models see identical batches in identical order (a DataLoader must
        not shuffle between passes if the measure makes several). A spec (``"builtin:digits"``, a ``.npz``
        file, an image folder, … — what ``zooscope compare --data`` accepts) is loaded whole with
        `zooscope.embed.capture.load_inputs` (call it yourself for a seeded subset).
    layers_a, layers_b : sequence of str, optional
        Module names (or one comma-separated string); default
        `zooscope.embed.capture.default_layers`. ``layers_b`` defaults to those of ``model_b``.
    measure : str, default="linear_cka"
        ``"linear_cka"`` (the full-batch value, ``measures.linear_cka`` on the collected activations),
        any registered measure with ``layerwise=True``, or a streaming comparer such as ``"minibatch_cka"``
        (debiased CKA in bounded memory, any n).
    batch_size : int, default=256
        Examples per forward pass (a DataLoader keeps its own).
    device : str or torch.device, default="cpu"
        Where the forwards and the CKA algebra run (e.g. ``"cuda"``); activations never leave it.
    data_b : optional
        Different inputs for ``model_b`` (cross-dataset), only for comparers registered with
        ``cross_dataset=True``.
    max_memory_gb : float, default=4.0
        Full-batch measures fail, naming ``minibatch_cka``, once the activations they must hold would pass
        this (bytes of every layer of both models for every example, in the activations' dtype).
    progress : bool, default=False
        Rich progress bars on stderr: the forward passes, then the measure stage (per layer for
        ``linear_cka``, per layer pair for other full-batch measures).
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
    >>> from zooscope.nets.models import small_cnn
    >>> net = small_cnn(seed=0)
    >>> table = compare(net, net, torch.randn(64, 1, 28, 28), measure="linear_cka")
    >>> [round(float(table.loc[n, n]), 6) for n in table.index]
    [1.0, 1.0, 1.0, 1.0]
    """
    check_measure(measure)
    names_a = resolve_layers(model_a, layers_a)
    names_b = resolve_layers(model_b, layers_b if layers_b is not None or model_b is not model_a else names_a)
    data = resolve_data(data)
    n = n_examples(data)
    nb = _n_batches(data, n, batch_size)
    desc = f"Comparing {len(names_a)} × {len(names_b)} layers" + (f" on {n:,} inputs" if n else "")

    if measure in COMPARERS:
        entry = COMPARERS.get(measure)
        if data_b is not None and not entry.cross_dataset:
            cross = [k for k in COMPARERS.available() if COMPARERS.get(k).cross_dataset]
            raise ZooscopeInputError(
                f"measure {measure!r} compares both models on the same inputs; data_b is only for "
                f"cross-dataset comparers ({', '.join(cross) or 'none registered'})."
            )
        if data_b is not None:
            data_b = resolve_data(data_b)
        if data_b is not None and n is not None and n_examples(data_b) not in (None, n):
            raise ZooscopeInputError(
                f"data has {n} examples but data_b has {n_examples(data_b)}; cross-dataset comparison pairs "
                "them by index, so pass the same number of each."
            )

        def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            if data_b is None:
                return ((x, x) for x in iter_batches(data, batch_size))
            return zip(iter_batches(data, batch_size), iter_batches(data_b, batch_size), strict=True)

        _check_kwargs(measure, entry.fn, 5, measure_kwargs)
        extra = {"total": nb, "description": desc} if entry.fn is minibatch_cka else {}
        with on_device(model_a, device), on_device(model_b, device):
            values = entry.fn(model_a, model_b, pairs, names_a, names_b, device=device, progress=progress,
                              **extra, **measure_kwargs)
        larger = entry.larger_is_more_similar
    else:
        entry = MEASURES.get(measure)
        if data_b is not None:
            raise ZooscopeInputError(
                f"data_b is only for cross-dataset comparers; {measure!r} needs both models on the same inputs."
            )
        _check_kwargs(measure, entry.fn, 2, measure_kwargs)
        kwargs = _cka_kwargs(measure, measure_kwargs) if measure in _CKA else measure_kwargs
        acts_a, acts_b = _collect(model_a, model_b, data, names_a, names_b, batch_size, device, n, nb,
                                  max_memory_gb, progress, desc)
        if measure in _CKA:
            values = _cka_tables([list(acts_a.values()), list(acts_b.values())], kwargs["debiased"],
                                 progress)[(0, 1)]
        else:
            warn_if_slow(measure, acts_a, acts_b)
            values = _pairwise(entry, list(acts_a.values()), list(acts_b.values()), kwargs, progress)
        larger = entry.larger_is_more_similar
        n = int(next(iter(acts_a.values())).shape[0])

    df = pd.DataFrame(np.asarray(values, dtype=np.float64), index=pd.Index(names_a, name="layer_a"),
                      columns=pd.Index(names_b, name="layer_b"))
    df.attrs.update(measure=measure, n_examples=n, larger_is_more_similar=bool(larger))
    return df


def warn_if_slow(measure: str, acts_a: dict[str, torch.Tensor], acts_b: dict[str, torch.Tensor],
                 limit_s: float = 60.0) -> float:
    """Estimate the measure stage's seconds before it starts; warn in one line above ``limit_s``.

    Uses `zooscope.measures.gramform.estimate_seconds`. Returns the estimate.
    """
    from zooscope.measures.gramform import estimate_seconds

    first = next(iter(acts_a.values()))
    n = int(first.shape[0])
    widths = [[int(t[0].numel()) for t in acts.values()] for acts in (acts_a, acts_b)]
    try:
        est = float(estimate_seconds(measure, n, widths[0], widths[1]))
    except Exception:  # a measure the cost model does not know: no estimate, no warning
        return float("nan")
    if est > limit_s:
        log.warning("%s on %d × %d layer pairs of %s examples: about %s of work on this machine (estimate)",
                    measure, len(widths[0]), len(widths[1]), f"{n:,}",
                    f"{est / 60:.0f} min" if est < 5400 else f"{est / 3600:.1f} h")
    return est


def _cka_kwargs(measure: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    debiased = bool(kwargs.pop("debiased", measure == "linear_cka_debiased"))
    if kwargs:
        raise ZooscopeInputError(f"{measure} takes only 'debiased'; got {sorted(kwargs)}.")
    return {"debiased": debiased}


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


def _memory_error(examples: int, need: float, max_memory_gb: float) -> ZooscopeInputError:
    return ZooscopeInputError(
        f"Full-batch activations of {examples:,} examples need {need / 2**30:.2f} GB (> max_memory_gb="
        f"{max_memory_gb}). Use measure='minibatch_cka' (streams any n in O(L·B²) memory), fewer examples or "
        "layers, or raise max_memory_gb."
    )


def _collect(
    model_a: nn.Module, model_b: nn.Module, data: Any, names_a: list[str], names_b: list[str],
    batch_size: int, device: str | torch.device, n: int | None, nb: int | None, max_memory_gb: float,
    progress: bool, desc: str,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Collect full-batch activations of both models (on ``device``, their own dtype), enforcing the memory cap.

    A layer shared by both sides (the same model on the same inputs) is the same tensor in both dicts.
    """
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
                distinct = {id(t): t for t in [*acts_a.values(), *acts_b.values()]}
                per_example = sum(t[0].numel() * t.element_size() for t in distinct.values())
                seen += rows
                held = per_example * seen
                projected = per_example * max(n or 0, seen)
                if projected > cap:
                    raise _memory_error(max(n or 0, seen), projected, max_memory_gb)
                for k in names_a:
                    chunks_a[k].append(acts_a[k])
                for k in names_b:
                    if k in acts_a and acts_b[k] is acts_a[k]:
                        continue
                    chunks_b[k].append(acts_b[k])
        finally:
            stream.close()
    log.debug("collected %d examples, %.1f MB of activations", seen, held / 2**20)
    out_a = {k: torch.cat(v) for k, v in chunks_a.items()}
    out_b = {k: torch.cat(v) if v else out_a[k] for k, v in chunks_b.items()}
    return out_a, out_b


def _cka_tables(groups: list[list[torch.Tensor]], debiased: bool, progress: bool,
                pairs: Sequence[tuple[int, int]] | None = None) -> dict[tuple[int, int], np.ndarray]:
    """Linear CKA tables between groups of layers (one group per model).

    Each layer centred and its Gram built once, every Gram·Gram product in one stacked matmul
    (`zooscope.measures.minibatch`).
    """
    from zooscope.measures.minibatch import _Layer

    cache: dict[int, _Layer] = {}
    todo = [(g, i, t) for g, layers in enumerate(groups) for i, t in enumerate(layers)]
    built: list[list[_Layer]] = [[] for _ in groups]
    n = int(groups[0][0].shape[0])
    for g, i, t in track(todo, total=len(todo), description="centring layers, building Grams", enabled=progress):
        if id(t) not in cache:
            cache[id(t)] = _Layer(t, f"model {g} layer {i}", n, exact=False, debiased=debiased)
        built[g].append(cache[id(t)])
    return _tables(built, debiased, pairs)


def _tables(built: list, debiased: bool,
            pairs: Sequence[tuple[int, int]] | None) -> dict[tuple[int, int], np.ndarray]:
    from zooscope.measures.minibatch import _Table

    table = _Table(built, debiased)
    for g in range(len(built)):
        table.check(g, f"model {g} layer")
    pairs = pairs if pairs is not None else [(i, j) for i in range(len(built)) for j in range(len(built)) if i < j]
    return {(i, j): table.block(i, j) for i, j in pairs}


def _pairwise(entry: Any, A: list[torch.Tensor], B: list[torch.Tensor], kwargs: dict[str, Any],
              progress: bool, grams: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Score every (layer_a, layer_b) pair with a full-batch measure (numpy float64, off the CKA hot path).

    ``grams`` caches, by tensor identity across calls, the linear Grams of ``inputs="gram"`` measures and the
    Gram-form factors of ``factorable`` ones (`zooscope.measures.gramform.prepare_layer`: a layer with more
    features than examples becomes its n × r factor, built once and used for every pair; same values).
    """
    from zooscope import measures as M

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    An = [host(a) for a in A]
    where = {id(a): k for k, a in enumerate(A)}
    Bn = [An[where[id(b)]] if id(b) in where else host(b) for b in B]
    if entry.inputs == "gram":  # cka(K, L), nbs(K, L): linear Grams, each built once
        grams = {} if grams is None else grams
        for t, x in [*zip(A, An, strict=True), *zip(B, Bn, strict=True)]:
            if id(t) not in grams:
                grams[id(t)] = M.gram_linear(x.astype(np.float64))
        An, Bn = [grams[id(t)] for t in A], [grams[id(t)] for t in B]
    elif entry.factorable and "form" not in kwargs:  # SVD-based: a wide layer in the Gram form, factored once
        from zooscope.measures.gramform import prepare_layer

        grams = {} if grams is None else grams
        todo = list({id(t): (t, x) for t, x in [*zip(A, An, strict=True), *zip(B, Bn, strict=True)]
                     if id(t) not in grams}.values())
        for t, x in track(todo, total=len(todo), description=f"{entry.name}: factoring layers", enabled=progress):
            grams[id(t)] = prepare_layer(entry.name, x)
        An, Bn = [grams[id(t)] for t in A], [grams[id(t)] for t in B]
    out = np.empty((len(An), len(Bn)))
    cells = [(i, j) for i in range(len(An)) for j in range(len(Bn))]
    for i, j in track(cells, total=len(cells), description=f"{entry.name} per layer pair", enabled=progress):
        out[i, j] = float(entry(An[i], Bn[j], **kwargs))
    return out
