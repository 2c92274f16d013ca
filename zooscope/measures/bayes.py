"""Bayesian comparisons of representations (Schütt et al., arXiv 2411.08739; seed 002).

A representation X of N stimuli induces, through a linear read-out y = X w + ε with Gaussian w and ε, the
prior predictive distribution y ~ N(0, Σ) over the N responses. Two representations are compared by a
distance between their prior predictives. Σ depends on X only through the *uncentred* Gram matrix
K = X Xᵀ, normalised as in the reference code (``BayesCompare.cov_utils``):

    K ← N · K / tr K                 (``normalize=True``)
    Σ = (1 − ν) K + ν I,  ν = N b / (1 + N b)

Total variation (TV) and the Jensen–Shannon distance √JSD are metrics on distributions, so both are
pseudo-metrics on representations; they have no closed form and are estimated by Monte Carlo with
the reparameterisation x = L z (L the Cholesky factor of Σ), which keeps a torch graph differentiable.
The closed-form Gaussian divergences of the reference (symmetric KL, Bhattacharyya, Hellinger,
2-Wasserstein/Bures) are here too; they live in :mod:`zooscope.measures._bayes_closed`.

Notes on the reference (``Schuett-lab/BayesCompare`` @ 232ee41, ``distances.py``):

* its ``jsd`` (alias "jensenshannondistance") returns the Jensen–Shannon **divergence** in bits, without
  the square root; our :func:`jsd` returns the same number and :func:`js_distance` its square root;
* its ``kldiv`` is the **mean** of the two KL directions; ours is :func:`sym_kl`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.linalg

from zooscope._validation import ZooscopeInputError, check_alloc, check_paired
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures._bayes_closed import (
    bhattacharyya,
    bures_wasserstein,
    gaussian_divergences,
    hellinger,
    prior_predictive_cov,
    sym_kl,
)

__all__ = [
    "MCEstimate",
    "bhattacharyya",
    "bures_wasserstein",
    "gaussian_divergences",
    "gaussian_jsd",
    "gaussian_tv",
    "hellinger",
    "js_distance",
    "jsd",
    "prior_predictive_cov",
    "sym_kl",
    "tv_distance",
]

_LN2 = math.log(2.0)
_CHUNK = 4096  # columns of Z processed at once: bounds the N × chunk temporaries


class MCEstimate(NamedTuple):
    """A Monte Carlo estimate with its standard error; unpacks as ``value, se = ...``."""

    value: Any
    se: float


def _is_torch(A: Any) -> bool:
    return hasattr(A, "detach") and hasattr(A, "requires_grad")


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    # The reference's generator: Generator(SFC64(seed)); draws Z1 (N × n) then Z2 (N × n).
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.Generator(np.random.SFC64(seed))


def _check_mc(n_samples: int, b: float, owner: str) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 2:
        raise ZooscopeInputError(f"'n_samples' of {owner} must be an int >= 2; got {n_samples!r}.")
    if not (isinstance(b, int | float) and np.isfinite(b) and b >= 0):
        raise ZooscopeInputError(f"'b' of {owner} must be a float in [0, inf); got {b!r}.")


# ---------------------------------------------------------------------------------------------------------
# Monte Carlo core, shared by the numpy and the torch path.
#
# For x = L1 z ~ P1:  log q(x) − log p(x) = −½(‖M21 z‖² − ‖z‖²) + (log|L1| − log|L2|),  M21 = L2⁻¹ L1,
# (the (2π)^{N/2} factors cancel). With Σ1 = Σ2 bit for bit we take M21 = I (a triangular solve may not
# return exactly I), so every log-ratio is exactly 0 and TV and JSD are exactly 0 (the reference's form
# leaves ~1e-15).
# ---------------------------------------------------------------------------------------------------------


def _log_ratios_np(L_from: np.ndarray, L_to: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Log p_to(x) − log p_from(x) for x = L_from z, z the columns of Z (float64)."""
    if np.array_equal(L_from, L_to):
        return np.zeros(Z.shape[1])
    M = scipy.linalg.solve_triangular(L_to, L_from, lower=True)
    dlogdet = np.sum(np.log(np.diag(L_from))) - np.sum(np.log(np.diag(L_to)))
    out = np.empty(Z.shape[1])
    for s in range(0, Z.shape[1], _CHUNK):
        Zc = Z[:, s:s + _CHUNK]
        out[s:s + _CHUNK] = -0.5 * (np.sum((M @ Zc) ** 2, axis=0) - np.sum(Zc**2, axis=0))
    return out + dlogdet


