"""The Gram form of SVD-based measures for wide layers (features ≫ examples), and their up-front cost.

If a centred layer X (n × p) has p > n, its n × n Gram ``K = X Xᵀ = U Λ Uᵀ`` gives ``F = U Λ^½`` (n × r, r = rank):
``F = X V`` for the orthonormal V of X's SVD, so **every measure invariant to translation and to orthogonal maps
of the features gives the same value on F as on X** -- e.g. ``‖XᵀY‖_* = ‖F_xᵀF_y‖_*`` (the Procrustes nuclear
norm: Σ √eig(XᵀY YᵀX) from n × n matrices). Building F costs one syrk (n²p flops) and one n × n eigh, against
an n × p SVD (≈ 4n²p + 8n³ with its vectors) for every pair the measure is called on; F is built **once per
layer** and reused for every pair (``compare`` should cache it per layer, as it caches linear Grams).

Exactness: eigenvalues below eigh's round-off (``4·√n·ε·λ_max``, as for :func:`~zooscope.measures.nbs`) are
dropped; directions that small change a continuous measure (Procrustes, CKA) by less than round-off does.
Measures whose value depends on the *rank* (CCA, PWCCA: a direction counts fully however small) are not
factorable (``MeasureMeta.factorable`` is False): F could drop a direction they would count.

API for ``compare`` (and anyone scoring many layer pairs)::

    est = estimate_seconds(name, n, widths_a, widths_b)  # before any work: warn above a minute
    A = [prepare_layer(name, X) for X in layers_a]       # once per layer: the n × r factor, or X unchanged
    B = [prepare_layer(name, Y) for Y in layers_b]
    table = [[entry(a, b) for b in B] for a in A]        # every pair on the prepared layers
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import linalg

from zooscope._validation import ZooscopeInputError, as_matrix, check_alloc
from zooscope.measures._base import MEASURES, pow2_shift

__all__ = ["estimate_flops", "estimate_seconds", "measured_gflops", "orthogonal_factor", "prepare_layer",
           "use_gram_form"]


def use_gram_form(n: int, p: int) -> bool:
    """Whether a layer of ``p`` features over ``n`` examples is cheaper in the Gram form (p > n)."""
    return p > n


def _round_off_floor(w: np.ndarray) -> float:
    # eigh's absolute round-off is ~sqrt(n)·eps·λmax (the same floor as nbs's)
    return float(w.max(initial=0.0)) * 4.0 * np.sqrt(w.size) * np.finfo(np.float64).eps


def orthogonal_factor(X: npt.ArrayLike, *, center: bool = True) -> np.ndarray:
    """Return an (n, r) matrix F with ``F Fᵀ = X̄ X̄ᵀ``, columns by decreasing norm (X̄ = X centred if ``center``).

    ``F = X̄ V`` for an orthonormal V, so any measure invariant to orthogonal maps of the features (and, when
    ``center``, to translation) has the same value on F as on X. When p > n, F comes from the n × n Gram
    (syrk + eigh, r = its numerical rank); when p <= n, F is X̄ itself (already narrow).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        One layer's activations (numpy or torch), one row per example.
    center : bool, default=True
        Centre the columns first (right for translation-invariant measures).

    Returns
    -------
    numpy.ndarray of shape (n_samples, r), float64, r <= min(n_samples, n_features)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 500))
    >>> F = orthogonal_factor(X)
    >>> F.shape[1] <= 20, np.allclose(F @ F.T, (X - X.mean(0)) @ (X - X.mean(0)).T)
    (True, True)
    """
    X = as_matrix(X, "X")
    if not np.isfinite(X).all():
        raise ZooscopeInputError("orthogonal_factor: X contains NaN or Inf.")
    shift = pow2_shift(X)
    if shift:  # X·1e±300: factor X·2^k (exact) and scale back, so the Gram neither overflows nor underflows
        return np.ldexp(orthogonal_factor(np.ldexp(X, shift), center=center), -shift)
    if center:
        X = X - X.mean(axis=0)
    n, p = X.shape
    if not use_gram_form(n, p):
        return X
    check_alloc((2, n, n), f"The {n}×{n} Gram of orthogonal_factor", "Use fewer examples")
    w, U = linalg.eigh(X @ X.T)  # numpy dispatches X @ X.T to syrk
    keep = w > _round_off_floor(w)
    return (U[:, keep] * np.sqrt(w[keep]))[:, ::-1]


def prepare_layer(measure: str, X: npt.ArrayLike) -> npt.ArrayLike:
    """Return what to pass ``measure`` for layer X when X is scored against several layers: built once per layer.

    The Gram-form factor :func:`orthogonal_factor` when the measure is ``factorable`` and X has more features
    than examples (the measure's value is unchanged, each pair then costs O(n³) instead of an n × p SVD);
    X itself otherwise (returned as given: numpy or torch).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(10, 300))
    >>> prepare_layer("procrustes", X).shape, prepare_layer("linear_cka", X) is X
    ((10, 9), True)
    """
    shape = getattr(X, "shape", None) or np.shape(X)
    if MEASURES.get(measure).factorable and len(shape) == 2 and use_gram_form(int(shape[0]), int(shape[1])):
        return orthogonal_factor(X)
    return X


# ------------------------------------------------------------------------------------------------- cost estimate
#: Flop counts (leading terms; LAPACK Working Note 41 and Golub & Van Loan) of the dense kernels the measures use.
def _syrk(n: int, p: int) -> float:
    return float(n) * n * p


def _svd_vectors(m: int, k: int) -> float:  # thin SVD of m × k (m >= k) with both singular-vector sets
    m, k = max(m, k), min(m, k)
    return 4.0 * m * k * k + 22.0 * k**3


def _svd_values(m: int, k: int) -> float:  # singular values only
    m, k = max(m, k), min(m, k)
    return 4.0 * m * k * k - 4.0 / 3.0 * k**3


def _eigh(n: int) -> float:  # symmetric eigendecomposition with vectors
    return 9.0 * n**3


def _layer_flops(measure: str, n: int, p: int) -> float:
    entry = MEASURES.get(measure)
    if entry.factorable and use_gram_form(n, p):
        return _syrk(n, p) + _eigh(n)
    if entry.inputs == "gram" or measure.startswith(("linear_cka", "rbf_cka")):
        return _syrk(n, p)  # the layer's Gram, built once
    return 0.0


def _pair_flops(measure: str, n: int, p: int, q: int) -> float:
    entry = MEASURES.get(measure)
    if entry.factorable:  # on the factors: width min(n, p)
        p, q = min(n, p), min(n, q)
    if measure.startswith("procrustes") and entry.inputs == "features":
        return 2.0 * n * p * q + _svd_values(p, q)  # cross-product and its singular values
    if entry.inputs == "gram":  # n × n products / eigendecompositions
        return 2.0 * _eigh(n) if measure in ("nbs", "procrustes_gram") else 4.0 * n * n
    if measure.startswith(("linear_cka", "rbf_cka")):
        return 4.0 * n * n
    # SVD-based feature measures (CCA family, …): an SVD of each side and of the k × k cross-product
    return _svd_vectors(n, min(n, p)) + _svd_vectors(n, min(n, q)) + 2.0 * n * min(p, n) * min(q, n)


def estimate_flops(measure: str, n: int, widths_a: Sequence[int], widths_b: Sequence[int]) -> float:
    """Floating-point operations for ``measure`` on every (layer_a, layer_b) pair (leading terms).

    Per-layer work (a Gram, or the Gram-form factor of a factorable measure) is counted once per layer, as
    ``compare`` does it; per-pair work once per pair. An order of magnitude for a warning, not a benchmark.

    Parameters
    ----------
    measure : str
        A registered measure.
    n : int
        Examples.
    widths_a, widths_b : sequence of int
        Flattened feature counts of the layers of each model.
    """
    widths_a, widths_b = [int(p) for p in widths_a], [int(q) for q in widths_b]
    per_layer = sum(_layer_flops(measure, n, p) for p in widths_a) + sum(_layer_flops(measure, n, q)
                                                                         for q in widths_b)
    return per_layer + sum(_pair_flops(measure, n, p, q) for p in widths_a for q in widths_b)


@functools.lru_cache(maxsize=1)
def measured_gflops() -> float:
    """Return this process's float64 GEMM rate in GFLOP/s (one 384 × 384 product, best of 3; ~10 ms)."""
    a = np.random.default_rng(0).normal(size=(384, 384))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 384**3 / max(best, 1e-9) / 1e9


#: Measured ÷ estimated seconds at the raw GEMM rate was 4.4 (linear_cka) and 7.5 (procrustes, factored once) in
#: benchmarks/bench_gramform.py on 2 loaded cores (float32 → float64 copies, eigh and SVD run below GEMM speed).
EFFICIENCY = 1.0 / 6.0


def estimate_seconds(measure: str, n: int, widths_a: Sequence[int], widths_b: Sequence[int],
                     gflops: float | None = None) -> float:
    """Seconds :func:`estimate_flops` takes at ``gflops`` (default.

    :func:`measured_gflops` × :data:`EFFICIENCY`, calibrated in benchmarks/bench_gramform.py). ``compare``
    should warn when this exceeds 60.
    """
    rate = gflops if gflops is not None else measured_gflops() * EFFICIENCY
    return estimate_flops(measure, n, widths_a, widths_b) / (rate * 1e9)
