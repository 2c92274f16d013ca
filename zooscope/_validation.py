"""Boundary checks and the one error type for bad input (STYLE.md §4).

Validate once, at the public boundary; private helpers assume clean float64 arrays.
"""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt


class ZooscopeInputError(ValueError):
    """Bad input: the message says what is wrong, the values seen, and the fix."""


#: Largest single dense allocation (bytes) a measure may make for an n×n or p×p matrix before it refuses with
#: a ZooscopeInputError naming a cheaper alternative. Default 2 GiB; set ``ZOOSCOPE_MEMORY_CAP_BYTES`` in the
#: environment, or assign ``zooscope._validation.MEMORY_CAP_BYTES`` at run time, to change it.
MEMORY_CAP_BYTES: int = int(os.environ.get("ZOOSCOPE_MEMORY_CAP_BYTES", 2 * 1024**3))


#: Longest zoo name (model, dataset), in bytes of UTF-8.
MAX_NAME_BYTES = 200


def _is_torch(A: Any) -> bool:
    return hasattr(A, "detach") and hasattr(A, "device") and hasattr(A, "requires_grad")


def check_tensor_like(A: Any, name: str = "X") -> None:
    """Refuse what no measure can use, before any conversion: complex dtypes and torch ``meta`` tensors.

    Complex input is never reduced to its real part silently (numpy would do so with only a warning).
    """
    if _is_torch(A):
        if A.device.type == "meta":
            raise ZooscopeInputError(
                f"{name} is a torch tensor on the 'meta' device: it has a shape but no values. Run the model "
                "on a real device (e.g. model.to('cpu')) and pass the activations it returns."
            )
        if A.is_complex():
            raise ZooscopeInputError(
                f"{name} has complex dtype {A.dtype}; measures take real activations. Pass {name}.real, "
                f"{name}.abs() or torch.view_as_real({name}).flatten(1) explicitly."
            )
        return
    if isinstance(A, complex) or (isinstance(A, np.ndarray | np.generic) and np.iscomplexobj(A)):
        raise ZooscopeInputError(
            f"{name} has complex dtype {getattr(A, 'dtype', 'complex')}; measures take real activations. Pass "
            f"np.real({name}), np.abs({name}) or np.c_[{name}.real, {name}.imag] explicitly."
        )


def _to_numpy(A: Any, name: str = "X") -> np.ndarray:
    """Torch tensors (any device, with or without grad; half precision upcast) and array-likes -> numpy.

    Gradients are detached (the caller is not differentiable); CUDA/MPS tensors are copied to the CPU; ``meta``
    and complex tensors raise :class:`ZooscopeInputError`.
    """
    check_tensor_like(A, name)
    if _is_torch(A):  # torch.Tensor without importing torch
        A = A.detach()
        if A.device.type != "cpu":
            try:
                A = A.cpu()
            except (RuntimeError, NotImplementedError) as e:
                raise ZooscopeInputError(f"{name} on device {A.device} cannot be copied to the CPU: {e}") from None
        if str(A.dtype) in ("torch.bfloat16", "torch.float16"):
            A = A.float()
        A = A.numpy()
    arr = np.asarray(A)
    check_tensor_like(arr, name)
    return arr


def check_alloc(shape: tuple[int, ...], what: str, alternative: str, *, itemsize: int = 8) -> None:
    """Refuse a dense allocation of ``shape`` above :data:`MEMORY_CAP_BYTES`, before making it.

    ``what`` names the matrix (e.g. "the 20000×20000 feature covariance of h_score"), ``alternative`` the
    cheaper route the error suggests.
    """
    nbytes = itemsize * int(np.prod([int(s) for s in shape], dtype=object))
    if nbytes > MEMORY_CAP_BYTES:
        raise ZooscopeInputError(
            f"{what} would need {nbytes / 2**30:.1f} GiB ({' × '.join(map(str, shape))} float64), above the cap "
            f"zooscope._validation.MEMORY_CAP_BYTES = {MEMORY_CAP_BYTES / 2**30:.1f} GiB. {alternative} "
            "(or raise the cap: ZOOSCOPE_MEMORY_CAP_BYTES)."
        )


def as_matrix(A: npt.ArrayLike, name: str = "X", *, dtype: Any = np.float64) -> np.ndarray:
    """Return ``A`` as a 2-D float64 (n_samples, n_features) array, with a reshape hint otherwise."""
    arr = _to_numpy(A, name)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ZooscopeInputError(f"{name} must be a numeric array; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        raise ZooscopeInputError(
            f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}. "
            f"Use {name}.reshape(-1, 1) for one feature."
        )
    if arr.ndim > 2:
        raise ZooscopeInputError(
            f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}. "
            f"Flatten each example first: {name}.reshape(len({name}), -1)."
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def check_finite(A: np.ndarray, name: str) -> None:
    """Raise if ``A`` holds NaN or Inf, naming the first bad row."""
    if not np.isfinite(A).all():
        row = int(np.argwhere(~np.isfinite(A))[0, 0])
        raise ZooscopeInputError(
            f"{name} contains NaN or Inf (first in row {row}). Check the checkpoint, or keep rows "
            f"{name}[np.isfinite({name}).all(axis=1)]."
        )


def check_not_constant(A: np.ndarray, name: str) -> None:
    """Raise if every example has the same representation (a dead or constant layer)."""
    if A.shape[0] > 1 and float(np.ptp(A, axis=0).max(initial=0.0)) == 0.0:
        raise ZooscopeInputError(
            f"{name} is the same for every example (a dead or constant layer), so the measure is "
            "undefined. Choose another layer."
        )