def _log_ratios_torch(L_from: Any, L_to: Any, Z: Any) -> Any:
    import torch

    M = torch.linalg.solve_triangular(L_to, L_from, upper=False)
    dlogdet = torch.log(torch.diagonal(L_from)).sum() - torch.log(torch.diagonal(L_to)).sum()
    parts = [-0.5 * (((M @ Z[:, s:s + _CHUNK]) ** 2).sum(0) - (Z[:, s:s + _CHUNK] ** 2).sum(0))
             for s in range(0, Z.shape[1], _CHUNK)]
    return torch.cat(parts) + dlogdet


def _cholesky(S: Any, which: str) -> Any:
    try:
        if _is_torch(S):
            import torch

            return torch.linalg.cholesky(S)
        return np.linalg.cholesky(S)
    except Exception as e:  # LinAlgError (numpy) / torch.linalg.LinAlgError
        raise ZooscopeInputError(
            f"The prior predictive covariance of {which} is not positive definite ({e}). This happens "
            "with b=0 when a layer has fewer features than examples; use b > 0 (default 0.01)."
        ) from None


def _mc_terms(X: Any, Y: Any, b: float, normalize: bool, n_samples: int, seed: Any, owner: str):
    """Return the two arrays of log-ratios r1 = log q − log p on P-draws and r2 = log p − log q on Q-draws."""
    _check_mc(n_samples, b, owner)
    Xc, Yc = check_paired(X, Y, min_samples=2)  # validated float64 copies (torch graphs stay with X, Y)
    N = Xc.shape[0]
    check_alloc((6, N, N), f"The {N}×{N} prior predictive covariances of {owner}",
                "Use fewer stimuli (a random subset of rows)")
    check_alloc((4, N, int(n_samples)), f"The {N}×{n_samples} Monte Carlo draws of {owner}", "Lower n_samples")
    torch_in = _is_torch(X) or _is_torch(Y)
    if torch_in:
        import torch

        ref = X if _is_torch(X) else Y
        dtype = ref.dtype if ref.is_floating_point() and ref.dtype != torch.float16 else torch.float64
        X = X if _is_torch(X) else torch.as_tensor(Xc, dtype=dtype, device=ref.device)
        Y = Y if _is_torch(Y) else torch.as_tensor(Yc, dtype=dtype, device=ref.device)
        S1 = prior_predictive_cov(X.to(dtype), b=b, normalize=normalize)
        S2 = prior_predictive_cov(Y.to(dtype), b=b, normalize=normalize)
    else:
        S1 = prior_predictive_cov(Xc, b=b, normalize=normalize)
        S2 = prior_predictive_cov(Yc, b=b, normalize=normalize)
    L1, L2 = _cholesky(S1, "X"), _cholesky(S2, "Y")
    gen = _rng(seed)
    N = Xc.shape[0]
    Z1 = gen.standard_normal(size=(N, n_samples))  # draw order of the reference: Z1, then Z2
    Z2 = gen.standard_normal(size=(N, n_samples))
    if torch_in:
        Z1t = torch.as_tensor(Z1, dtype=L1.dtype, device=L1.device)
        Z2t = torch.as_tensor(Z2, dtype=L1.dtype, device=L1.device)
        return _log_ratios_torch(L1, L2, Z1t), _log_ratios_torch(L2, L1, Z2t), True
    return _log_ratios_np(L1, L2, Z1), _log_ratios_np(L2, L1, Z2), False


