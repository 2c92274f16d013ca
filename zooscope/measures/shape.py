"""Shape measures: the angular Procrustes distance and the normalized Bures similarity.

Williams, Kunz, Kornblith, Linderman 2021 ("Generalized Shape Metrics on Neural Representations",
netrep's ``LinearMetric(alpha=1, score_method="angular")``) for Procrustes; Tang et al. 2020 (amzn/xfer
``SimIndex.nbs``) for NBS. For linear Grams ``procrustes(X, Y) == arccos(nbs(XXᵀ, YYᵀ))``.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import linalg

from zooscope._validation import ZooscopeInputError, check_alloc, check_choice, check_gram_pair, check_paired
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures.gramform import orthogonal_factor, use_gram_form
from zooscope.measures.kernels import _center_biased

__all__ = ["nbs", "procrustes", "procrustes_gram"]

_SHAPE_INV = Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION
_shape_meta = partial(MeasureMeta, symmetric=True, invariances=_SHAPE_INV, not_invariant=Inv.INVERTIBLE_LINEAR)


def _unit_shape(X: np.ndarray, gram: bool) -> np.ndarray:
    """Centre the columns, scale to unit Frobenius norm, and rotate wide data onto at most n columns.

    The rotation (when wider than tall) is an orthogonal map, so every distance is unchanged. ``gram``: it comes
    from the n × n Gram (:func:`~zooscope.measures.gramform.orthogonal_factor`), else from X's SVD (``U S``).
    """
    if gram:
        F = orthogonal_factor(X)
        return F / np.linalg.norm(F)
    X = X - X.mean(axis=0)
    X = X / np.linalg.norm(X)
    if X.shape[1] > X.shape[0]:
        U, s, _ = np.linalg.svd(X, full_matrices=False)
        X = U * s
    return X


#: Below this nuclear norm (θ > ~0.014 rad) arccos is accurate to ~1e-11; above it the residual form is used.
_ARCCOS_MAX = 1.0 - 1e-4


def _angle(Xh: np.ndarray, Yh: np.ndarray) -> float:
    """θ = arccos ‖X̂ᵀŶ‖_* for centred, unit-norm X̂, Ŷ.

    Singular values only (no vectors) unless θ is near 0, where ``2 arcsin(‖X̂ − Ŷ Q*‖_F / 2)`` from the
    optimal rotation keeps the digits arccos loses.
    """
    nuclear = float(linalg.svdvals(Yh.T @ Xh, check_finite=False).sum())
    if nuclear < _ARCCOS_MAX:
        return float(np.arccos(nuclear))
    p = max(Xh.shape[1], Yh.shape[1])
    Xh = np.pad(Xh, ((0, 0), (0, p - Xh.shape[1])))
    Yh = np.pad(Yh, ((0, 0), (0, p - Yh.shape[1])))
    U, _, Vt = np.linalg.svd(Yh.T @ Xh)
    resid = np.linalg.norm(Xh - Yh @ (U @ Vt))  # min over orthogonal Q of ‖X̂ − ŶQ‖ (orthogonal Procrustes)
    return float(2.0 * np.arcsin(min(resid / 2.0, np.sqrt(0.5))))


@MEASURES.register(_shape_meta(larger_is_more_similar=False, is_metric=True, bounds=(0.0, np.pi / 2),
                               factorable=True,
                               reference="Williams et al. 2021, angular shape metric (netrep alpha=1)"))
def procrustes(X: npt.ArrayLike, Y: npt.ArrayLike, *,
               form: Literal["auto", "features", "gram"] = "auto") -> float:
    """Angular Procrustes shape distance between two representations of the same examples.

    ``θ = arccos(‖X̂ᵀŶ‖_*)`` where X̂, Ŷ are the column-centred representations scaled to unit Frobenius
    norm (the narrower one zero-padded), from the singular values of X̂ᵀŶ. Near 0 (‖X̂ᵀŶ‖_* > 1 − 10⁻⁴),
    where the arccos form loses half the digits, it is computed from the residual of the optimal rotation,
    ``θ = 2 arcsin(‖X̂ − Ŷ Q*‖_F / 2)``.

    For representations with orthonormal, zero-mean columns (whitened; same width k) the value is
    ``arccos(mean_i cos φ_i)`` over the principal angles φ_i between the column spaces, i.e.
    ``arccos(ρ̄_CCA)`` of the un-whitened data.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        One representation, one row per example.
    Y : array-like of shape (n_samples, n_features_y)
        Another representation of the same examples.
    form : {"auto", "features", "gram"}, default="auto"
        How a layer wider than n is reduced to n columns: its SVD ("features", ≈ 4n²p + 8n³ flops with
        vectors) or its n × n Gram's eigendecomposition ("gram", n²p + 9n³;
        :func:`~zooscope.measures.gramform.orthogonal_factor`). "auto" takes the Gram form when either layer
        has more features than examples. Both give the same value to ~1e-12. To score many layer pairs,
        factor each layer once with ``orthogonal_factor`` and pass the factors (``MeasureMeta.factorable``).

    Returns
    -------
    float
        In [0, π/2]; 0 iff Y is a rotated, scaled, shifted copy of X. Smaller is more similar. A metric
        (triangle inequality holds).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 5))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> procrustes(X, 2 * X @ Q + 1) < 1e-12
    True
    """
    check_choice(form, ("auto", "features", "gram"), "form", "procrustes")
    X, Y = check_paired(X, Y, min_samples=2)
    n = X.shape[0]
    gram = form == "gram" or (form == "auto" and (use_gram_form(n, X.shape[1]) or use_gram_form(n, Y.shape[1])))
    q = max(min(X.shape), min(Y.shape))
    check_alloc((3, q, q), f"The {q}×{q} cross-covariance of procrustes",
                "Reduce the examples or PCA-reduce both layers first, or use linear_cka")
    return _angle(_unit_shape(X, gram), _unit_shape(Y, gram))


def _round_off_floor(w: np.ndarray) -> float:
    # eigh's round-off on the (near) null space is ~sqrt(n)·eps·λmax; sqrt() would blow it up to ~1e-8
    # per eigenvalue. 4·sqrt(n)·eps keeps xfer's seed-A NBS values to 4e-9 (n·eps would move them 1.3e-7).
    return float(w.max(initial=0.0)) * 4.0 * np.sqrt(w.size) * np.finfo(np.float64).eps


def _psd_sqrt(K: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; eigenvalues below round-off level are set to 0."""
    w, V = linalg.eigh(K)
    w[w < _round_off_floor(w)] = 0.0
    return (V * np.sqrt(w)) @ V.T


