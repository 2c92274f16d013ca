"""Mahalanobis-like distances between network outputs (Singer & Coifman 2008; Bertalan et al. 2020).

A network maps inputs x (on a d-dimensional set) to observations y = N(x) in R^m. Near x_i,
y_j - y_i ~ J_i (x_j - x_i) with J_i = dy/dx (m, d), so the covariance C_i = J_i J_i^T undoes the
observation map: with C^+ its pseudo-inverse,

    d^2(y_i, y_j) = 1/2 (y_i - y_j)^T (C_i^+ + C_j^+) (y_i - y_j) = ||x_i - x_j||^2 + O(||x_i - x_j||^4).

Two networks observing the same inputs through different (invertible) maps therefore see the same
intrinsic geometry, which is what lets their diffusion maps agree (see :mod:`zooscope.measures.diffusion`).

The covariances come from the networks themselves, so they are computed in :mod:`zooscope.embed.covariances`
(``jacobian_covariances``: torch autodiff; ``burst_covariances``: short "bursts" of perturbed inputs, for
black-box networks); this module is the pure math on the resulting arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, _to_numpy, as_matrix, check_finite, check_positive

__all__ = ["mahalanobis_sq_distances"]

_CHUNK_ELEMENTS = 4_000_000  # (rows x cols x rank) floats per block of the pairwise computation: ~32 MB


def _check_inputs(x: Any, name: str = "x") -> None:
    arr = _to_numpy(x)
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise ZooscopeInputError(
            f"{name} must have shape (n_samples, *input_shape) with n_samples >= 1; got shape {arr.shape}. "
            f"Use {name}.reshape(-1, 1) for scalar inputs."
        )
    check_finite(arr.reshape(arr.shape[0], -1).astype(np.float64), name)


def _outputs_2d(y: Any, n: int) -> Any:
    if y.ndim < 1 or y.shape[0] != n:
        raise ZooscopeInputError(
            f"fn must map a batch of {n} inputs to a batch of {n} outputs; got output shape {tuple(y.shape)}."
        )
    return y.reshape(n, -1)


def _kept_eigenpairs(C: np.ndarray, rank: int | None, rcond: float) -> tuple[np.ndarray, ...]:
    """Eigenpairs of each C_i, descending, with the pseudo-inverse rule's mask: the rule lives here."""
    lam, V = np.linalg.eigh(C)  # ascending; C_i symmetric PSD
    lam, V = lam[:, ::-1], V[:, :, ::-1]
    keep = lam > rcond * np.maximum(lam[:, :1], np.finfo(np.float64).tiny)
    if rank is not None:
        keep[:, int(rank):] = False
    r = max(int(keep.sum(axis=1).max()), 1)  # pad to the largest kept rank with zero columns
    return lam[:, :r], V[:, :, :r], keep[:, :r]


def _whitening_factors(C: np.ndarray, rank: int | None, rcond: float) -> np.ndarray:
    """B_i (n, m, r) with B_i B_i^T = C_i^+."""
    lam, V, keep = _kept_eigenpairs(C, rank, rcond)
    inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    return V * inv_sqrt[:, None, :]


def _tangent_bases(C: np.ndarray, rank: int | None, rcond: float) -> np.ndarray:
    """Orthonormal bases (n, m, r) of range(C_i), zero-padded: the tangent spaces of the output manifold."""
    _, V, keep = _kept_eigenpairs(C, rank, rcond)
    return V * keep[:, None, :]


def _check_covariances(C: npt.ArrayLike, n: int, m: int, name: str) -> np.ndarray:
    C = _to_numpy(C).astype(np.float64)
    if C.shape != (n, m, m):
        raise ZooscopeInputError(
            f"{name} must have shape (n_samples, m, m) = ({n}, {m}, {m}) to match the observations; got "
            f"{C.shape}. Build it with jacobian_covariances(fn, x) or burst_covariances(fn, x, radius)."
        )
    check_finite(C.reshape(n, -1), name)
    return 0.5 * (C + C.transpose(0, 2, 1))


