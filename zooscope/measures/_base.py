"""Measure metadata and the measure registry (STYLE.md §3).

Every registered measure is wrapped once, here, by the same boundary guard (issue 13), so the rules hold for
every measure module without each repeating them:

* complex arrays or tensors and torch ``meta`` tensors raise :class:`~zooscope.ZooscopeInputError` before the
  measure runs (never a silent real part);
* torch tensors given to a measure that is not differentiable are detached, copied to the CPU and half
  precision is upcast, so ``nce(probs.requires_grad_(), y)`` and CUDA activations just work; differentiable
  measures (``MeasureMeta.differentiable``) receive the tensors untouched and keep the autograd graph;
* the value returned is checked: NaN, or a value outside the registered ``bounds`` by more than round-off,
  raises :class:`~zooscope.ZooscopeInputError` instead of being returned; round-off just outside a bound
  (``BOUND_RTOL``) is clipped onto it.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Literal

from zooscope._registry import Entry, Registry
from zooscope._validation import ZooscopeInputError, _is_torch, _to_numpy, check_tensor_like

#: Relative slack (of max(1, |bound|)) within which a value just outside a registered bound is clipped onto it.
BOUND_RTOL = 1e-8


class Inv(enum.Flag):
    """Transformations of Y (rows = examples) a measure may be invariant to."""

    NONE = 0
    TRANSLATION = enum.auto()  # X + 1 b^T
    ISOTROPIC_SCALE = enum.auto()  # c X
    ORTHOGONAL = enum.auto()  # X Q, Q^T Q = I
    PERMUTATION = enum.auto()  # reorder the units (columns)
    INVERTIBLE_LINEAR = enum.auto()  # X W, W invertible


@dataclass(frozen=True)
class TransferMeta:
    """What model selection (`zooscope.zoo.select`) needs of a transferability score.

    ``method`` is the name select offers and its table's column (an alias of the measure when it differs, e.g.
    ``hscore`` for ``h_score``); ``source`` what select passes with the target labels: the candidate's pre-logits
    ``"features"``, its source head's softmax ``"probs"``, or that softmax's argmax ``"labels"``; ``display`` the
    name in the ``why`` text; ``order`` the method's place in select's list. The direction is the measure's
    ``larger_is_more_similar`` (larger = more transferable).
    """

    method: str
    source: Literal["features", "probs", "labels"]
    display: str
    order: int


@dataclass(frozen=True)
class MeasureMeta:
    """What a measure promises; the contract tests check every flag.

    ``invariances`` must HOLD on generic data and ``not_invariant`` must FAIL on generic data.
    ``layerwise`` says whether ``compare()`` can use the measure on (activations_a, activations_b).
    ``differentiable``: torch inputs keep their autograd graph (they are not detached by the registry guard).
    """

    larger_is_more_similar: bool
    symmetric: bool
    invariances: Inv
    not_invariant: Inv = Inv.NONE
    is_metric: bool = False
    bounds: tuple[float, float] | None = None
    inputs: Literal["features", "gram", "covariance", "correlation", "other"] = "features"
    min_samples: int = 2
    layerwise: bool = True
    stochastic: bool = False
    differentiable: bool = False
    #: ((option, value, bounds), ...): an option that changes the range, e.g. (("debiased", True, (-1.0, 1.0)),)
    bounds_by_option: tuple[tuple[str, Any, tuple[float, float]], ...] = ()
    reference: str = ""
    #: a transferability score's metadata for model selection (None for every other measure)
    transfer: TransferMeta | None = None


def _arg_in(value: Any, name: str, differentiable: bool) -> Any:
    """One argument through the boundary rules (arrays and tensors only; options pass unchanged)."""
    if _is_torch(value):
        check_tensor_like(value, name)
        return value if differentiable else _to_numpy(value, name)
    check_tensor_like(value, name)
    return value


def _scalar(value: Any) -> float | None:
    """Return the number a measure returned (float, numpy or 0-d torch scalar, or an estimate's ``.value``)."""
    v = getattr(value, "value", value)  # MCEstimate(value, se)
    if _is_torch(v):
        return float(v.detach().cpu()) if v.numel() == 1 else None
    if isinstance(v, bool):
        return None
    try:
        return float(v) if isinstance(v, int | float) or getattr(v, "shape", None) == () else None
    except (TypeError, ValueError):
        return None


def _check_value(name: str, bounds: tuple[float, float] | None, out: Any) -> Any:
    v = _scalar(out)
    if v is None:
        return out
    if math.isnan(v):
        raise ZooscopeInputError(
            f"{name} is undefined for these inputs (the computation gave NaN): the activations are numerically "
            "degenerate (e.g. constant, duplicated or extremely scaled columns). Check them, or choose another "
            "layer or measure."
        )
    if bounds is None:
        return out
    lo, hi = bounds
    tol_lo, tol_hi = BOUND_RTOL * max(1.0, abs(lo)), BOUND_RTOL * max(1.0, abs(hi))
    if lo - tol_lo <= v <= hi + tol_hi:
        if (v < lo or v > hi) and type(out) is float:
            return min(max(out, lo), hi)
        return out
    raise ZooscopeInputError(
        f"{name} gave {v!r}, outside its bounds [{lo}, {hi}]: the inputs are numerically degenerate for this "
        "measure (e.g. near-constant or extremely scaled columns, or far fewer examples than features). "
        "Standardise or PCA-reduce the activations, or choose another measure."
    )


class MeasureRegistry(Registry[MeasureMeta]):
    """The registry of measures: registering wraps the function in the boundary guard (module docstring)."""

    def register(self, meta: MeasureMeta, name: str | None = None,  # type: ignore[override]
                 aliases: tuple[str, ...] = ()):
        """Register (guarded); a transfer score's select method name is an alias when it differs."""

        def add(fn):
            key = name or fn.__name__
            method = meta.transfer.method if meta.transfer is not None else key
            base = super(MeasureRegistry, self).register(meta, name, (*aliases, *([method] if method != key else [])))
            sig = inspect.signature(fn) if meta.bounds_by_option else None

            def bounds_for(args: tuple, kwargs: dict) -> tuple[float, float] | None:
                if sig is None:
                    return meta.bounds
                try:
                    bound = sig.bind(*args, **kwargs)
                except TypeError:
                    return meta.bounds
                bound.apply_defaults()
                for option, value, option_bounds in meta.bounds_by_option:
                    if bound.arguments.get(option) == value:
                        return option_bounds
                return meta.bounds

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                args = tuple(_arg_in(a, f"argument {i + 1} of {key}", meta.differentiable)
                             for i, a in enumerate(args))
                kwargs = {k: _arg_in(v, f"{k!r} of {key}", meta.differentiable) for k, v in kwargs.items()}
                return _check_value(key, bounds_for(args, kwargs), fn(*args, **kwargs))

            guarded.__zooscope_unguarded__ = fn  # the raw function, for tests of the guard itself
            return base(guarded)

        return add

    def transfer_scores(self) -> list[Entry[MeasureMeta]]:
        """Return the registered transferability scores (``meta.transfer`` set), in their ``order``."""
        entries = [self.get(n) for n in self.available()]
        return sorted((e for e in entries if e.meta.transfer is not None), key=lambda e: e.meta.transfer.order)


MEASURES: MeasureRegistry = MeasureRegistry("measure")


def available(pattern: str = "*") -> list[str]:
    """Names of every registered measure (optionally filtered by a glob)."""
    return MEASURES.available(pattern)


def get(name: str):
    """Return the registered measure ``name``: callable, with metadata as attributes."""
    return MEASURES.get(name)
