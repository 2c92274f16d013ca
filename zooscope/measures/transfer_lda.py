"""Transferability scores built on discriminant analysis and class-conditional Gaussians.

SFDA (and its PCA variant), NCTI, GBC. Notation, input rules and the table of every score:
`zooscope.measures.transfer`, whose helpers (input checks, metadata) these share.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, check_alloc
from zooscope.measures._base import MEASURES, Inv, TransferMeta
from zooscope.measures.transfer import _features, _informative_columns, _labels, _meta

__all__ = ["NCTITerms", "gbc", "ncti", "ncti_combine", "ncti_terms", "sfda", "sfda_pca"]


# --------------------------------------------------------------------------------------------------- SFDA
def _lda_posterior(X: np.ndarray, y: np.ndarray, k: int, lam: float | None) -> tuple[np.ndarray, float]:
    """Posterior p(c | x) of shrinkage Fisher LDA as fitted by TencentARC/SFDA (and its shrinkage λ).

    SFDA solves ``eigh(S_b, S̃_w)`` and scores with ``coef = means V Vᵀ``; V keeps every eigenvector and is
    S̃_w-orthonormal, so ``V Vᵀ = S̃_w⁻¹``: the posterior is that of LDA with the shrunk within-class
    covariance S̃_w = (1 − λ) S_w + λ (tr S_w / d) I, λ = max(exp(−5 σ_max(S_w)), 1e-10).
    """
    from scipy import linalg

    n, d = X.shape
    counts = np.bincount(y, minlength=k)
    priors = counts / n
    means = np.zeros((k, d))
    np.add.at(means, y, X)
    means /= counts[:, None]
    R = X - means[y]
    Sw = (R.T * priors[y] / counts[y]) @ R  # Σ_c π_c cov_c (bias=1), as the reference
    if lam is None:
        top = float(linalg.eigh(Sw, eigvals_only=True, subset_by_index=[d - 1, d - 1])[0])
        lam = max(math.exp(-5.0 * top), 1e-10)
    mu = np.trace(Sw) / d
    shrunk = (1.0 - lam) * Sw
    shrunk.flat[:: d + 1] += lam * mu
    try:
        coef = linalg.solve(shrunk, means.T, assume_a="pos").T
    except (linalg.LinAlgError, ValueError):
        raise ZooscopeInputError("the within-class covariance of these features is singular even after "
                                 "shrinkage (numerically degenerate features); use sfda_pca.") from None
    logits = X @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), lam


def _pca(f: np.ndarray, n_components: int) -> np.ndarray:
    """Scores on the top principal components of centred f (at most its rank)."""
    fc = f - f.mean(axis=0)
    U, s, _ = np.linalg.svd(fc, full_matrices=False)
    r = int(min(n_components, np.sum(s > s[0] * 1e-12))) if s[0] > 0 else 0
    if r == 0:
        raise ZooscopeInputError("features are the same for every example (a dead or constant layer). "
                                 "Choose another layer.")
    return U[:, :r] * s[:r]


def _sfda(features: npt.ArrayLike, labels: npt.ArrayLike, owner: str, n_components: int | None) -> float:
    f = _features(features, owner, min_samples=4)
    y, k = _labels(labels, f.shape[0], owner, per_class=1)
    f = _informative_columns(f, owner)
    if n_components is not None:
        if not (isinstance(n_components, int | np.integer) and n_components >= 1):
            raise ZooscopeInputError(f"'n_components' of {owner} must be an int >= 1; got {n_components!r}.")
        f = _pca(f, int(n_components))
    d = f.shape[1]
    check_alloc((3, d, d), f"The {d}×{d} scatter matrices of {owner}",
                "Use sfda_pca (PCA to 32 dimensions first), or PCA-reduce the features yourself")
    n = f.shape[0]
    prob, lam = _lda_posterior(f, y, k, None)
    # ConfMix: move each example towards the mean of the OTHER classes' means by 1 − its softened posterior
    soft = np.exp(prob)
    soft /= soft.sum(axis=1, keepdims=True)
    counts = np.bincount(y, minlength=k)
    means = np.zeros((k, d))
    np.add.at(means, y, f)
    means /= counts[:, None]
    others = (means.sum(axis=0) - means) / (k - 1)
    w = soft[np.arange(n), y][:, None]
    mixed = w * f + (1.0 - w) * others[y]
    prob2, _ = _lda_posterior(mixed, y, k, lam)
    return float(np.mean(prob2[np.arange(n), y]))


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION, "Shao et al., ECCV 2022 (TencentARC/SFDA)",
                         min_samples=4, not_invariant=Inv.ISOTROPIC_SCALE, bounds=(0.0, 1.0),
                         transfer=TransferMeta("sfda", "features", "SFDA", 7)))
def sfda(features: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """SFDA: Self-challenging Fisher Discriminant Analysis (as in the paper's code).

    1. Shrinkage Fisher LDA on the features, λ = max(exp(−5 σ_max(S_w)), 1e-10) (S_w the prior-weighted
       within-class covariance); posteriors p(c | x).
    2. ConfMix: each example moves towards the mean of the other classes' means,
       ``x ← p̃ x + (1 − p̃) m̄_{−y}``, with p̃ the softmax of the posteriors at its true class.
    3. LDA refitted on the moved features with the same λ; score = mean posterior of the true class.

    λ depends on the feature scale (not scale-invariant, as in the paper). At n ≪ d with large-scale features
    λ hits its floor and the in-sample LDA separates everything: every model scores ≈ 1 (TencentARC/SFDA issue
    #5). Use :func:`sfda_pca` there. Constant and duplicate columns are dropped first.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        n_samples >= 2 × n_classes.

    Returns
    -------
    float
        In (0, 1]; larger = more transferable. About 0.2 s at n = 1000, d = 512 (two d × d solves).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> f = np.c_[y + 0.3 * rng.normal(size=100), rng.normal(size=100)]
    >>> sfda(f, y) > sfda(f, rng.permutation(y))
    True
    """
    return _sfda(features, labels, "sfda", None)


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION,
                         "Shao et al., ECCV 2022; PCA-32 as in TencentARC/SFDA issue #5", min_samples=4,
                         not_invariant=Inv.ISOTROPIC_SCALE, bounds=(0.0, 1.0),
                         transfer=TransferMeta("sfda_pca", "features", "SFDA-PCA", 8)))
def sfda_pca(features: npt.ArrayLike, labels: npt.ArrayLike, *, n_components: int = 32) -> float:
    """:func:`sfda` on the top ``n_components`` principal components of the features (default 32).

    The remedy for SFDA's saturation at n ≪ d: with 32 dimensions the in-sample LDA no longer separates
    every target perfectly, so the score keeps ranking models. Same invariances as :func:`sfda`.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    n_components : int, default=32

    Returns
    -------
    float
        In (0, 1]; larger = more transferable. About 0.1 s at n = 1000, d = 512 (one thin SVD).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> f = np.c_[y + 0.3 * rng.normal(size=100), rng.normal(size=(100, 40))]
    >>> sfda_pca(f, y) > sfda_pca(f, rng.permutation(y))
    True
    """
    return _sfda(features, labels, "sfda_pca", n_components)


# --------------------------------------------------------------------------------------------------- NCTI
@dataclass(frozen=True)
class NCTITerms:
    """The three neural-collapse terms of NCTI for one model on one target (Wang et al., CVPR 2023).

    Attributes
    ----------
    seli : float
        Nuclear norm of the centred LDA projection (between-class spread; larger is better).
    ncc : float
        Mean LDA posterior of the true class (nearest-centre classifiability; larger is better).
    vc : float
        log Σ_c ‖P_c‖_*, P_c the posteriors of class c (within-class variability; smaller is better).
    n_per_class : tuple of int
        Class sizes (for the single-model normalisation of :func:`ncti`).
    total_scale : float
        √(n · r · tr cov(Z)) of the PCA features Z and r LDA directions: the largest possible ``seli``.
    """

    seli: float
    ncc: float
    vc: float
    n_per_class: tuple[int, ...]
    total_scale: float


def ncti_terms(features: npt.ArrayLike, labels: npt.ArrayLike, *, n_components: int = 64) -> NCTITerms:
    """NCTI's three terms, computed as BUserName/NCTI does.

    PCA to ``n_components`` (64); shrinkage LDA (``sklearn`` ``LinearDiscriminantAnalysis(solver="eigen",
    shrinkage=exp(−Σ of the top-32 explained variances))``, or the SVD solver when that is below 1e-10); the
    terms of :class:`NCTITerms`. Combine the terms of several candidate models with :func:`ncti_combine`
    (the paper's score), or use :func:`ncti` for one model alone.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    n_components : int, default=64

    Returns
    -------
    NCTITerms
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    f = _features(features, "ncti", min_samples=4)
    y, k = _labels(labels, f.shape[0], "ncti", per_class=1)
    if not (isinstance(n_components, int | np.integer) and n_components >= 1):
        raise ZooscopeInputError(f"'n_components' of ncti must be an int >= 1; got {n_components!r}.")
    Z = _pca(f, int(n_components))
    n = Z.shape[0]
    with np.errstate(over="ignore"):
        ev = np.sort(Z.var(axis=0, ddof=1))[::-1]
    if not np.isfinite(ev.sum()):  # the shrinkage exp(−Σ variance) depends on the scale: no rescaling can help
        raise ZooscopeInputError(
            "ncti: the features' variances overflow float64 (its LDA shrinkage exp(−Σ variance) depends on their "
            "scale). Rescale or standardise the features first.")
    temp = max(math.exp(-min(float(ev[:32].sum()), 700.0)), 1e-10)
    clf = (LinearDiscriminantAnalysis(solver="svd") if temp == 1e-10
           else LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(temp)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's "variables are collinear" warning: shrinkage handles it
        low = clf.fit_transform(Z, y)
        post = clf.predict_proba(Z)
    low = low - low.mean(axis=0, keepdims=True)
    seli = float(np.linalg.norm(low, ord="nuc"))
    ncc = float(np.mean(post[np.arange(n), y]))
    vc = float(np.log(sum(np.linalg.norm(post[y == c], ord="nuc") for c in range(k))))
    counts = tuple(int(c) for c in np.bincount(y, minlength=k))
    total = math.sqrt(n * low.shape[1] * float(Z.var(axis=0).sum()))
    return NCTITerms(seli=seli, ncc=ncc, vc=vc, n_per_class=counts, total_scale=total)


def ncti_combine(terms: Sequence[NCTITerms]) -> np.ndarray:
    """Return the paper's NCTI of each candidate model.

    Min–max normalise each term across the candidates, then ``ncc + seli − vc`` (BUserName/NCTI
    ``evaluate_metric``).

    Parameters
    ----------
    terms : sequence of NCTITerms
        One per candidate model, all on the same target.

    Returns
    -------
    numpy.ndarray of shape (n_models,)
        In [−1, 2]; larger = more transferable. A term equal for every candidate contributes 0.
    """
    if len(terms) < 1:
        raise ZooscopeInputError("ncti_combine needs the terms of at least one candidate model.")

    def minmax(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    seli, ncc, vc = (np.array([getattr(t, a) for t in terms], dtype=np.float64) for a in ("seli", "ncc", "vc"))
    return minmax(ncc) + minmax(seli) - minmax(vc)


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION, "Wang et al., CVPR 2023 (BUserName/NCTI)",
                         min_samples=4, transfer=TransferMeta("ncti", "features", "NCTI", 4)))
def ncti(features: npt.ArrayLike, labels: npt.ArrayLike, *, n_components: int = 64) -> float:
    """NCTI for one model alone: the paper's three neural-collapse terms on a fixed, per-target scale.

    The paper min–max normalises each term across the candidate models (:func:`ncti_combine`), so its score
    only exists for a set of models. Scored one model at a time (as ``select`` does), each term is put on a
    scale that does not need the other candidates: ``ncc`` as is (in [0, 1]); ``seli`` divided by its largest
    possible value √(n · r · tr cov Z) (in [0, 1]); ``vc`` minus its value under perfect collapse,
    log Σ_c √n_c, divided by log K (K classes), so that it lies in about [−½, ½]: each term then spans a range
    of about 1, as the min–max normalisation makes them. Score = ncc + seli' − vc'. For a fixed target each
    term is a monotone function of the paper's term; only the weighting of the three differs.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        n_samples >= 2 × n_classes.
    n_components : int, default=64
        PCA dimensions, as the paper.

    Returns
    -------
    float
        Larger = more transferable. About 0.1 s at n = 1000, d = 512.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 30)
    >>> f = np.eye(3)[y] + 0.2 * rng.normal(size=(90, 3))
    >>> ncti(f, y) > ncti(f, rng.permutation(y))
    True
    """
    t = ncti_terms(features, labels, n_components=n_components)
    collapsed = math.log(sum(math.sqrt(c) for c in t.n_per_class))
    seli = t.seli / t.total_scale if t.total_scale > 0 else 0.0
    vc = (t.vc - collapsed) / math.log(len(t.n_per_class))
    return float(t.ncc + seli - vc)


# ---------------------------------------------------------------------------------------------------- GBC
@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION,
                         "Pándy et al., CVPR 2022 (diagonal Gaussians; PCA-64 as Model Spider)", min_samples=4,
                         bounds=(-math.inf, 0.0),
                         transfer=TransferMeta("gbc", "features", "GBC", 9)))
def gbc(features: npt.ArrayLike, labels: npt.ArrayLike, *, n_components: int = 64) -> float:
    """Gaussian Bhattacharyya Coefficient: minus the total class overlap.

    Features are projected on their top ``n_components`` principal components; each class c is modelled
    by a diagonal Gaussian N(μ_c, diag σ²_c); for every ordered pair i ≠ j the Bhattacharyya distance
    ``D_B = ⅛ Σ_d (μ_i − μ_j)²/σ̄² + ½ Σ_d log(σ̄² / √(σ²_i σ²_j))``, σ̄² = (σ²_i + σ²_j)/2, and
    ``GBC = −Σ_{i≠j} exp(−D_B)``. Variances get a floor of 1e-6 × the mean variance (a class with one example,
    or a dimension constant within a class), which keeps the score invariant to the feature scale.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        n_samples >= 2 × n_classes.
    n_components : int, default=64

    Returns
    -------
    float
        In [−K(K − 1), 0]; 0 when the classes do not overlap; larger = more transferable. About 0.05 s at
        n = 1000, d = 512, 10 classes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> f = np.c_[3 * y + rng.normal(size=100), rng.normal(size=100)]
    >>> gbc(f, y) > gbc(f, rng.permutation(y))
    True
    """
    f = _features(features, "gbc", min_samples=4)
    y, k = _labels(labels, f.shape[0], "gbc", per_class=1)
    if not (isinstance(n_components, int | np.integer) and n_components >= 1):
        raise ZooscopeInputError(f"'n_components' of gbc must be an int >= 1; got {n_components!r}.")
    Z = _pca(f, int(n_components))
    counts = np.bincount(y, minlength=k)
    mu = np.zeros((k, Z.shape[1]))
    np.add.at(mu, y, Z)
    mu /= counts[:, None]
    var = np.zeros_like(mu)
    np.add.at(var, y, (Z - mu[y]) ** 2)
    var /= counts[:, None]
    var = np.maximum(var, 1e-6 * float(Z.var(axis=0).mean()))
    avg = 0.5 * (var[:, None, :] + var[None, :, :])  # (K, K, r)
    logv = np.log(var)
    db = (0.125 * ((mu[:, None, :] - mu[None, :, :]) ** 2 / avg).sum(-1)
          + 0.5 * (np.log(avg).sum(-1) - 0.5 * (logv.sum(-1)[:, None] + logv.sum(-1)[None, :])))
    bc = np.exp(-db)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())
