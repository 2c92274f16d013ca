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
linear_    mean held-out accuracy of a k-fold logistic-regression probe   (the standard baseline; Kornblith
 probe     on standardised features                                       et al., CVPR 2019)
knn_       leave-one-out k-NN accuracy                                     Sorkhei et al., TMLR 2025
 accuracy
sfda       mean true-class posterior of a shrinkage Fisher LDA refit      Shao et al., ECCV 2022
           after "ConfMix" (TencentARC/SFDA)
sfda_pca   sfda on the top 32 principal components (no saturation at      TencentARC/SFDA issue #5
           n ≪ d)
ncti       neural-collapse terms: LDA posterior + between-class spread    Wang et al., CVPR 2023
           − within-class posterior variability (BUserName/NCTI)
gbc        −Σ_{i≠j} exp(−D_B(c_i, c_j)), diagonal Gaussians per class     Pándy et al., CVPR 2022
           on 64 principal components
=========  ============================================================  ================================

Every score here needs at least 2 classes and at least 2 examples per class on average (n ≥ 2 × n_classes);
the cross-validated ones (``linear_probe``, ``knn_accuracy``) need 2 examples in every class.

Constant and duplicate feature columns (dead ReLU units, copied channels) carry no information; the
covariance-based scores (``h_score``, ``sfda``, ``sfda_pca``) drop them before estimating a covariance, as the
population estimators intend (they are invariant to them), so a dead unit cannot change the score through the
shrinkage target. ``transrate`` and ``gbc``/``ncti`` (after PCA) are unaffected by them by construction.

The discriminant-analysis scores (``sfda``, ``sfda_pca``, ``ncti``, ``gbc``) live in
`zooscope.measures.transfer_lda`, the fitted probes (``linear_probe``, ``knn_accuracy``) in
`zooscope.measures.transfer_probe` (registered the same way; ``zs.measures.sfda`` etc.). Each score is registered
with the metadata model selection reads (`TransferMeta`: its select method name, input, display name, order).

Cost at n = 1000 examples, d = 512 features, 10 classes (2 shared cores, one thread): see the functions'
docstrings and ``benchmarks/RESULTS.md``; every score is well under the cost of extracting the features.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import (
    ZooscopeInputError,
    _to_numpy,
    as_matrix,
    check_alloc,
    check_finite,
    check_positive,
)
from zooscope.measures._base import MEASURES, Inv, MeasureMeta, TransferMeta

__all__ = ["h_score", "leep", "logme", "nce", "transrate"]

#: LogME maximises the evidence over log(α/β) to this absolute tolerance ...
LOGME_TOL = 1e-10
#: ... in at most this many refinement steps, with a RuntimeWarning otherwise (it normally needs 10-40).
LOGME_MAX_ITER = 500


def _meta(invariances: Inv, reference: str, min_samples: int = 2, *, not_invariant: Inv = Inv.NONE,
          bounds: tuple[float, float] | None = None, transfer: TransferMeta | None = None) -> MeasureMeta:
    return MeasureMeta(larger_is_more_similar=True, symmetric=False, invariances=invariances, inputs="other",
                       layerwise=False, min_samples=min_samples, reference=reference, not_invariant=not_invariant,
                       bounds=bounds, transfer=transfer)


def _labels(labels: npt.ArrayLike, n: int, owner: str, *, per_class: int = 0) -> tuple[np.ndarray, int]:
    """Integer labels (n,) remapped to 0..K-1, with K >= 2.

    ``per_class`` > 0 (the scores added with issue 8): also n >= 2 K, and, if ``per_class`` >= 2, at least that
    many examples in every class (cross-validated scores).
    """
    y = _to_numpy(labels, "labels")
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
    k = len(classes)
    if per_class and n < 2 * k:
        raise ZooscopeInputError(f"{owner} needs at least 2 examples per class on average (n >= 2 × n_classes = "
                                 f"{2 * k}); got n = {n} for {k} classes. Use more target examples.")
    if per_class >= 2:
        counts = np.bincount(yi.reshape(-1), minlength=k)
        if counts.min() < per_class:
            bad = classes[counts < per_class][:5].tolist()
            raise ZooscopeInputError(f"{owner} cross-validates, so every class needs at least {per_class} "
                                     f"examples; classes {bad} have fewer. Drop them or add examples.")
    return yi.reshape(-1), k


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


def _informative_columns(f: np.ndarray, owner: str) -> np.ndarray:
    """Drop constant columns and exact duplicates of earlier columns (what a covariance estimate should ignore)."""
    keep = np.ptp(f, axis=0) > 0
    if not keep.any():
        raise ZooscopeInputError(f"features are the same for every example (a dead or constant layer), so {owner} "
                                 "is undefined. Choose another layer.")
    f = f[:, keep]
    _, first = np.unique(f, axis=1, return_index=True)
    return f[:, np.sort(first)] if len(first) < f.shape[1] else f


