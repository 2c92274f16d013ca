"""Transferability by fitting a probe on the frozen features.

``linear_probe`` (k-fold logistic regression) and ``knn_accuracy`` (leave-one-out k-NN); notation and the
shared input checks in `zooscope.measures.transfer`.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, check_positive
from zooscope.measures._base import MEASURES, Inv, TransferMeta
from zooscope.measures.transfer import _features, _labels, _meta

__all__ = ["knn_accuracy", "linear_probe"]


# ------------------------------------------------------------------------------ linear probe and k-NN accuracy
@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.PERMUTATION,
                         "logistic-regression probe on frozen features (Kornblith et al., CVPR 2019)", min_samples=4,
                         bounds=(0.0, 1.0), transfer=TransferMeta("linear_probe", "features", "linear probe", 6)))
def linear_probe(features: npt.ArrayLike, labels: npt.ArrayLike, *, folds: int = 3, C: float = 1.0,
                 seed: int = 0) -> float:
    """Mean held-out accuracy of a k-fold logistic-regression probe on standardised features.

    ``sklearn`` ``StandardScaler`` + ``LogisticRegression(C)`` (lbfgs, multinomial), evaluated by
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)``; the scaler is fitted inside each fold. With
    fewer than ``folds`` examples in the smallest class, ``folds`` drops to that count (at least 2).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Every class needs at least 2 examples.
    folds : int, default=3
    C : float, default=1.0
        Inverse L2 strength on the standardised features.
    seed : int, default=0
        Fold shuffling.

    Returns
    -------
    float
        In [0, 1]; larger = more transferable. Invariant to shifting and (per-feature) scaling the features
        and to reordering them. About 1-3 s at n = 1000, d = 512, 10 classes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> linear_probe(np.c_[3 * y + rng.normal(size=60), rng.normal(size=60)], y) > 0.9
    True
    """
    f, y, C, n_splits = probe_inputs(features, labels, folds, C, "linear_probe")
    return cross_validated_probe(f, y, C=C, n_splits=n_splits, seed=seed, scoring="accuracy", max_iter=1000)


def probe_inputs(features: npt.ArrayLike, labels: npt.ArrayLike, folds: int, C: float,
                 name: str) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Return the checked features, labels, ``C`` and number of folds of a cross-validated probe score."""
    if not (isinstance(folds, int | np.integer) and folds >= 2):
        raise ZooscopeInputError(f"'folds' of {name} must be an int >= 2; got {folds!r}.")
    C = check_positive(C, "C", name)
    f = _features(features, name, min_samples=4)
    y, _ = _labels(labels, f.shape[0], name, per_class=2)
    return f, y, C, int(min(folds, np.bincount(y).min()))


def cross_validated_probe(f: np.ndarray, y: np.ndarray, *, C: float, n_splits: int, seed: int, scoring: str,
                          max_iter: int) -> float:
    """Return the mean ``scoring`` of a standardised logistic-regression probe over stratified folds."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(probe, f, y, cv=cv, scoring=scoring, error_score="raise")
    return float(np.mean(scores))


@MEASURES.register(_meta(Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION,
                         "Sorkhei et al., TMLR 2025 (leave-one-out k-NN accuracy)", min_samples=4, bounds=(0.0, 1.0),
                         transfer=TransferMeta("knn", "features", "k-NN", 5)))
def knn_accuracy(features: npt.ArrayLike, labels: npt.ArrayLike, *, k: int | Literal["auto"] = "auto") -> float:
    """Leave-one-out k-nearest-neighbour accuracy on the frozen features (Euclidean distance).

    Each example is classified by the majority label of its k nearest *other* examples (``sklearn``
    ``NearestNeighbors``; ties go to the smaller label); the score is the fraction classified correctly.
    Leave-one-out is the exhaustive form of cross-validation, deterministic and without a training step.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Every class needs at least 2 examples.
    k : int or "auto", default="auto"
        Neighbours; "auto" = min(5, size of the smallest class − 1), so that a small class can win its vote.

    Returns
    -------
    float
        In [0, 1]; larger = more transferable. Invariant to shifts, rotations, isotropic scaling and reordering
        of the features. About 0.1 s at n = 1000, d = 512.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> knn_accuracy(np.c_[3 * y + 0.3 * rng.normal(size=60), rng.normal(size=60)], y)
    1.0
    """
    from sklearn.neighbors import NearestNeighbors

    f = _features(features, "knn_accuracy", min_samples=4)
    y, n_classes = _labels(labels, f.shape[0], "knn_accuracy", per_class=2)
    n = f.shape[0]
    if k == "auto":
        k = int(max(1, min(5, np.bincount(y).min() - 1)))
    if not (isinstance(k, int | np.integer) and 1 <= k < n):
        raise ZooscopeInputError(f"'k' of knn_accuracy must be 'auto' or an int in [1, n_samples - 1 = {n - 1}]; "
                                 f"got {k!r}.")
    idx = NearestNeighbors(n_neighbors=int(k) + 1).fit(f).kneighbors(f, return_distance=False)
    own = idx == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True  # an exact duplicate displaced the example itself: drop the farthest
    neigh = idx[~own].reshape(n, int(k))
    votes = np.zeros((n, n_classes))
    np.add.at(votes, (np.repeat(np.arange(n), int(k)), y[neigh].ravel()), 1.0)
    return float(np.mean(votes.argmax(axis=1) == y))
