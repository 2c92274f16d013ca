"""Gram matrices and their centring: the building blocks of CKA, HSIC and NBS.

Each function is named after the math, as in Kornblith et al.'s Demo notebook
(google-research ``representation_similarity/Demo.ipynb``); every result is float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from zooscope._validation import (
    ZooscopeInputError,
    as_matrix,
    check_finite,
    check_gram,
    check_positive,
)

__all__ = ["center_gram", "gram_linear", "gram_rbf", "u_center"]


def _features(X: npt.ArrayLike, name: str = "X") -> np.ndarray:
    X = as_matrix(X, name)
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ZooscopeInputError(f"{name} must have at least one row and one feature; got shape {X.shape}.")
    check_finite(X, name)
    return X


def gram_linear(X: npt.ArrayLike) -> np.ndarray:
    """Linear-kernel Gram matrix ``X Xᵀ``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        One row per example (numpy or torch).

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        ``K[i, j] = <x_i, x_j>``, float64.

    Examples
    --------
    >>> gram_linear([[1.0, 0.0], [1.0, 1.0]]).tolist()
    [[1.0, 1.0], [1.0, 2.0]]
    """
    X = _features(X)
    return X @ X.T


def _sq_distances(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, from column-centred X so large offsets cannot cancel badly."""
    X = X - X.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", X, X)
    D = sq_norms[:, None] + sq_norms[None, :] - 2.0 * (X @ X.T)
    np.maximum(D, 0.0, out=D)  # round-off can leave tiny negatives
    np.fill_diagonal(D, 0.0)
    return D


def gram_rbf(X: npt.ArrayLike, threshold: float = 1.0) -> np.ndarray:
    """Gaussian (RBF) Gram matrix with a bandwidth set from the median distance.

    ``K[i, j] = exp(-‖x_i − x_j‖² / (2 σ²))`` with ``σ² = threshold² · median(D²)``, where the median runs
    over the FULL n × n matrix of squared distances, zero diagonal included — exactly the Demo's
    ``gram_rbf``. Tying σ to the data's own scale is what makes RBF CKA invariant to isotropic scaling
    (Kornblith et al. 2019, Table 1 footnote).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        One row per example.
    threshold : float, default=1.0
        σ as a fraction of the median distance (the paper uses 0.2, 0.4, 0.8).

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        Symmetric, ones on the diagonal, entries in (0, 1].

    Raises
    ------
    ZooscopeInputError
        If ``threshold`` is not a positive float, or more than half of all pairs of examples coincide
        (median distance 0, so no bandwidth can be derived).

    Examples
    --------
    >>> K = gram_rbf([[0.0], [1.0], [3.0]])
    >>> K.shape, float(K[0, 0])
    ((3, 3), 1.0)
    """
    threshold = check_positive(threshold, "threshold", "gram_rbf")
    X = _features(X)
    D = _sq_distances(X)
    sq_median = float(np.median(D))
    if not sq_median > 0:
        raise ZooscopeInputError(
            "gram_rbf: the median squared distance between examples is 0 (more than half of all pairs "
            "are identical), so the RBF bandwidth is undefined. Remove duplicate rows or use the "
            "linear kernel (linear_cka)."
        )
    return np.exp(-D / (2.0 * threshold**2 * sq_median))


def _center(K: Any, unbiased: bool = False, *, inplace: bool = False) -> Any:
    """Return the one Gram centring of zooscope, for numpy arrays and torch tensors (any device, any float dtype).

    Biased: ``H K H`` as K − row means − column means + grand mean. Unbiased: U-centring (Székely & Rizzo
    2014), step by step as the Demo does it (needs n >= 3). ``K`` must be symmetric (the column means serve as
    row means). Means and their corrections are summed in float64 whatever ``K``'s dtype; with
    ``inplace=True`` ``K`` itself is overwritten (a float32 Gram stays float32, no n × n float64 copy).
    """
    n = K.shape[0]
    if isinstance(K, np.ndarray):
        if not inplace:
            K = K.copy()
        if unbiased:
            np.fill_diagonal(K, 0.0)
            means = K.sum(axis=0, dtype=np.float64) / (n - 2)
            means -= means.sum() / (2.0 * (n - 1))
        else:
            means = K.mean(axis=0, dtype=np.float64)
            means -= means.mean() / 2.0
        m = means.astype(K.dtype, copy=False)
        K -= m[:, None]
        K -= m[None, :]
        if unbiased:
            np.fill_diagonal(K, 0.0)
        return K
    import torch  # only reached with a tensor, so torch is already imported

    if not inplace:
        K = K.clone()
    # row sums (= column sums, K symmetric): torch reduces contiguous rows far faster than columns
    if unbiased:
        K.diagonal().zero_()
        means = K.sum(dim=1, dtype=torch.float64) / (n - 2)
        means -= means.sum() / (2.0 * (n - 1))
    else:
        means = K.sum(dim=1, dtype=torch.float64) / n
        means -= means.mean() / 2.0
    m = means.to(K.dtype)
    K -= m[:, None]
    K -= m[None, :]
    if unbiased:
        K.diagonal().zero_()
    return K


def _center_biased(K: np.ndarray) -> np.ndarray:
    """H K H with H = I − 11ᵀ/n (a new array): ``_center(K, False)``."""
    return _center(K, False)


def _center_unbiased(K: np.ndarray) -> np.ndarray:
    """U-centring (a new array): ``_center(K, True)``; needs n >= 3."""
    return _center(K, True)


def psd_sqrt(K: npt.ArrayLike, *, center: bool = False) -> np.ndarray:
    """Symmetric PSD square root R (R R = K, negative round-off eigenvalues clipped to 0), float64.

    With ``center=True`` the root of the biased-centred ``H K H``. Precompute it once per kernel when one
    kernel meets many others (normalised Bures similarity: ``eig(K̄a K̄b) = eig(R K̄b R)`` with R = K̄a^½).
    """
    K = np.asarray(K, dtype=np.float64)
    if center:
        K = _center(K, False)
    w, V = np.linalg.eigh(K)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def center_gram(K: npt.ArrayLike, unbiased: bool = False) -> np.ndarray:
    """Centre a Gram matrix: biased ``H K H`` or unbiased U-centring.

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples)
        Symmetric Gram matrix (a non-symmetric one raises, as in the Demo).
    unbiased : bool, default=False
        U-centring: zero the diagonal, subtract column sums / (n − 2) (less their total / (2(n − 1)))
        from rows and columns, zero the diagonal again. ``<U(K), U(L)> / (n(n − 3))`` is then the
        unbiased HSIC₁ of Song et al. 2012. Needs n >= 4 to be useful (n >= 3 to be defined).

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        Biased: row and column sums 0. Unbiased: zero diagonal and zero row sums.

    Examples
    --------
    >>> Kc = center_gram([[2.0, 1.0], [1.0, 2.0]])
    >>> Kc.sum(axis=0).tolist()
    [0.0, 0.0]
    """
    K = check_gram(K, "K", min_samples=4 if unbiased else 1)
    return _center_unbiased(K) if unbiased else _center_biased(K)


def u_center(K: npt.ArrayLike) -> np.ndarray:
    """U-centre a Gram matrix: ``center_gram(K, unbiased=True)``.

    Parameters
    ----------
    K : array-like of shape (n_samples, n_samples), n_samples >= 4
        Symmetric Gram matrix.

    Returns
    -------
    ndarray of shape (n_samples, n_samples)
        Zero diagonal, zero row sums; ``<u_center(K), u_center(L)> / (n (n − 3))`` is HSIC₁.
    """
    return center_gram(K, unbiased=True)
