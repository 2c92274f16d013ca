"""Centred kernel alignment (CKA) and the HSIC estimators behind it.

Kornblith, Norouzi, Lee, Hinton 2019, "Similarity of Neural Network Representations Revisited";
the maths follows their Demo notebook (google-research ``representation_similarity/Demo.ipynb``),
whose printed values (0.55761 linear, 0.65483 RBF 0.5, 0.51346 debiased) are our oracles.
All layer pairs at once: ``linear_cka_matrix`` (full batch) and ``MinibatchCKA`` (streamed), in
:mod:`zooscope.measures.minibatch`.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import (
    ZooscopeInputError,
    check_choice,
    check_gram_pair,
    check_paired,
    check_positive,
)
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures.kernels import _center_biased, _center_unbiased, gram_rbf

__all__ = [
    "cka",
    "cka_debiased",
    "hsic0",
    "hsic1",
    "linear_cka",
    "linear_cka_debiased",
    "rbf_cka",
    "rbf_cka_debiased",
]

_KORNBLITH = "Kornblith et al. 2019, eq. 4 (ICML, arXiv 1905.00414)"
_SONG = "Song et al. 2012 (unbiased HSIC); Kornblith et al. 2019 Demo"
_DEB = (("debiased", True, (-1.0, 1.0)),)  # debiased=True: the range of the *_debiased sibling
_cka_meta = partial(
    MeasureMeta,
    larger_is_more_similar=True,
    symmetric=True,
    invariances=Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION,
    not_invariant=Inv.INVERTIBLE_LINEAR,
)
# A centred Gram whose norm is this small relative to the raw Gram is round-off: a constant layer.
_CONSTANT_RTOL = 1e-13


def _alignment(Kc: np.ndarray, Lc: np.ndarray, K: np.ndarray, L: np.ndarray) -> float:
    """<Kc, Lc> / (‖Kc‖ ‖Lc‖) for centred Grams; the (n−1)² or n(n−3) normaliser cancels."""
    nk, nl = np.linalg.norm(Kc), np.linalg.norm(Lc)
    for name, nc, raw in (("K", nk, K), ("L", nl, L)):
        if not nc > _CONSTANT_RTOL * np.linalg.norm(raw):
            raise ZooscopeInputError(
                f"{name} is constant after centring (every example has the same representation), so CKA "
                "is undefined. Choose another layer, or check that the Gram matrix is not all equal."
            )
    return float(np.vdot(Kc, Lc) / (nk * nl))


def _cka_grams(K: np.ndarray, L: np.ndarray, debiased: bool) -> float:
    center = _center_unbiased if debiased else _center_biased
    return _alignment(center(K), center(L), K, L)


@MEASURES.register(_cka_meta(inputs="gram", bounds=(0.0, 1.0), reference=_KORNBLITH, bounds_by_option=_DEB))
def cka(K: npt.ArrayLike, L: npt.ArrayLike, debiased: bool = False) -> float:
    """CKA between two Gram matrices over the same examples.

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with biased centring ``H K H`` (Gretton's HSIC₀) or,
    if ``debiased``, U-centring (Song's HSIC₁).

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric Gram matrix of one representation (e.g. ``gram_linear(X)``, ``gram_rbf(X)``).
    L : array-like of shape (n_samples, n_samples)
        Gram matrix of the other representation, same examples in the same order.
    debiased : bool, default=False
        Unbiased HSIC₁ estimator; needs n >= 4; the value lies in [-1, 1] and may be negative.

    Returns
    -------
    float
        In [0, 1] when biased (1: the centred Grams are proportional). Larger is more similar.

    Examples
    --------
    >>> from zooscope.measures.kernels import gram_linear
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> round(cka(gram_linear(X), gram_linear(2 * X + 1)), 12)
    1.0
    """
    K, L = check_gram_pair(K, L, min_samples=4 if debiased else 2)
    return _cka_grams(K, L, bool(debiased))


@MEASURES.register(_cka_meta(inputs="gram", bounds=(-1.0, 1.0), min_samples=4, reference=_SONG))
def cka_debiased(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Debiased CKA on Gram matrices: ``cka(K, L, debiased=True)``; in [-1, 1] by Cauchy–Schwarz."""
    return cka(K, L, debiased=True)


def _dot_debiased(xty: float, rx: np.ndarray, ry: np.ndarray, sx: float, sy: float, n: int) -> float:
    """n(n−3)·HSIC₁ from feature-space terms (the Demo's helper): s − n/(n−2)<r_x, r_y> + ‖X‖²‖Y‖²/((n−1)(n−2))."""
    return xty - n / (n - 2.0) * float(rx @ ry) + sx * sy / ((n - 1.0) * (n - 2.0))


def _linear_cka_features(X: np.ndarray, Y: np.ndarray, debiased: bool) -> float:
    """Feature-space linear CKA on column-centred X, Y (Kornblith eq. 1: <vec XXᵀ, vec YYᵀ> = ‖YᵀX‖²)."""
    xty = np.linalg.norm(Y.T @ X) ** 2
    xtx = np.linalg.norm(X.T @ X) ** 2
    yty = np.linalg.norm(Y.T @ Y) ** 2
    if debiased:
        n = X.shape[0]
        rx, ry = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
        sx, sy = float(rx.sum()), float(ry.sum())
        xty = _dot_debiased(xty, rx, ry, sx, sy, n)
        xtx = _dot_debiased(xtx, rx, rx, sx, sx, n)
        yty = _dot_debiased(yty, ry, ry, sy, sy, n)
    if not (xtx > 0 and yty > 0):
        raise ZooscopeInputError(
            "X or Y carries no variation after centring (a constant layer; with debiased=True also "
            "too few distinct examples), so CKA is undefined. Choose another layer or use more examples."
        )
    return float(xty / np.sqrt(xtx * yty))


def _prefer_features(n: int, px: int, py: int) -> bool:
    """Feature form costs ~n(px·py + px² + py²) flops, the Gram form ~n²(px + py): take the cheaper."""
    return px * py + px * px + py * py <= n * (px + py)


@MEASURES.register(_cka_meta(bounds=(0.0, 1.0), reference=_KORNBLITH, bounds_by_option=_DEB))
def linear_cka(
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    debiased: bool = False,
    *,
    form: Literal["auto", "features", "gram"] = "auto",
) -> float:
    """Linear CKA between two representations of the same examples.

    ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` on column-centred X, Y (Kornblith et al. 2019, eq. 1 and 4; the RV
    coefficient). Columns are centred in float64 first: large offsets would otherwise cancel badly.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        Activations of one layer, one row per example (numpy or torch).
    Y : array-like of shape (n_samples, n_features_y)
        Activations for the same examples, in the same row order.
    debiased : bool, default=False
        Use the unbiased HSIC₁ estimator (Song et al. 2012); needs n >= 4; can dip below 0.
    form : {"auto", "features", "gram"}, default="auto"
        Feature space (cost ~n·p²) or Gram space (cost ~n²·p); "auto" takes the cheaper. Both give the
        same value to round-off.

    Returns
    -------
    float
        In [0, 1] when biased; 1 when Y is a rotated, scaled, shifted copy of X. Larger is more similar.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8))
    >>> round(linear_cka(X, 3 * X + 1), 6)
    1.0
    """
    check_choice(form, ("auto", "features", "gram"), "form", "linear_cka")
    X, Y = check_paired(X, Y, min_samples=4 if debiased else 2)
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    n, px, py = X.shape[0], X.shape[1], Y.shape[1]
    if form == "features" or (form == "auto" and _prefer_features(n, px, py)):
        return _linear_cka_features(X, Y, bool(debiased))
    return _cka_grams(X @ X.T, Y @ Y.T, bool(debiased))


@MEASURES.register(_cka_meta(bounds=(-1.0, 1.0), min_samples=4, reference=_SONG))
def linear_cka_debiased(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Debiased linear CKA: ``linear_cka(X, Y, debiased=True)``, registered for its own metadata.

    The unbiased HSIC₁ makes it track the large-n value; it lies in [-1, 1] and can be negative.
    """
    return linear_cka(X, Y, debiased=True)


@MEASURES.register(_cka_meta(bounds=(0.0, 1.0), reference=_KORNBLITH + "; Demo gram_rbf", bounds_by_option=_DEB))
def rbf_cka(X: npt.ArrayLike, Y: npt.ArrayLike, threshold: float = 1.0, debiased: bool = False) -> float:
    """CKA with Gaussian kernels whose bandwidth is a fraction of the median distance.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        Activations of one layer, one row per example.
    Y : array-like of shape (n_samples, n_features_y)
        Activations for the same examples, in the same row order.
    threshold : float, default=1.0
        σ as a fraction of the median distance: ``σ² = threshold² · median(D²)`` over the full n × n
        squared-distance matrix, zero diagonal included (the Demo's ``gram_rbf``; see :func:`gram_rbf`).
    debiased : bool, default=False
        Unbiased HSIC₁ estimator; needs n >= 4; can be negative.

    Returns
    -------
    float
        In [0, 1] when biased. Larger is more similar.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(40, 5))
    >>> round(rbf_cka(X, 10 * X - 3, threshold=0.5), 10)
    1.0
    """
    threshold = check_positive(threshold, "threshold", "rbf_cka")
    X, Y = check_paired(X, Y, min_samples=4 if debiased else 2)
    return _cka_grams(gram_rbf(X, threshold), gram_rbf(Y, threshold), bool(debiased))


@MEASURES.register(_cka_meta(bounds=(-1.0, 1.0), min_samples=4, reference=_SONG))
def rbf_cka_debiased(X: npt.ArrayLike, Y: npt.ArrayLike, threshold: float = 1.0) -> float:
    """Debiased RBF CKA: ``rbf_cka(X, Y, threshold, debiased=True)``; in [-1, 1], can be negative."""
    return rbf_cka(X, Y, threshold=threshold, debiased=True)


_hsic_meta = partial(
    MeasureMeta,
    larger_is_more_similar=True,
    symmetric=True,
    invariances=Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION,  # on linear Grams
    not_invariant=Inv.ISOTROPIC_SCALE | Inv.INVERTIBLE_LINEAR,
    inputs="gram",
)


@MEASURES.register(_hsic_meta(reference="Gretton et al. 2005; Kornblith et al. 2019, eq. 3"))
def hsic0(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Biased empirical HSIC: ``tr(K H L H) / (n − 1)²`` with ``H = I − 11ᵀ/n``.

    Parameters
    ----------
    K, L : array-like of shape (n_samples, n_samples)
        Symmetric Gram matrices over the same examples.

    Returns
    -------
    float
        >= 0 for PSD kernels; for linear kernels ``‖cov(X, Y)‖²_F`` with the 1/(n−1) covariance.
        Larger means more dependent. Biased upwards at small n (see :func:`hsic1`).
    """
    K, L = check_gram_pair(K, L, min_samples=2)
    n = K.shape[0]
    # tr(KHLH) = <HKH, HLH> because H is symmetric and idempotent
    return float(np.vdot(_center_biased(K), _center_biased(L)) / (n - 1) ** 2)


@MEASURES.register(_hsic_meta(min_samples=4, reference="Song et al. 2012, eq. 5; Nguyen et al. 2021, eq. 3"))
def hsic1(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Unbiased HSIC₁ estimator (Song et al. 2012).

    With K̃, L̃ the Grams with zeroed diagonals::

        HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))

    computed as the equal, numerically kinder ``<U(K), U(L)> / (n(n−3))`` with U-centring.

    Parameters
    ----------
    K, L : array-like of shape (n_samples, n_samples), n_samples >= 4
        Symmetric Gram matrices over the same examples.

    Returns
    -------
    float
        Unbiased for the population HSIC; can be negative at small n. Larger means more dependent.
    """
    K, L = check_gram_pair(K, L, min_samples=4)
    n = K.shape[0]
    return float(np.vdot(_center_unbiased(K), _center_unbiased(L)) / (n * (n - 3.0)))
