"""CCA-family similarity indices: R²_CCA / mean ρ, SVCCA, PWCCA, and linear regression R².

Definitions follow Kornblith et al. 2019 (§3, Table 1): with Q_X, Q_Y orthonormal bases of the
(centred) column spaces, the canonical correlations ρ_i are the singular values of Q_Xᵀ Q_Y. Bases come
from a rank-revealing SVD (not a plain QR), so collinear or duplicated units do not add spurious
directions.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, check_choice, check_paired
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures.gramform import orthogonal_factor, use_gram_form

__all__ = ["cca", "cca_rho", "linear_regression", "pwcca", "svcca"]

_ALL = Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION
_cca_meta = partial(MeasureMeta, larger_is_more_similar=True, bounds=(0.0, 1.0), min_samples=3)


def _basis(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis U (n, r) of X's column space and X's singular values, r = numerical rank."""
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    tol = s[0] * max(X.shape) * np.finfo(np.float64).eps if s.size else 0.0
    r = int(np.count_nonzero(s > tol))
    if r == 0:
        raise ZooscopeInputError("A representation has rank 0 after centring (a constant layer). Choose another layer.")
    return U[:, :r], s[:r]


def _wide_basis(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_basis` of centred X in the Gram form (n × n eigh instead of an n × p SVD), for p > n."""
    F = orthogonal_factor(X)
    s = np.linalg.norm(F, axis=0)
    if s.size == 0:
        raise ZooscopeInputError("A representation has rank 0 after centring (a constant layer). Choose another layer.")
    return F / s, s


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_stacklevel() -> int:
    """Stacklevel for warnings.warn (called by our caller) that points at the first frame outside zooscope."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_degenerate(n_eff: int, rx: int, ry: int, owner: str) -> None:
    # Two subspaces of R^n_eff of dimensions rx, ry share >= rx + ry - n_eff dimensions: that many
    # canonical correlations are 1 whatever the data (Kornblith et al. 2019, Theorem 1).
    if rx + ry > n_eff:
        warnings.warn(
            f"{owner}: the representations span {rx} and {ry} dimensions but there are only {n_eff} "
            f"(centred) examples, so at least {rx + ry - n_eff} canonical correlations equal 1 by "
            "construction and the value says little about the networks. Use more examples than "
            "features, reduce features first (svcca, PCA), or use CKA.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _canonical(
    X: np.ndarray, Y: np.ndarray, center: bool, owner: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q_X, U, ρ): X's basis, left singular vectors of Q_XᵀQ_Y, canonical correlations (descending)."""
    if center:
        X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    Qx, _ = _basis(X)
    Qy, _ = _basis(Y)
    _warn_degenerate(X.shape[0] - int(center), Qx.shape[1], Qy.shape[1], owner)
    U, rho, _ = np.linalg.svd(Qx.T @ Qy, full_matrices=False)
    return Qx, U, np.clip(rho, 0.0, 1.0)


def _summary(rho: np.ndarray, statistic: str) -> float:
    return float(np.mean(rho**2) if statistic == "r2" else np.mean(rho))


@MEASURES.register(_cca_meta(symmetric=True, invariances=_ALL | Inv.INVERTIBLE_LINEAR,
                             reference="Kornblith et al. 2019, R²_CCA (Yanai's GCD)"))
def cca(
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    center: bool = True,
    *,
    statistic: Literal["r2", "rho"] = "r2",
) -> float:
    """Mean squared canonical correlation R²_CCA (or mean canonical correlation ρ̄).

    ``R²_CCA = ‖Q_Yᵀ Q_X‖²_F / k``, ``ρ̄ = ‖Q_Yᵀ Q_X‖_* / k`` with k = min(rank X, rank Y) canonical pairs.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        One representation, one row per example.
    Y : array-like of shape (n_samples, n_features_y)
        Another representation of the same examples.
    center : bool, default=True
        Centre the columns first (the paper's definition; invariant to translation). ``center=False``
        reproduces the Demo's ``cca``, which does not centre: 0.54312 on the Demo data, against 0.54540
        centred.
    statistic : {"r2", "rho"}, default="r2"
        R²_CCA (mean ρ²) or ρ̄ (mean ρ).

    Returns
    -------
    float
        In [0, 1]; 1 when Y is an invertible linear map of X. Larger is more similar.

    Warns
    -----
    UserWarning
        When rank X + rank Y exceeds the number of (centred) examples: some ρ equal 1 by construction.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 5))
    >>> round(cca(X, X @ rng.normal(size=(5, 5)) + 7), 10)
    1.0
    """
    check_choice(statistic, ("r2", "rho"), "statistic", "cca")
    X, Y = check_paired(X, Y, min_samples=3 if center else 2)
    _, _, rho = _canonical(X, Y, bool(center), "cca")
    return _summary(rho, statistic)


@MEASURES.register(_cca_meta(symmetric=True, invariances=_ALL | Inv.INVERTIBLE_LINEAR,
                             reference="Kornblith et al. 2019, mean canonical correlation ρ̄"))
def cca_rho(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Mean canonical correlation ρ̄ of centred X and Y: ``cca(X, Y, statistic="rho")``."""
    return cca(X, Y, statistic="rho")


@MEASURES.register(_cca_meta(symmetric=True, invariances=_ALL, factorable=True,
                             reference="Raghu et al. 2017 (SVCCA); Kornblith et al. 2019"))
def svcca(
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    keep: float = 0.99,
    *,
    statistic: Literal["rho", "r2"] = "rho",
) -> float:
    """SVCCA: CCA on the leading singular directions that keep a fraction of the variance.

    Each centred representation is reduced to its top-k singular directions with
    ``Σ_{i<=k} s_i² >= keep · Σ s_i²`` (from the n × n Gram's eigendecomposition when it has more features
    than examples: :func:`~zooscope.measures.gramform.orthogonal_factor`); then the canonical correlations
    of the reduced pair are summarised.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        One representation.
    Y : array-like of shape (n_samples, n_features_y)
        Another representation of the same examples.
    keep : float in (0, 1], default=0.99
        Fraction of variance kept per representation (0.99 as in Raghu et al. and Kornblith et al.).
    statistic : {"rho", "r2"}, default="rho"
        Mean canonical correlation (the SVCCA paper) or mean squared correlation.

    Returns
    -------
    float
        In [0, 1]; larger is more similar. Invariant to invertible linear maps only if the same
        subspace is kept.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 6))
    >>> round(svcca(X, 4 * X - 1), 10)
    1.0
    """
    check_choice(statistic, ("rho", "r2"), "statistic", "svcca")
    if not (isinstance(keep, int | float) and 0.0 < keep <= 1.0):
        raise ZooscopeInputError(f"'keep' of svcca must be a float in (0, 1]; got {keep!r}.")
    X, Y = check_paired(X, Y, min_samples=3)
    reduced = []
    for A in (X, Y):
        U, s = _wide_basis(A) if use_gram_form(*A.shape) else _basis(A - A.mean(axis=0))
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(frac, keep - 1e-12) + 1)  # smallest k reaching the kept fraction
        reduced.append(U[:, : min(k, U.shape[1])] * s[: min(k, U.shape[1])])
    _, _, rho = _canonical(reduced[0], reduced[1], False, "svcca")
    return _summary(rho, statistic)


@MEASURES.register(_cca_meta(symmetric=False, invariances=_ALL | Inv.INVERTIBLE_LINEAR,
                             reference="Morcos et al. 2018 (PWCCA); anatome issue #30"))
def pwcca(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Projection-weighted CCA: canonical correlations weighted by how much of X each accounts for.

    ``PWCCA = Σ α_i ρ_i / Σ α_i`` with ``α_i = Σ_j |<h_i, x_j>|``: h_i are X's unit-norm canonical
    *variables* (n-vectors, Q_X times the left singular vectors of Q_XᵀQ_Y) and x_j the centred columns
    (units) of X. Weights from canonical *weights* instead would be anatome's bug #30.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        The representation whose units define the weights.
    Y : array-like of shape (n_samples, n_features_y)
        The other representation of the same examples.

    Returns
    -------
    float
        In [0, 1]; larger is more similar. Asymmetric: invariant to invertible linear maps of Y but not
        of X (they change the weights). Kornblith et al. symmetrise it as ``(S + Sᵀ)/2`` over layers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 4))
    >>> round(pwcca(X, X @ rng.normal(size=(4, 4))), 10)
    1.0
    """
    X, Y = check_paired(X, Y, min_samples=3)
    Xc = X - X.mean(axis=0)
    Qx, U, rho = _canonical(Xc, Y - Y.mean(axis=0), False, "pwcca")
    H = Qx @ U[:, : rho.size]  # canonical variables of X, orthonormal columns
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    return float(np.clip(alpha @ rho / alpha.sum(), 0.0, 1.0))


@MEASURES.register(_cca_meta(symmetric=False, invariances=_ALL | Inv.INVERTIBLE_LINEAR,
                             reference="Kornblith et al. 2019, R²_LR"))
def linear_regression(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Share of X's variance explained by a least-squares linear fit from Y: ``‖Q_Yᵀ X‖²_F / ‖X‖²_F``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        The representation to predict (centred internally).
    Y : array-like of shape (n_samples, n_features_y)
        The predictor representation (centred internally).

    Returns
    -------
    float
        R²_LR in [0, 1]; larger is more similar. Asymmetric; invariant to invertible linear maps of Y.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Y = rng.normal(size=(100, 6))
    >>> round(linear_regression(Y[:, :2] @ rng.normal(size=(2, 3)), Y), 10)
    1.0
    """
    X, Y = check_paired(X, Y, min_samples=3)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    Qy, _ = _basis(Yc)
    if Qy.shape[1] >= X.shape[0] - 1:
        warnings.warn(
            f"linear_regression: Y spans {Qy.shape[1]} dimensions with only {X.shape[0]} examples, so it "
            "fits any X exactly (R² = 1). Use more examples than features or reduce Y first.",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )
    return float(np.clip(np.linalg.norm(Qy.T @ Xc) ** 2 / np.linalg.norm(Xc) ** 2, 0.0, 1.0))
