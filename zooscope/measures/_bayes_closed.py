"""Prior predictive covariances and closed-form Gaussian divergences between them (seed 002).

Split from :mod:`zooscope.measures.bayes` (the Monte Carlo TV / JS estimators); the public names are
exported from there. All closed forms take zero-mean Gaussians N(0, Σ₁), N(0, Σ₂) built by
:func:`prior_predictive_cov`, work in float64 through Cholesky factors (Σ = L Lᵀ), and are exactly 0 when
Σ₁ and Σ₂ are equal bit for bit (Bures: up to √round-off, ~1e-8).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

from zooscope._validation import ZooscopeInputError, check_alloc, check_gram, check_paired
from zooscope.measures._base import MEASURES, Inv, MeasureMeta

__all__ = ["bhattacharyya", "bures_wasserstein", "gaussian_divergences", "hellinger", "prior_predictive_cov",
           "sym_kl"]


def prior_predictive_cov(X: Any, *, b: float = 0.01, normalize: bool = True) -> Any:
    """Covariance Σ of the prior predictive y ~ N(0, Σ) of a Gaussian linear read-out of X.

    K = X Xᵀ (uncentred, as the reference's ``get_cov``); ``normalize`` sets K ← N K / tr K; then
    Σ = (1 − ν) K + ν I with ν = N b / (1 + N b) (``BayesCompare.cov_utils.cov_trace_norm_sigma_N``).

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (N, n_features)
        One row per stimulus. A torch tensor gives a torch Σ that keeps the graph.
    b : float, default=0.01
        Noise weight per stimulus; b = 0 gives Σ = K, singular when n_features < N.
    normalize : bool, default=True
        Trace-normalise K first.

    Returns
    -------
    numpy.ndarray or torch.Tensor of shape (N, N)
        Σ, float64 for numpy input.

    Examples
    --------
    >>> S = prior_predictive_cov(np.eye(4), b=0.25)   # N b = 1, so nu = 1/2
    >>> float(S[0, 0]), float(S[0, 1])
    (1.0, 0.0)
    """
    if not (hasattr(X, "detach") and hasattr(X, "requires_grad")):
        X = np.asarray(X, dtype=np.float64)
    N = X.shape[0]
    K = X @ X.T
    if normalize:
        tr = K.trace() if not hasattr(K, "detach") else K.diagonal().sum()
        if float(tr.detach() if hasattr(tr, "detach") else tr) == 0.0:
            raise ZooscopeInputError("X is all zeros, so tr(X Xᵀ) = 0 and K cannot be trace-normalised. "
                                     "Choose another layer.")
        K = K * (N / tr)
    nu = N * b / (1.0 + N * b)
    if nu == 0.0:
        return K
    eye = np.eye(N) if isinstance(K, np.ndarray) else _torch_eye(N, K)
    return (1.0 - nu) * K + nu * eye


def _torch_eye(N: int, like: Any) -> Any:
    import torch

    return torch.eye(N, dtype=like.dtype, device=like.device)


def _chol(S: np.ndarray, which: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise ZooscopeInputError(
            f"The prior predictive covariance of {which} is not positive definite. This happens with b=0 "
            "when a layer has fewer features than examples; use b > 0 (default 0.01)."
        ) from None


def _logdet(L: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(L))))


def _sym_kl_cov(L1: np.ndarray, L2: np.ndarray) -> float:
    # ¼[tr(Σ₂⁻¹Σ₁) + tr(Σ₁⁻¹Σ₂)] − N/2, with tr(Σ₂⁻¹Σ₁) = ‖L₂⁻¹L₁‖_F² (exactly N when L₁ = L₂).
    if np.array_equal(L1, L2):
        return 0.0
    t12 = np.sum(scipy.linalg.solve_triangular(L2, L1, lower=True) ** 2)
    t21 = np.sum(scipy.linalg.solve_triangular(L1, L2, lower=True) ** 2)
    return float(max(0.0, 0.25 * (t12 + t21) - 0.5 * L1.shape[0]))


def _bhattacharyya_cov(S1: np.ndarray, S2: np.ndarray, L1: np.ndarray, L2: np.ndarray) -> float:
    # D_B = ½ ln det((Σ₁+Σ₂)/2) − ¼(ln det Σ₁ + ln det Σ₂)   (zero means; nats)
    Lm = _chol(0.5 * (S1 + S2), "(Σ₁+Σ₂)/2")
    return float(max(0.0, 0.5 * _logdet(Lm) - 0.25 * (_logdet(L1) + _logdet(L2))))


def _bures_cov(S1: np.ndarray, S2: np.ndarray, L1: np.ndarray, L2: np.ndarray) -> float:
    # W₂² = tr Σ₁ + tr Σ₂ − 2 tr(Σ₁^½ Σ₂ Σ₁^½)^½ ; the last trace is the nuclear norm of L₂ᵀL₁ because
    # Σ₁^½Σ₂Σ₁^½ and (L₂ᵀL₁)ᵀ(L₂ᵀL₁) = L₁ᵀΣ₂L₁ share their eigenvalues (one SVD, no matrix square roots).
    fidelity = np.sum(np.linalg.svd(L2.T @ L1, compute_uv=False))
    return float(np.sqrt(max(0.0, np.trace(S1) + np.trace(S2) - 2.0 * fidelity)))


def gaussian_divergences(S1: npt.ArrayLike, S2: npt.ArrayLike) -> dict[str, float]:
    """Every closed form between N(0, S1) and N(0, S2): sym_kl, bhattacharyya, hellinger, bures_wasserstein.

    Parameters
    ----------
    S1, S2 : array-like of shape (N, N)
        Symmetric positive definite covariances.

    Returns
    -------
    dict of str to float
        ``sym_kl`` (mean of the two KL directions, nats), ``bhattacharyya`` (nats), ``hellinger``
        (√(1 − e^{−D_B}) in [0, 1]), ``bures_wasserstein`` (the 2-Wasserstein distance).

    Examples
    --------
    >>> d = gaussian_divergences([[1.0]], [[4.0]])
    >>> round(d["bures_wasserstein"], 12), round(d["sym_kl"], 6)   # |1 − 2|; ¼(4 + ¼) − ½
    (1.0, 0.5625)
    """
    S1, S2 = check_gram(S1, "S1", min_samples=1), check_gram(S2, "S2", min_samples=1)
    if S1.shape != S2.shape:
        raise ZooscopeInputError(f"S1 and S2 must have the same shape; got {S1.shape} and {S2.shape}.")
    L1, L2 = _chol(S1, "S1"), _chol(S2, "S2")
    d_b = _bhattacharyya_cov(S1, S2, L1, L2)
    return {
        "sym_kl": _sym_kl_cov(L1, L2),
        "bhattacharyya": d_b,
        "hellinger": float(np.sqrt(-np.expm1(-d_b))),
        "bures_wasserstein": _bures_cov(S1, S2, L1, L2),
    }


def _covs(X: npt.ArrayLike, Y: npt.ArrayLike, b: float, normalize: bool, owner: str):
    if not (isinstance(b, int | float) and np.isfinite(b) and b >= 0):
        raise ZooscopeInputError(f"'b' of {owner} must be a float in [0, inf); got {b!r}.")
    X, Y = check_paired(X, Y, min_samples=2)
    N = X.shape[0]
    check_alloc((6, N, N), f"The {N}×{N} prior predictive covariances of {owner}",
                "Use fewer stimuli (a random subset of rows), or linear_cka")
    S1 = prior_predictive_cov(X, b=b, normalize=normalize)
    S2 = prior_predictive_cov(Y, b=b, normalize=normalize)
    return S1, S2, _chol(S1, "X"), _chol(S2, "Y")


_closed_meta = dict(
    larger_is_more_similar=False, symmetric=True,
    invariances=Inv.ORTHOGONAL | Inv.ISOTROPIC_SCALE | Inv.PERMUTATION,
    invariances_lost_by_option=(("normalize", False, Inv.ISOTROPIC_SCALE),),  # b is then an absolute ridge
    not_invariant=Inv.TRANSLATION | Inv.INVERTIBLE_LINEAR,
)
_ref = "Schütt et al. 2024 (BayesCompare distances.py)"

_params_doc = """
    Parameters
    ----------
    X : array-like of shape (N, n_features_x)
        Activations of one layer, one row per stimulus (torch tensors are converted; no graph).
    Y : array-like of shape (N, n_features_y)
        Activations for the same stimuli, same row order.
    b : float, default=0.01
        Noise weight, ν = N b / (1 + N b); see :func:`prior_predictive_cov`.
    normalize : bool, default=True
        Trace-normalise K = X Xᵀ first (gives invariance to isotropic scaling).
"""


@MEASURES.register(MeasureMeta(reference=_ref, **_closed_meta))
def sym_kl(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True) -> float:
    """Symmetric KL divergence (mean of the two directions, nats) between the prior predictives of X and Y.

    ½[KL(P‖Q) + KL(Q‖P)] = ¼[tr(Σ_Y⁻¹Σ_X) + tr(Σ_X⁻¹Σ_Y)] − N/2. This is the reference's ``kldiv``,
    which is the *mean* of the two directions, not their sum (Jeffreys' divergence is twice this).
    {params}

    Returns
    -------
    float
        In [0, inf); 0 for identical Σ. Smaller is more similar. Not a metric.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> sym_kl(X, 5 * X)
    0.0
    """
    _, _, L1, L2 = _covs(X, Y, b, normalize, "sym_kl")
    return _sym_kl_cov(L1, L2)


@MEASURES.register(MeasureMeta(reference=_ref, **_closed_meta))
def bhattacharyya(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True) -> float:
    """Bhattacharyya distance (nats) between the prior predictives of X and Y.

    D_B = ½ ln det((Σ_X+Σ_Y)/2) − ¼(ln det Σ_X + ln det Σ_Y); e^{−D_B} is the Bhattacharyya coefficient
    BC, and 1 − BC ≤ TV ≤ √(1 − BC²).
    {params}

    Returns
    -------
    float
        In [0, inf); 0 for identical Σ. Smaller is more similar. Not a metric.
    """
    S1, S2, L1, L2 = _covs(X, Y, b, normalize, "bhattacharyya")
    return _bhattacharyya_cov(S1, S2, L1, L2)


@MEASURES.register(MeasureMeta(bounds=(0.0, 1.0), is_metric=True, reference=_ref, **_closed_meta))
def hellinger(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True) -> float:
    """Hellinger distance √(1 − e^{−D_B}) between the prior predictives of X and Y (a metric).

    As the reference, without a √2 factor, so it lies in [0, 1]; D_B is :func:`bhattacharyya`.
    {params}

    Returns
    -------
    float
        In [0, 1]; 0 for identical Σ. Smaller is more similar.
    """
    S1, S2, L1, L2 = _covs(X, Y, b, normalize, "hellinger")
    return float(np.sqrt(-np.expm1(-_bhattacharyya_cov(S1, S2, L1, L2))))


@MEASURES.register(MeasureMeta(is_metric=True, reference=_ref + "; Peyré & Cuturi 2019", **_closed_meta))
def bures_wasserstein(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True) -> float:
    """2-Wasserstein (Bures) distance between the prior predictives of X and Y (a metric).

    W₂ = √(tr Σ_X + tr Σ_Y − 2 tr(Σ_X^½ Σ_Y Σ_X^½)^½), the reference's ``wasserstein`` (which uses
    ``scipy.linalg.sqrtm``; we use the singular values of L_Yᵀ L_X, the same number to ~1e-13).
    {params}

    Returns
    -------
    float
        In [0, inf); ~1e-8 (√round-off) for identical Σ. Smaller is more similar.
    """
    S1, S2, L1, L2 = _covs(X, Y, b, normalize, "bures_wasserstein")
    return _bures_cov(S1, S2, L1, L2)


for _f in (sym_kl, bhattacharyya, hellinger, bures_wasserstein):
    _f.__doc__ = _f.__doc__.replace("{params}", _params_doc)