def _combine(f1: Any, f2: Any, torch_in: bool, clip: bool) -> MCEstimate:
    """(mean f1 + mean f2)/2 and its standard error ½·√(var f1/n + var f2/n)."""
    if torch_in:
        value = 0.5 * (f1.mean() + f2.mean())
        v1, v2 = float(f1.detach().var()), float(f2.detach().var())
        value = value.clamp(min=0.0) if clip else value
    else:
        value = 0.5 * (float(np.mean(f1)) + float(np.mean(f2)))
        v1, v2 = float(np.var(f1, ddof=1)), float(np.var(f2, ddof=1))
        value = max(0.0, value) if clip else value
    return MCEstimate(value, 0.5 * math.sqrt(v1 / len(f1) + v2 / len(f2)))


def _tv_from_ratios(r1: Any, r2: Any, torch_in: bool) -> MCEstimate:
    # TV = E_P[max(0, 1 − q/p)] = E_Q[max(0, 1 − p/q)]; both halves averaged, as the reference does.
    if torch_in:
        f1, f2 = (1 - r1.exp()).clamp(min=0), (1 - r2.exp()).clamp(min=0)
    else:
        f1, f2 = np.maximum(0.0, -np.expm1(r1)), np.maximum(0.0, -np.expm1(r2))
    return _combine(f1, f2, torch_in, clip=False)


def _jsd_from_ratios(r1: Any, r2: Any, torch_in: bool) -> MCEstimate:
    # JSD(bits) = ½ E_P[log2(2p/(p+q))] + ½ E_Q[log2(2q/(p+q))], and log(2p/(p+q)) = ln 2 − softplus(log q/p):
    # written so that each term is exactly 0 when p = q.
    if torch_in:
        import torch

        zero = torch.zeros((), dtype=r1.dtype, device=r1.device)
        f1 = (_LN2 - torch.logaddexp(zero, r1)) / _LN2
        f2 = (_LN2 - torch.logaddexp(zero, r2)) / _LN2
    else:
        f1, f2 = (_LN2 - np.logaddexp(0.0, r1)) / _LN2, (_LN2 - np.logaddexp(0.0, r2)) / _LN2
    return _combine(f1, f2, torch_in, clip=True)


def _finish(est: MCEstimate, return_se: bool):
    return est if return_se else est.value


_mc_meta = dict(
    larger_is_more_similar=False, symmetric=True, stochastic=True, bounds=(0.0, 1.0), differentiable=True,
    invariances=Inv.ORTHOGONAL | Inv.ISOTROPIC_SCALE | Inv.PERMUTATION,
    invariances_lost_by_option=(("normalize", False, Inv.ISOTROPIC_SCALE),),  # b is then an absolute ridge
    not_invariant=Inv.TRANSLATION | Inv.INVERTIBLE_LINEAR,
)


