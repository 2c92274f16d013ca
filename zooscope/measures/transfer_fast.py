"""Transferability candidates for the robust default (issue 20).

The linear probe scored by cross-validated **log-loss**, and ETran's energy term; notation and the shared
input checks in `zooscope.measures.transfer`.

``probe_logloss``: 200 labels give a coarse, tied accuracy (``linear_probe``); the held-out log-loss of the same
probe is continuous. To stay ≤ 1 s per model at 1,000 examples the features are standardised and PCA-reduced to
at most ``n_components`` (label-free, once), then ``LogisticRegression`` (lbfgs).

``etran_energy``: the energy term of ETran (Gholami et al., ICCV 2023): the mean over the target examples of
``logsumexp`` of the pre-logits features (the negative free energy, as its released code computes it on the
pooled features); label-free, larger = the target looks more in-distribution to the model.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from zooscope.measures._base import MEASURES, Inv, TransferMeta
from zooscope.measures.transfer import _features, _labels, _meta
from zooscope.measures.transfer_probe import cross_validated_probe, probe_inputs

__all__ = ["etran_energy", "probe_logloss"]


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.PERMUTATION,
                         "logistic-regression probe, held-out log-loss (issue 20; Kornblith et al., CVPR 2019)",
                         min_samples=4, transfer=TransferMeta("probe_logloss", "features", "probe log-loss", 11)))
def probe_logloss(features: npt.ArrayLike, labels: npt.ArrayLike, *, folds: int = 3, C: float = 1.0,
                  n_components: int = 64, seed: int = 0) -> float:
    """Minus the mean held-out log-loss of a k-fold logistic-regression probe (larger = more transferable).

    Standardised features → ``PCA(min(n_components, …))`` (label-free, fitted once on all examples) →
    ``StandardScaler`` + ``LogisticRegression(C, lbfgs)`` fitted inside each
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` fold; the fold count drops to the smallest class
    size (at least 2).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Every class needs at least 2 examples.
    folds : int, default=3
    C : float, default=1.0
    n_components : int, default=64
    seed : int, default=0

    Returns
    -------
    float
        ≤ 0; 0 is a perfect, confident probe.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> good = probe_logloss(np.c_[3 * y + rng.normal(size=60), rng.normal(size=60)], y)
    >>> bad = probe_logloss(rng.normal(size=(60, 2)), y)
    >>> bool(good > bad)
    True
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    f, y, C, n_splits = probe_inputs(features, labels, folds, C, "probe_logloss")
    dims = int(max(1, min(n_components, *f.shape)))
    # PCA is label-free: fitted once on all examples (not per fold), so the folds see no label information
    f = PCA(dims, svd_solver="randomized", random_state=seed).fit_transform(StandardScaler().fit_transform(f))
    return cross_validated_probe(f, y, C=C, n_splits=n_splits, seed=seed, scoring="neg_log_loss", max_iter=300)


@MEASURES.register(_meta(Inv.PERMUTATION, "Gholami et al., ICCV 2023 (ETran, energy term)",
                         not_invariant=Inv.TRANSLATION,
                         transfer=TransferMeta("energy", "features", "ETran energy", 12)))
def etran_energy(features: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """ETran's energy term: mean over examples of ``logsumexp`` of the pre-logits features (labels unused).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Checked for length only (the score is label-free).

    Returns
    -------
    float
        Larger = lower free energy = more in-distribution.

    Examples
    --------
    >>> float(round(etran_energy(np.zeros((4, 3)), [0, 1, 0, 1]), 4)) == float(round(np.log(3), 4))
    True
    """
    from scipy.special import logsumexp

    f = _features(features, "etran_energy")
    _labels(labels, f.shape[0], "etran_energy")
    return float(np.mean(logsumexp(f, axis=1)))
