"""Transferability scores: how well a frozen model's outputs on a target dataset predict its labels.

Notation: ``features`` (n_samples, n_features) are the target data's features from the frozen model;
``source_probs`` (n_samples, n_source_classes) its softmax over the SOURCE classes; ``labels`` (n_samples,)
the target's integer labels.  Larger is better for every score (more transferable), but the scales differ
per score: rank models with one score at a time.

=========  ============================================================  ================================
score      formula                                                        reference
=========  ============================================================  ================================
logme      mean over classes of max_{α,β} log p(y_c | f, α, β) / n        You et al., ICML 2021 (thuml/LogME)
leep       (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z                          Nguyen et al., ICML 2020
nce        −H(Y | Z), Z = argmax of the source prediction                 Tran et al., ICCV 2019
h_score    tr(cov(f)⁻¹ cov(E[f | y])), shrunk covariance                  Bao et al., ICIP 2019; Ibrahim et al. 2022
transrate  R(Z) − (1/K) Σ_k R(Z_k), R(Z) = ½ logdet(I + ZᵀZ / (n ε))      Huang et al., ICML 2022
=========  ============================================================  ================================
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, as_matrix, check_finite, check_positive
from zooscope.measures._base import MEASURES, Inv, MeasureMeta

__all__ = ["h_score", "leep", "logme", "nce", "transrate"]


def _meta(invariances: Inv, reference: str, min_samples: int = 2) -> MeasureMeta:
    return MeasureMeta(larger_is_more_similar=True, symmetric=False, invariances=invariances, inputs="other",
                       layerwise=False, min_samples=min_samples, reference=reference)


def _labels(labels: npt.ArrayLike, n: int, owner: str) -> tuple[np.ndarray, int]:
    """Integer labels (n,) remapped to 0..K-1, with K >= 2."""
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ZooscopeInputError(f"labels of {owner} must have shape ({n},), one per row of the first "
                                 f"argument; got shape {y.shape}.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and np.all(y == np.round(y))):
            raise ZooscopeInputError(f"labels of {owner} must be integer class labels; got dtype {y.dtype}"
                                     + (". For real-valued targets use logme(..., regression=True)."
                                        if owner == "logme" else "."))
    classes, yi = np.unique(y.astype(np.int64), return_inverse=True)
    if len(classes) < 2:
        raise ZooscopeInputError(f"{owner} needs at least 2 classes in labels; got {len(classes)}.")
    return yi.reshape(-1), len(classes)


def _features(features: npt.ArrayLike, owner: str, min_samples: int = 2) -> np.ndarray:
    f = as_matrix(features, "features")
    if f.shape[0] < min_samples or f.shape[1] == 0:
        raise ZooscopeInputError(f"{owner} needs features of shape (n_samples >= {min_samples}, n_features >= 1); "
                                 f"got {f.shape}.")
    check_finite(f, "features")
    return f


def _probs(source_probs: npt.ArrayLike, owner: str) -> np.ndarray:
    p = as_matrix(source_probs, "source_probs")
    check_finite(p, "source_probs")
    if p.shape[1] < 2:
        raise ZooscopeInputError(f"source_probs of {owner} must be (n_samples, n_source_classes >= 2); got "
                                 f"{p.shape}.")
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise ZooscopeInputError(f"source_probs of {owner} must be probabilities (non-negative rows summing to 1); "
                                 "apply softmax to the source model's logits first.")
    return p


# ------------------------------------------------------------------------------------------------------ LogME
@MEASURES.register(_meta(Inv.ORTHOGONAL | Inv.PERMUTATION, "You et al., ICML 2021 (thuml/LogME)"))
def logme(features: npt.ArrayLike, labels: npt.ArrayLike, *, regression: bool = False) -> float:
    """LogME: the maximum log-evidence of a Bayesian linear model from features to (one-hot) labels.

    For each target column ``y_c`` (a one-hot class indicator, or a regression target) the evidence
    ``log p(y_c | F, α, β)`` of ``y_c = F m + N(0, 1/β)``, ``m ∼ N(0, I/α)`` is maximised over (α, β) by
    MacKay's fixed-point iteration on the SVD of ``F`` (at most 11 steps, stop when α/β moves < 0.1 %, as
    thuml/LogME); the score is the mean over columns of the maximum evidence divided by ``n_samples``.
    Features are used as given (not centred), as in the reference.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,) or (n_samples, n_targets)
        Integer class labels; with ``regression=True``, real targets (one column per target).
    regression : bool, default=False

    Returns
    -------
    float
        Mean per-sample log-evidence; larger = more transferable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> good, bad = np.c_[y + 0.1 * rng.normal(size=100), rng.normal(size=100)], rng.normal(size=(100, 2))
    >>> logme(good, y) > logme(bad, y)
    True
    """
    f = _features(features, "logme")
    n, d = f.shape
    if regression:
        Y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != n:
            raise ZooscopeInputError(f"regression targets of logme must have shape ({n},) or ({n}, n_targets); "
                                     f"got {Y.shape}.")
        check_finite(Y, "labels")
    else:
        yi, k = _labels(labels, n, "logme")
        Y = (yi[:, None] == np.arange(k)[None, :]).astype(np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    if n > d:  # thuml's truncated SVD keeps the numerical rank
        keep = s > 1e-10
        u, s = u[:, keep], s[keep]
    sigma = s ** 2
    evidences = []
    for c in range(Y.shape[1]):
        y = Y[:, c]
        x2 = (u.T @ y) ** 2
        res_x2 = y @ y - x2.sum()  # the part of y outside the column space of F
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(ev / n)
    return float(np.mean(evidences))


# --------------------------------------------------------------------------------------------- LEEP and NCE
@MEASURES.register(_meta(Inv.NONE, "Nguyen et al., ICML 2020"))
def leep(source_probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Log expected empirical prediction (LEEP).

    ``P̂(y, z) = (1/n) Σ_i θ(x_i)_z [y_i = y]``, ``P̂(y | z) = P̂(y, z) / P̂(z)``,
    ``LEEP = (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z``.

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes)
        The source model's softmax on the target inputs.
    labels : array-like of shape (n_samples,)
        Target labels.

    Returns
    -------
    float
        In (-inf, 0]; larger = more transferable.

    Examples
    --------
    >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    >>> round(leep(theta, [0, 0, 1, 1]), 4) > round(leep(theta, [0, 1, 0, 1]), 4)
    True
    """
    p = _probs(source_probs, "leep")
    y, k = _labels(labels, p.shape[0], "leep")
    onehot = (y[:, None] == np.arange(k)[None, :]).astype(np.float64)
    joint = p.T @ onehot / p.shape[0]  # (Z, K): P̂(z, y)
    pz = joint.sum(1, keepdims=True)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P̂(y | z)
    eep = (p @ cond)[np.arange(p.shape[0]), y]
    return float(np.mean(np.log(np.maximum(eep, np.finfo(float).tiny))))