@MEASURES.register(MeasureMeta(is_metric=True, reference="Schütt et al. 2024, arXiv 2411.08739", **_mc_meta))
def tv_distance(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True,
                n_samples: int = 10000, seed: int | np.random.Generator = 0, return_se: bool = False):
    """Total variation distance between the prior predictives of linear read-outs of X and of Y.

    TV = ½ ∫ |p − q| with P = N(0, Σ_X), Q = N(0, Σ_Y) (see :func:`prior_predictive_cov`), estimated by
    Monte Carlo as the reference does: (E_P[max(0, 1 − q/p)] + E_Q[max(0, 1 − p/q)]) / 2 with
    ``n_samples`` draws from each distribution. Cost O(N³ + N² · n_samples), independent of the
    number of features.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples_x, n_features_x)
        Activations of one layer, one row per stimulus (N = n_samples_x rows).
    Y : array-like or torch.Tensor of shape (n_samples_x, n_features_y)
        Activations for the same stimuli, same row order.
    b : float, default=0.01
        Noise weight: ν = N b / (1 + N b), Σ = (1 − ν) K + ν I.
    normalize : bool, default=True
        Trace-normalise K ← N K / tr K first (this gives invariance to isotropic scaling).
    n_samples : int, default=10000
        Monte Carlo draws per distribution.
    seed : int or numpy.random.Generator, default=0
        ``Generator(SFC64(seed))`` for an int, as the reference; Z₁ (N × n) is drawn before Z₂.
    return_se : bool, default=False
        Return an :class:`MCEstimate` ``(value, se)`` with the Monte Carlo standard error.

    Returns
    -------
    float or torch.Tensor or MCEstimate
        TV in [0, 1]; 0 for identical Σ (exactly), smaller is more similar. A 0-d tensor that keeps
        the autograd graph when X or Y is a torch tensor.

    Notes
    -----
    TV is a metric on distributions, so this is a pseudo-metric on representations; the Monte Carlo
    estimate satisfies symmetry and the triangle inequality within its standard error only
    (``tv_distance(X, Y)`` and ``tv_distance(Y, X)`` use the draws in swapped roles). With the same
    generator and draw order this reproduces ``BayesCompare.measure_dist(..., "tvd")`` to ~1e-12.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 5))
    >>> tv_distance(X, 2.0 * X)   # same Σ after trace normalisation
    0.0
    """
    r1, r2, torch_in = _mc_terms(X, Y, b, normalize, n_samples, seed, "tv_distance")
    return _finish(_tv_from_ratios(r1, r2, torch_in), return_se)


@MEASURES.register(MeasureMeta(is_metric=False, reference="Schütt et al. 2024; Lin 1991", **_mc_meta))
def jsd(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True,
        n_samples: int = 10000, seed: int | np.random.Generator = 0, return_se: bool = False):
    """Jensen–Shannon *divergence* in bits between the prior predictives of X and Y (not a metric).

    JSD = ½ KL(P ‖ M) + ½ KL(Q ‖ M), M = (P + Q)/2, estimated by Monte Carlo as
    1 + ½(E_P[log₂ p/(p+q)] + E_Q[log₂ q/(p+q)]), clipped at 0. This is the number the reference's
    ``jsd`` returns (its docstring and alias "jensenshannondistance" say "distance", but it has no
    square root); the metric is :func:`js_distance` = √JSD.

    Parameters
    ----------
    X, Y : array-like or torch.Tensor of shape (n_samples_x, n_features_x), (n_samples_x, n_features_y)
        Activations for the same stimuli, same row order.
    b, normalize, n_samples, seed, return_se
        As in :func:`tv_distance`.

    Returns
    -------
    float or torch.Tensor or MCEstimate
        In [0, 1] bits; 0 for identical Σ (exactly). Smaller is more similar.
    """
    r1, r2, torch_in = _mc_terms(X, Y, b, normalize, n_samples, seed, "jsd")
    return _finish(_jsd_from_ratios(r1, r2, torch_in), return_se)


@MEASURES.register(MeasureMeta(is_metric=True, reference="Schütt et al. 2024; Endres & Schindelin 2003",
                               **_mc_meta))
def js_distance(X: npt.ArrayLike, Y: npt.ArrayLike, *, b: float = 0.01, normalize: bool = True,
                n_samples: int = 10000, seed: int | np.random.Generator = 0, return_se: bool = False):
    """Jensen–Shannon distance √JSD (JSD in bits) between the prior predictives of X and Y: a metric.

    Parameters
    ----------
    X, Y : array-like or torch.Tensor of shape (n_samples_x, n_features_x), (n_samples_x, n_features_y)
        Activations for the same stimuli, same row order.
    b, normalize, n_samples, seed, return_se
        As in :func:`tv_distance`.

    Returns
    -------
    float or torch.Tensor or MCEstimate
        √JSD in [0, 1]; smaller is more similar. The standard error is the delta-method one,
        se(JSD) / (2 √JSD), or √se(JSD) (an upper bound) when the JSD estimate is 0.

    Notes
    -----
    The reference's ``jsd`` returns the divergence without the square root; see :func:`jsd`. The
    gradient of √· is infinite at 0, so train on :func:`jsd` if representations may coincide.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(20, 5))
    >>> js_distance(X, X)
    0.0
    """
    r1, r2, torch_in = _mc_terms(X, Y, b, normalize, n_samples, seed, "js_distance")
    est = _jsd_from_ratios(r1, r2, torch_in)
    v = float(est.value.detach()) if torch_in else est.value
    se = est.se / (2 * math.sqrt(v)) if v > 0 else math.sqrt(est.se)
    value = est.value.sqrt() if torch_in else math.sqrt(v)
    return _finish(MCEstimate(value, se), return_se)


