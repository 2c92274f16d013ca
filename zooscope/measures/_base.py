"""Measure metadata and the measure registry (STYLE.md §3).

Every registered measure is wrapped once, here, by the same boundary guard (issue 13), so the rules hold for
every measure module without each repeating them:

* complex arrays or tensors and torch ``meta`` tensors raise :class:`~zooscope.ZooscopeInputError` before the
  measure runs (never a silent real part);
* torch tensors given to a measure that is not differentiable are detached, copied to the CPU and half
  precision is upcast, so ``nce(probs.requires_grad_(), y)`` and CUDA activations just work; differentiable
  measures (``MeasureMeta.differentiable``) receive the tensors untouched and keep the autograd graph;
* a measure that declares ``Inv.ISOTROPIC_SCALE`` gets each of its data arguments (the parameters without a
  default, except ``labels``) rescaled by a power of two when its largest magnitude is outside
  [2⁻³², 2³²] (:func:`_rescale`): exact in floating point, so the value is unchanged, and X·1e±300 or a Gram
  × 1e300 no longer overflows or underflows inside the measure (issue 19, F13). An option that gives up the
  invariance (``MeasureMeta.invariances_lost_by_option``) turns this off;
* the value returned is checked: NaN or ±inf, or a value outside the registered ``bounds`` by more than
  round-off, raises :class:`~zooscope.ZooscopeInputError` instead of being returned; round-off just outside a
  bound (``BOUND_RTOL``) is clipped onto it;
* errors get the measure's name as context: a :class:`~zooscope.ZooscopeInputError` that does not name the
  measure is re-raised with ``"<name>: "`` in front; numerical failures inside it (``LinAlgError``, ``ValueError``
  from numpy/scipy/sklearn, ``FloatingPointError``, ``OverflowError``) become a one-line
  :class:`~zooscope.ZooscopeInputError` naming the measure, and so does a ``MemoryError`` (an impossible size,
  issue 19 F12); anything else keeps its type with a note naming it.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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
    #: the value on ``gramform.orthogonal_factor(X)`` equals the value on X (to round-off): invariant to translation
    #: and orthogonal maps, and continuous in the data (not rank-counting like CCA) -- compare may factor wide
    #: layers once and score every pair on the n × r factors (issue 22 item 2)
    factorable: bool = False
    #: ((option, value, bounds), ...): an option that changes the range, e.g. (("debiased", True, (-1.0, 1.0)),)
    bounds_by_option: tuple[tuple[str, Any, tuple[float, float]], ...] = ()
    #: ((option, value, invariances), ...): invariances an option gives up, e.g. (("normalize", False,
    #: Inv.ISOTROPIC_SCALE),) for a fixed ridge that is not relative to the data's scale
    invariances_lost_by_option: tuple[tuple[str, Any, Inv], ...] = ()
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


#: Data whose largest magnitude lies in [2**-SAFE_EXP, 2**SAFE_EXP] is passed unchanged (no copy): Grams,
#: Gram products and squared norms of such data stay far inside float64's range.
SAFE_EXP = 32


def pow2_shift(value: Any) -> int:
    """Return the exponent k such that ``value · 2**k`` has its largest magnitude in [0.5, 1).

    0 when that magnitude already lies in [2⁻³², 2³²] (or the data is empty, non-finite, all zero, or not a float
    array or tensor).
    """
    if _is_torch(value):
        if not value.is_floating_point() or value.numel() == 0:
            return 0
        lo, hi = (float(t) for t in value.detach().aminmax())
    else:
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.size == 0:
            return 0
        lo, hi = float(value.min()), float(value.max())
    big = max(abs(lo), abs(hi))
    if not (math.isfinite(big) and big > 0.0) or 2.0**-SAFE_EXP <= big <= 2.0**SAFE_EXP:
        return 0
    return -math.frexp(big)[1]


def _rescale(value: Any) -> Any:
    """Return ``value`` times the power of two that brings its largest magnitude into [0.5, 1).

    Only when it lies outside [2⁻³², 2³²] (float arrays and tensors only; empty, non-finite or all-zero data is
    left to the measure's checks).

    Multiplying by a power of two is exact, so a scale-invariant measure gives the same value, bit for bit
    away from subnormals. Torch tensors stay tensors (two multiplications by powers of two: differentiable, same
    device, exact in float32 too).
    """
    shift = pow2_shift(value)
    if shift == 0:
        return value
    if _is_torch(value):  # two exact multiplications by powers of two (each factor fits the tensor's dtype);
        half = shift // 2  # torch.ldexp's backward underflows the gradient's 2**shift in float32
        return value * 2.0**half * 2.0 ** (shift - half)
    return np.ldexp(value, shift)


def _scale_free_params(fn: Any, meta: MeasureMeta) -> tuple[str, ...]:
    """Return the data arguments a scale-invariant measure may have rescaled (no default, not labels)."""
    if Inv.ISOTROPIC_SCALE not in meta.invariances:
        return ()
    return tuple(name for name, p in inspect.signature(fn).parameters.items()
                 if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and name not in ("labels", "source_probs", "y"))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


#: Errors raised inside a measure that mean "these numbers are beyond what the computation can take".
_NUMERICAL = (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError, ZeroDivisionError)


def _with_context(name: str, e: Exception) -> Exception | None:
    """Return the error to raise instead of ``e`` (raised inside measure ``name``), or None to re-raise ``e`` itself."""
    if isinstance(e, ZooscopeInputError):
        return None if name in str(e) else ZooscopeInputError(f"{name}: {e}")
    if isinstance(e, MemoryError):  # issue 19 F12: an impossible size is an input error, not exit 3
        return ZooscopeInputError(
            f"{name} needs more memory than this machine has for these inputs ({_one_line(e)[:120]}). Use fewer "
            "examples, PCA-reduce the features, or a streaming measure (minibatch_cka).")
    if isinstance(e, _NUMERICAL):
        return ZooscopeInputError(
            f"{name} failed on these inputs ({type(e).__name__}: {_one_line(e)[:200]}): they are numerically "
            "degenerate for it (extremely scaled, near-constant or duplicated columns). Standardise them, or "
            "choose another measure.")
    e.add_note(f"(raised inside the measure {name!r})")
    return None


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
    if math.isinf(v):
        raise ZooscopeInputError(
            f"{name} overflowed to {v!r} on these inputs: its value depends on their scale and does not fit in a "
            "float64. Rescale the activations (e.g. standardise them), or choose a scale-invariant measure."
        )
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
            sig = inspect.signature(fn)
            scale_free = _scale_free_params(fn, meta)

            def bind(args: tuple, kwargs: dict) -> inspect.BoundArguments | None:
                try:
                    bound = sig.bind(*args, **kwargs)
                except TypeError:
                    return None  # the call itself reports the bad arguments
                bound.apply_defaults()
                return bound

            def bounds_for(bound: inspect.BoundArguments | None) -> tuple[float, float] | None:
                for option, value, option_bounds in meta.bounds_by_option if bound is not None else ():
                    if bound.arguments.get(option) == value:
                        return option_bounds
                return meta.bounds

            def rescaled(bound: inspect.BoundArguments | None, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
                if bound is None or not scale_free or any(
                        bound.arguments.get(o) == v and Inv.ISOTROPIC_SCALE in lost
                        for o, v, lost in meta.invariances_lost_by_option):
                    return args, kwargs
                for p in scale_free:
                    bound.arguments[p] = _rescale(bound.arguments[p])
                return bound.args, bound.kwargs

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                args = tuple(_arg_in(a, f"argument {i + 1} of {key}", meta.differentiable)
                             for i, a in enumerate(args))
                kwargs = {k: _arg_in(v, f"{k!r} of {key}", meta.differentiable) for k, v in kwargs.items()}
                bound = bind(args, kwargs)
                call_args, call_kwargs = rescaled(bound, args, kwargs)
                try:
                    out = fn(*call_args, **call_kwargs)
                except Exception as e:
                    better = _with_context(key, e)
                    if better is None:
                        raise
                    raise better from e
                return _check_value(key, bounds_for(bound), out)

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