@MEASURES.register(_meta(Inv.NONE, "Tran et al., ICCV 2019"))
def nce(source_probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Negative conditional entropy ``−H(Y | Z)`` of the target labels given the source model's hard labels.

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes), or (n_samples,) integer source labels
        ``Z = argmax`` of each row (or the given source labels).
    labels : array-like of shape (n_samples,)

    Returns
    -------
    float
        In [−log K, 0]; 0 when the source label determines the target label.

    Examples
    --------
    >>> nce(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    0.0
    """
    z_in = np.asarray(source_probs)
    if z_in.ndim == 1:
        z, nz = _labels(z_in, z_in.shape[0], "nce") if len(np.unique(z_in)) > 1 else (np.zeros(len(z_in), int), 1)
    else:
        z = _probs(z_in, "nce").argmax(1)
        nz = int(z.max()) + 1
    y, k = _labels(labels, len(z), "nce")
    joint = np.zeros((nz, k))
    np.add.at(joint, (z, y), 1.0 / len(z))
    pz = joint.sum(1, keepdims=True)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
    logc = np.log(np.where(cond > 0, cond, 1.0))  # 0 log 0 = 0
    return float((joint * logc).sum())


# ------------------------------------------------------------------------------------------ H-score, TransRate
@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION,
                         "Bao et al., ICIP 2019; shrinkage: Ibrahim et al., 2022", min_samples=3))
def h_score(features: npt.ArrayLike, labels: npt.ArrayLike, *,
            shrinkage: Literal["auto"] | float | None = "auto") -> float:
    """H-score ``tr(cov(f)⁻¹ cov(E[f | y]))``, with a shrunk feature covariance for stability.

    The raw H-score inverts the (n_features²) sample covariance, which is ill-conditioned or singular when
    features are many or correlated (then the score explodes).  By default the covariance is shrunk towards a
    scaled identity with the Ledoit–Wolf intensity ``a`` (Ibrahim et al. 2022, "regularised H-score"):
    ``tr(((1 − a) Σ_f + a (tr Σ_f / d) I)⁻¹ (1 − a) Σ_g)``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    shrinkage : "auto", float in [0, 1], or None, default="auto"
        "auto": Ledoit–Wolf; a float: that intensity; None: the original (pseudo-inverse, no shrinkage),
        which is also invariant to any invertible linear map of the features.

    Returns
    -------
    float
        ≥ 0, at most n_classes − 1 without shrinkage; larger = more transferable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> h_score(np.c_[y + 0.3 * rng.normal(size=100), rng.normal(size=100)], y) > 0.5
    True
    """
    f = _features(features, "h_score", min_samples=3)
    y, k = _labels(labels, f.shape[0], "h_score")
    f = f - f.mean(0)
    g = np.zeros_like(f)
    for c in range(k):  # each row replaced by its class mean
        g[y == c] = f[y == c].mean(0)
    cov_f = np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
    cov_g = np.cov(g, rowvar=False).reshape(f.shape[1], f.shape[1])
    if shrinkage is None:
        return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))
    if shrinkage == "auto":
        from sklearn.covariance import ledoit_wolf_shrinkage

        a = float(ledoit_wolf_shrinkage(f, assume_centered=True)) if f.shape[1] > 1 else 0.0
    else:
        a = float(shrinkage)
        if not 0.0 <= a <= 1.0:
            raise ZooscopeInputError(
                f"'shrinkage' of h_score must be 'auto', None or a float in [0, 1]; got {shrinkage!r}.")
    mu = np.trace(cov_f) / f.shape[1]
    if mu <= 0:
        raise ZooscopeInputError("features are constant, so h_score is undefined. Choose another layer.")
    shrunk = (1 - a) * cov_f + a * mu * np.eye(f.shape[1])
    return float(np.trace(np.linalg.solve(shrunk, (1 - a) * cov_g)))


def _coding_rate(Z: np.ndarray, eps: float) -> float:
    n, d = Z.shape
    G = Z @ Z.T if n < d else Z.T @ Z  # logdet(I_d + ZᵀZ c) = logdet(I_n + Z Zᵀ c): use the smaller side
    _, logdet = np.linalg.slogdet(np.eye(G.shape[0]) + G / (n * eps))
    return 0.5 * logdet


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION, "Huang et al., ICML 2022"))
def transrate(features: npt.ArrayLike, labels: npt.ArrayLike, eps: float = 1e-4) -> float:
    """TransRate: coding rate of the features minus the mean coding rate within each class.

    ``R(Z) = ½ logdet(I + ZᵀZ / (n ε))`` on centred features ``Z``; score ``R(Z) − (1/K) Σ_k R(Z_k)`` with
    ``Z_k`` the rows of class k (not re-centred, n = their count), as the paper's code.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    eps : float, default=1e-4
        Distortion ε. Not scale-invariant: compare models on features of similar scale (or pre-normalise).

    Returns
    -------
    float
        Larger = more transferable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 30)
    >>> clusters = 3 * np.eye(3)[y] + 0.1 * rng.normal(size=(90, 3))
    >>> transrate(clusters, y) > transrate(clusters, rng.permutation(y))
    True
    """
    eps = check_positive(eps, "eps", "transrate")
    f = _features(features, "transrate")
    y, k = _labels(labels, f.shape[0], "transrate")
    Z = f - f.mean(0)
    return float(_coding_rate(Z, eps) - np.mean([_coding_rate(Z[y == c], eps) for c in range(k)]))