# ---------------------------------------------------------------------------------------------------------
# The same estimators on given covariances: for closed-form checks (1-D TV, Σ₂ = cΣ₁) and for users who
# build Σ themselves (e.g. a posterior predictive).
# ---------------------------------------------------------------------------------------------------------


def _check_cov_pair(S1: npt.ArrayLike, S2: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    from zooscope._validation import check_gram

    S1, S2 = check_gram(S1, "S1", min_samples=1), check_gram(S2, "S2", min_samples=1)
    if S1.shape != S2.shape:
        raise ZooscopeInputError(f"S1 and S2 must have the same shape; got {S1.shape} and {S2.shape}.")
    return S1, S2


def _gaussian_terms(S1, S2, n_samples, seed, owner):
    _check_mc(n_samples, 0.0, owner)
    S1, S2 = _check_cov_pair(S1, S2)
    L1, L2 = _cholesky(S1, "S1"), _cholesky(S2, "S2")
    gen = _rng(seed)
    Z1 = gen.standard_normal(size=(S1.shape[0], n_samples))
    Z2 = gen.standard_normal(size=(S1.shape[0], n_samples))
    return _log_ratios_np(L1, L2, Z1), _log_ratios_np(L2, L1, Z2)


def gaussian_tv(S1: npt.ArrayLike, S2: npt.ArrayLike, *, n_samples: int = 10000,
                seed: int | np.random.Generator = 0) -> MCEstimate:
    """Monte Carlo total variation between N(0, S1) and N(0, S2), with its standard error.

    Parameters
    ----------
    S1, S2 : array-like of shape (N, N)
        Symmetric positive definite covariances.
    n_samples : int, default=10000
        Draws per distribution.
    seed : int or numpy.random.Generator, default=0
        As in :func:`tv_distance`.

    Returns
    -------
    MCEstimate
        ``(value, se)``, value in [0, 1].

    Examples
    --------
    >>> est = gaussian_tv([[1.0]], [[3.0]], n_samples=20000)
    >>> abs(est.value - 0.25936) < 4 * est.se   # closed form 2[Φ(x*) − Φ(x*/√3)]
    True
    """
    r1, r2 = _gaussian_terms(S1, S2, n_samples, seed, "gaussian_tv")
    return _tv_from_ratios(r1, r2, False)


def gaussian_jsd(S1: npt.ArrayLike, S2: npt.ArrayLike, *, n_samples: int = 10000,
                 seed: int | np.random.Generator = 0) -> MCEstimate:
    """Monte Carlo Jensen–Shannon divergence (bits, no square root) between N(0, S1) and N(0, S2).

    Parameters
    ----------
    S1, S2 : array-like of shape (N, N)
        Symmetric positive definite covariances.
    n_samples : int, default=10000
        Draws per distribution.
    seed : int or numpy.random.Generator, default=0
        As in :func:`tv_distance`.

    Returns
    -------
    MCEstimate
        ``(value, se)``, value in [0, 1] bits.
    """
    r1, r2 = _gaussian_terms(S1, S2, n_samples, seed, "gaussian_jsd")
    return _jsd_from_ratios(r1, r2, False)