# ------------------------------------------------------------------------------------------------------ LogME
@MEASURES.register(_meta(Inv.ORTHOGONAL | Inv.PERMUTATION, "You et al., ICML 2021 (thuml/LogME)",
                         transfer=TransferMeta("logme", "features", "LogME", 0)))
def logme(features: npt.ArrayLike, labels: npt.ArrayLike, *, regression: bool = False) -> float:
    """LogME: the maximum log-evidence of a Bayesian linear model from features to (one-hot) labels.

    For each target column ``y_c`` (a one-hot class indicator, or a regression target) the evidence
    ``log p(y_c | F, α, β)`` of ``y_c = F m + N(0, 1/β)``, ``m ∼ N(0, I/α)`` is maximised over (α, β) by
    profiling out β and maximising over log(α/β) on the SVD of ``F`` to ``LOGME_TOL`` (at most
    ``LOGME_MAX_ITER`` steps, with a warning otherwise), boundary limits included. thuml/LogME's fixed point
    stops after 11 steps or a 0.1 % move, which can leave the evidence short of its maximum, biases α with
    its +1e-5 guards, and, when n < d, adds (d − n)/2·log α to the evidence; this maximum is checked
    against a direct numerical maximisation of the evidence in the tests. The score is the mean over columns
    of the maximum evidence divided by ``n_samples``.
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
        Y = np.asarray(_to_numpy(labels, "labels"), dtype=np.float64)
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
    evidences = [_logme_evidence(u.T @ Y[:, c], Y[:, c] @ Y[:, c], sigma, n) for c in range(Y.shape[1])]
    return float(np.mean(evidences))


def _logme_evidence(x: np.ndarray, yy: float, sigma: np.ndarray, n: int) -> float:
    """Maximum log-evidence / n for one target column, ``x = Uᵀ y`` over the k kept singular values σ.

    For a fixed ratio t = α/β the best β is n / (‖y − Fm‖² + t‖m‖²), which leaves a 1-D profile in log t
    (MacKay's fixed point solves the same stationarity conditions). The profile is scanned on a log grid and
    its best bracket refined by bounded Brent to ``LOGME_TOL``; the two boundary limits (α → ∞: y is noise;
    β → ∞: y = F m exactly, possible when n ≤ k) are evaluated in closed form.
    """
    from scipy.optimize import minimize_scalar

    x2 = x ** 2
    k = sigma.size
    res_x2 = max(yy - x2.sum(), 0.0)  # the part of y outside the column space of F
    const = -n / 2 * (1 + np.log(2 * np.pi))

    def profile(log_t: np.ndarray) -> np.ndarray:
        t = np.exp(np.asarray(log_t, dtype=np.float64))[..., None]
        m2 = (sigma * x2 / (t + sigma) ** 2).sum(-1)
        res2 = (x2 / (1 + sigma / t) ** 2).sum(-1) + res_x2
        # log|αI_d + βFᵀF| = Σ_k log(α + βσ_k) + (d − k) log α, so the prior's d/2·log α leaves k/2·log α
        # (thuml/LogME keeps d/2 and overstates the evidence whenever k < d, e.g. n < d)
        with np.errstate(divide="ignore"):
            return (k / 2 * np.log(t[..., 0]) - 0.5 * np.log(t + sigma).sum(-1)
                    - n / 2 * np.log((res2 + t[..., 0] * m2) / n) + const)

    limits = [const - n / 2 * np.log(yy / n) if yy > 0 else -np.inf]  # α → ∞
    pos = sigma > sigma.max() * 1e-12 if k and sigma.max() > 0 else np.zeros(k, bool)
    if yy > 0 and pos.sum() == n and res_x2 + x2[~pos].sum() <= 1e-12 * yy:  # β → ∞
        q = float((x2[pos] / sigma[pos]).sum())
        limits.append(const - 0.5 * np.log(sigma[pos]).sum() + n / 2 * np.log(n / q))
    if not pos.any():
        return float(limits[0] / n)
    s_lo, s_hi = float(sigma[pos].min()), float(sigma[pos].max())
    grid = np.linspace(np.log(s_lo) - 30.0, np.log(s_hi) + 30.0, 241)
    values = profile(grid)
    i = int(np.nanargmax(values))
    best = float(values[i])
    if 0 < i < len(grid) - 1:  # an interior maximum: refine it
        res = minimize_scalar(lambda lt: -float(profile(lt)), bounds=(grid[i - 1], grid[i + 1]), method="bounded",
                              options={"xatol": LOGME_TOL, "maxiter": LOGME_MAX_ITER})
        if not res.success:
            warnings.warn(f"logme: the evidence maximisation did not converge in {LOGME_MAX_ITER} steps; the "
                          "score may be slightly low. Raise zooscope.measures.transfer.LOGME_MAX_ITER.",
                          RuntimeWarning, stacklevel=3)
        best = max(best, -float(res.fun))
    return float(max(best, *limits) / n)


# --------------------------------------------------------------------------------------------- LEEP and NCE
@MEASURES.register(_meta(Inv.NONE, "Nguyen et al., ICML 2020",
                         transfer=TransferMeta("leep", "probs", "LEEP", 1)))
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


@MEASURES.register(_meta(Inv.NONE, "Tran et al., ICCV 2019", transfer=TransferMeta("nce", "labels", "NCE", 2)))
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
    z_in = _to_numpy(source_probs, "source_probs")
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
                         "Bao et al., ICIP 2019; shrinkage: Ibrahim et al., 2022", min_samples=3,
                         transfer=TransferMeta("hscore", "features", "H-score", 3)))
def h_score(features: npt.ArrayLike, labels: npt.ArrayLike, *,
            shrinkage: Literal["auto"] | float | None = "auto") -> float:
    """H-score ``tr(cov(f)⁻¹ cov(E[f | y]))``, with a shrunk feature covariance for stability.

    The raw H-score inverts the (n_features²) sample covariance, which is ill-conditioned or singular when
    features are many or correlated (then the score explodes).  By default the covariance is shrunk towards a
    scaled identity with the Ledoit–Wolf intensity ``a`` (Ibrahim et al. 2022, "regularised H-score"):
    ``tr(((1 − a) Σ_f + a (tr Σ_f / d) I)⁻¹ (1 − a) Σ_g)``.

    Constant columns (dead units) and exact duplicates of another column are dropped first: the population
    H-score ignores them (it is invariant to invertible linear maps, and a dead unit adds nothing), but they
    would move the shrinkage target tr Σ_f / d and the Ledoit–Wolf intensity, e.g. raise the score when a unit
    dies: a unit that dies now gives exactly the score without that unit. (Removing an *informative* unit can
    still raise the shrunk score slightly, because the intensity and target are re-estimated from the remaining
    units; the unshrunk ``shrinkage=None`` score never rises.) Memory: four d × d matrices, refused above
    ``zooscope._validation.MEMORY_CAP_BYTES``.

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
    f = _informative_columns(f, "h_score")
    d = f.shape[1]
    check_alloc((4, d, d), f"The {d}×{d} feature covariances of h_score",
                "PCA-reduce the features first (e.g. sklearn.decomposition.PCA(256)), or use logme or transrate, "
                "which work on the smaller side of the data")
    f = f - f.mean(0)
    counts = np.bincount(y, minlength=k)
    means = np.zeros((k, d))
    np.add.at(means, y, f)
    means /= counts[:, None]
    g = means[y]  # each row replaced by its class mean
    cov_f = np.cov(f, rowvar=False).reshape(d, d)
    cov_g = np.cov(g, rowvar=False).reshape(d, d)
    if shrinkage is None:
        return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))
    if shrinkage == "auto":
        from sklearn.covariance import ledoit_wolf_shrinkage

        a = float(ledoit_wolf_shrinkage(f, assume_centered=True)) if d > 1 else 0.0
    else:
        try:
            a = float(shrinkage)
        except (TypeError, ValueError):
            a = float("nan")
        if not 0.0 <= a <= 1.0:
            raise ZooscopeInputError(
                f"'shrinkage' of h_score must be 'auto', None or a float in [0, 1]; got {shrinkage!r}.")
    mu = np.trace(cov_f) / d
    shrunk = (1 - a) * cov_f + a * mu * np.eye(d)
    return float(np.trace(np.linalg.solve(shrunk, (1 - a) * cov_g)))


def _coding_rate(Z: np.ndarray, eps: float) -> float:
    n, d = Z.shape
    G = Z @ Z.T if n < d else Z.T @ Z  # logdet(I_d + ZᵀZ c) = logdet(I_n + Z Zᵀ c): use the smaller side
    _, logdet = np.linalg.slogdet(np.eye(G.shape[0]) + G / (n * eps))
    return 0.5 * logdet


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ORTHOGONAL | Inv.PERMUTATION, "Huang et al., ICML 2022",
                         transfer=TransferMeta("transrate", "features", "TransRate", 10)))
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