def _nbs_clean(K: np.ndarray, L: np.ndarray) -> float:
    Kc, Lc = _center_biased(K), _center_biased(L)
    tk, tl = np.trace(Kc), np.trace(Lc)
    for name, t, raw in (("K", tk, K), ("L", tl, L)):
        if not t > 1e-13 * np.abs(np.diag(raw)).sum():
            raise ZooscopeInputError(
                f"{name} has (near) zero trace after centring: a constant layer or a non-PSD matrix. "
                "NBS needs positive semi-definite Gram matrices of a non-constant representation."
            )
    S = _psd_sqrt(Kc)
    ev = linalg.eigvalsh(S @ Lc @ S)
    ev[ev < _round_off_floor(ev)] = 0.0
    # eig(K̄^½ L̄ K̄^½) = eig(K̄ L̄): the numerator is Σ sqrt(max(0, λ(K̄ L̄))) = tr((K̄^½ L̄ K̄^½)^½)
    return float(min(np.sqrt(ev).sum() / np.sqrt(tk * tl), 1.0))


@MEASURES.register(_shape_meta(larger_is_more_similar=True, inputs="gram", bounds=(0.0, 1.0),
                               reference="Tang et al. 2020 (amzn/xfer SimIndex.nbs); fidelity of Bures"))
def nbs(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Return normalized Bures similarity of two Gram matrices over the same examples.

    ``NBS = tr((K̄^½ L̄ K̄^½)^½) / sqrt(tr K̄ · tr L̄)`` with K̄ = H K H (``K − colmean − rowmean + mean``):
    equal to xfer's ``Σ sqrt(max(0, Re λ(K̄ L̄))) / sqrt(tr K̄ tr L̄)``. Computed with two symmetric
    eigendecompositions (scipy.linalg.eigh); round-off eigenvalues are clipped to 0.

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        PSD Gram matrix of one representation.
    L : array-like of shape (n_samples, n_samples)
        PSD Gram matrix of the other, same examples in the same order.

    Returns
    -------
    float
        In [0, 1]; 1 iff the centred Grams are proportional. Larger is more similar. For linear Grams
        ``arccos(nbs(XXᵀ, YYᵀ)) == procrustes(X, Y)``.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> round(nbs(X @ X.T, 9 * X @ X.T), 10)
    1.0
    """
    K, L = check_gram_pair(K, L, min_samples=2)
    return _nbs_clean(K, L)


@MEASURES.register(_shape_meta(larger_is_more_similar=False, inputs="gram", is_metric=True,
                               bounds=(0.0, np.pi / 2), reference="Bures angle; Williams et al. 2021"))
def procrustes_gram(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Angular Procrustes (Bures) distance from Gram matrices: ``arccos(nbs(K, L))``.

    Parameters
    ----------
    K, L : array-like of shape (n_samples, n_samples)
        PSD Gram matrices over the same examples.

    Returns
    -------
    float
        In [0, π/2]; smaller is more similar; equals ``procrustes(X, Y)`` for ``K = XXᵀ, L = YYᵀ``
        (to ~1e-8 near 0, where arccos loses digits; use :func:`procrustes` on features there).
    """
    K, L = check_gram_pair(K, L, min_samples=2)
    return float(np.arccos(_nbs_clean(K, L)))