def _quadratic_forms(B: np.ndarray, centres: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Q[i, j] = ||B_i^T (others_j - centres_i)||^2 for every pair, in row blocks bounded in memory."""
    n1, n2, r = B.shape[0], others.shape[0], B.shape[2]
    Q = np.empty((n1, n2))
    step = max(1, _CHUNK_ELEMENTS // max(1, n2 * r))
    for s in range(0, n1, step):
        Bs = B[s : s + step]
        proj = np.einsum("imr,jm->ijr", Bs, others) - np.einsum("imr,im->ir", Bs, centres[s : s + step])[:, None]
        Q[s : s + step] = np.einsum("ijr,ijr->ij", proj, proj)
    return Q


def mahalanobis_sq_distances(
    Y: npt.ArrayLike,
    covariances: npt.ArrayLike,
    Y_other: npt.ArrayLike | None = None,
    covariances_other: npt.ArrayLike | None = None,
    *,
    rank: int | None = None,
    rcond: float = 1e-10,
) -> np.ndarray:
    """Pairwise d^2(y_i, y_j) = 1/2 (y_i - y_j)^T (C_i^+ + C_j^+) (y_i - y_j).

    Parameters
    ----------
    Y : array-like of shape (n_samples, m)
        Observations (network outputs or selected activations).
    covariances : array-like of shape (n_samples, m, m)
        C_i for each row of ``Y`` (``jacobian_covariances`` or ``burst_covariances``).
    Y_other, covariances_other : array-like of shape (n_other, m) and (n_other, m, m), optional
        A second set (e.g. new points for a Nyström extension); default: ``Y`` itself.
    rank : int, optional
        Keep at most the ``rank`` largest eigenvalues of each C_i (set it to the input dimension d for
        burst covariances, whose noise fills the other directions).
    rcond : float, default=1e-10
        Pseudo-inverse rule: with C_i = V diag(lambda) V^T, lambda sorted descending, C_i^+ keeps the
        eigenpairs with lambda_k > rcond * lambda_1 (and k <= rank), and inverts only those.

    Returns
    -------
    np.ndarray of shape (n_samples, n_other)
        Squared distances >= 0 (0 on the diagonal when ``Y_other`` is None). Approximates
        ||x_i - x_j||^2 in the input coordinates, up to O(||x_i - x_j||^4).

    Notes
    -----
    The approximation is local. With m > d the pseudo-inverse ignores the part of y_i - y_j normal to
    the tangent spaces, so two far-apart points of a strongly curved output manifold can get a much too
    small d^2 (a "shortcut"). Use a kernel bandwidth that only reaches nearby points (a small
    ``epsilon_scale`` in :class:`DiffusionMaps`), or observe fewer, less curved units.

    Examples
    --------
    >>> Y = np.array([[0.0, 0.0], [2.0, 4.0]])            # y = (2x, 4x) at x = 0 and x = 1
    >>> C = np.tile([[4.0, 8.0], [8.0, 16.0]], (2, 1, 1))  # J J^T with J = (2, 4)^T
    >>> round(float(mahalanobis_sq_distances(Y, C)[0, 1]), 12)
    1.0
    """
    Y1 = as_matrix(Y, "Y")
    check_finite(Y1, "Y")
    n, m = Y1.shape
    C1 = _check_covariances(covariances, n, m, "covariances")
    rcond = check_positive(rcond, "rcond", "mahalanobis_sq_distances")
    if rank is not None and int(rank) < 1:
        raise ZooscopeInputError(f"'rank' of mahalanobis_sq_distances must be None or >= 1; got {rank}.")
    same = Y_other is None
    if same != (covariances_other is None):
        raise ZooscopeInputError("Pass Y_other and covariances_other together (or neither).")
    if same:
        Y2, C2 = Y1, C1
    else:
        Y2 = as_matrix(Y_other, "Y_other")
        check_finite(Y2, "Y_other")
        if Y2.shape[1] != m:
            raise ZooscopeInputError(f"Y_other must have {m} columns like Y; got shape {Y2.shape}.")
        C2 = _check_covariances(covariances_other, Y2.shape[0], m, "covariances_other")
    centre = Y1.mean(axis=0)  # centre first: big offsets would cancel in B^T y_j - B^T y_i
    Y1c, Y2c = Y1 - centre, Y2 - centre
    B1 = _whitening_factors(C1, rank, rcond)
    Q1 = _quadratic_forms(B1, Y1c, Y2c)  # (y_j - y_i)^T C_i^+ (y_j - y_i)
    if same:
        D2 = 0.5 * (Q1 + Q1.T)
        np.fill_diagonal(D2, 0.0)
        return D2
    B2 = _whitening_factors(C2, rank, rcond)
    Q2 = _quadratic_forms(B2, Y2c, Y1c).T  # (y_i - y_j)^T C_j^+ (y_i - y_j)
    return 0.5 * (Q1 + Q2)