def check_paired(
    X: npt.ArrayLike, Y: npt.ArrayLike, *, min_samples: int = 2, names: tuple[str, str] = ("X", "Y")
) -> tuple[np.ndarray, np.ndarray]:
    """Return X, Y as float64 (n_samples, n_features) arrays describing the same inputs."""
    nx, ny = names
    X, Y = as_matrix(X, nx), as_matrix(Y, ny)
    if X.shape[0] != Y.shape[0]:
        raise ZooscopeInputError(
            f"{nx} and {ny} must hold the same examples in the same order, but {nx} has {X.shape[0]} rows "
            f"and {ny} has {Y.shape[0]}. Extract both from one DataLoader with shuffle=False."
        )
    if X.shape[0] < min_samples:
        raise ZooscopeInputError(f"This measure needs at least {min_samples} examples; got {X.shape[0]}.")
    for name, A in ((nx, X), (ny, Y)):
        if A.shape[1] == 0:
            raise ZooscopeInputError(f"{name} has no features (shape {A.shape}).")
        check_finite(A, name)
        check_not_constant(A, name)
    return X, Y


def check_gram(K: npt.ArrayLike, name: str = "K", *, min_samples: int = 2) -> np.ndarray:
    """Return a square, symmetric, finite float64 Gram matrix."""
    K = as_matrix(K, name)
    if K.shape[0] != K.shape[1]:
        raise ZooscopeInputError(
            f"{name} must be a square (n_samples, n_samples) Gram matrix; got shape {K.shape}. "
            "Pass activations to linear_cka/rbf_cka instead, or build the Gram with gram_linear."
        )
    if K.shape[0] < min_samples:
        raise ZooscopeInputError(f"This measure needs at least {min_samples} examples; got {K.shape[0]}.")
    check_finite(K, name)
    scale = max(float(np.abs(K).max()), 1e-300)
    if not np.allclose(K, K.T, rtol=1e-6, atol=1e-9 * scale):
        raise ZooscopeInputError(f"{name} must be symmetric (a Gram matrix); max |{name} - {name}.T| = "
                                 f"{float(np.abs(K - K.T).max()):.3g}.")
    return K


def check_gram_pair(
    K: npt.ArrayLike, L: npt.ArrayLike, *, min_samples: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Two Gram matrices over the same examples."""
    K, L = check_gram(K, "K", min_samples=min_samples), check_gram(L, "L", min_samples=min_samples)
    if K.shape != L.shape:
        raise ZooscopeInputError(
            f"K and L must be Gram matrices over the same examples; got shapes {K.shape} and {L.shape}."
        )
    return K, L


def check_positive(value: float, name: str, owner: str) -> float:
    """sklearn-worded check for a float in (0, inf); also catches NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ZooscopeInputError(f"{name!r} of {owner} must be a float in (0, inf); got {value!r}.") from None
    if not v > 0 or not np.isfinite(v):
        raise ZooscopeInputError(f"{name!r} of {owner} must be a float in (0, inf); got {value!r}.")
    return v


def check_choice(value: str, choices: Iterable[str], name: str, owner: str) -> str:
    """Return a string option among ``choices``, with close matches in the error."""
    choices = list(choices)
    if value not in choices:
        near = difflib.get_close_matches(str(value), choices, n=3)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise ZooscopeInputError(
            f"{name!r} of {owner} must be one of {', '.join(map(repr, choices))}; got {value!r}.{hint}"
        )
    return value


def unknown_name_error(what: str, name: str, valid: Iterable[str]) -> ZooscopeInputError:
    """'unknown layer 'layer5'; did you mean …? valid: …' as one error."""
    valid = list(valid)
    near = difflib.get_close_matches(str(name), valid, n=3)
    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
    shown = ", ".join(valid[:60]) + (f", … ({len(valid)} in all)" if len(valid) > 60 else "")
    return ZooscopeInputError(f"Unknown {what} {name!r}.{hint} Valid: {shown}.")


def validate_name(name: Any, what: str = "model") -> str:
    """``name`` if it is a valid zoo name, else a `ZooscopeInputError` saying why (names are data, never paths).

    Examples
    --------
    >>> validate_name("résnet-18 (ImageNet)")
    'résnet-18 (ImageNet)'
    >>> try:
    ...     validate_name("../x")
    ... except ValueError as e:
    ...     print(str(e)[:33])
    A model name cannot contain '/' o
    """
    if not isinstance(name, str):
        raise ZooscopeInputError(f"A {what} name must be a string; got {type(name).__name__} {name!r}.")
    shown = repr(name[:60]) + ("…" if len(name) > 60 else "")
    if not name.strip():
        raise ZooscopeInputError(f"A {what} name must be a non-empty string; got {shown}.")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ZooscopeInputError(f"A {what} name must be valid Unicode text (no lone surrogates); got {shown}.") \
            from None
    if size > MAX_NAME_BYTES:
        raise ZooscopeInputError(f"A {what} name can be at most {MAX_NAME_BYTES} bytes of UTF-8; got {size} bytes "
                                 f"({shown}). Choose a shorter name and keep the long text in tags or metrics.")
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")
                  and c not in "\u200d\u200c"})
    if bad:
        raise ZooscopeInputError(f"A {what} name cannot contain control or invisible characters ({', '.join(bad)});"
                                 f" got {shown}.")
    if "/" in name or "\\" in name:
        raise ZooscopeInputError(f"A {what} name cannot contain '/' or a backslash (names are data, never paths); "
                                 f"got {shown}.")
    if name in (".", ".."):
        raise ZooscopeInputError(f"A {what} name cannot be '.' or '..'; got {shown}.")
    if name != name.strip():
        raise ZooscopeInputError(f"A {what} name cannot start or end with blanks; got {shown}.")
    return name
