"""Few-to-one and many-to-many unit alignment (Li, Yosinski et al. 2016, sections 4 and S.3; seed 003).

* :func:`sparse_prediction`: predict every unit of B from all units of A with an L1 penalty, over a
  path of penalties (the paper's 1×1-convolution "LASSO", here solved exactly by coordinate descent),
  reporting per penalty the loss and how many A units each B unit uses.
* :func:`spectral_groups`: spectral clustering of the joint correlation matrix of both layers' units into
  groups that may mix units of A and B (shared subspaces spanned by different bases).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from zooscope._validation import ZooscopeInputError, as_matrix, check_choice, check_finite, check_paired

__all__ = ["SparsePrediction", "sparse_prediction", "spectral_groups"]

DEFAULT_ALPHAS = (0.0, 1e-5, 1e-4, 1e-3, 10**-2.8, 10**-2.6, 10**-2.4, 10**-2.2, 1e-2, 1e-1)


@dataclass(frozen=True)
class SparsePrediction:
    """Result of :func:`sparse_prediction` along the penalty path.

    Attributes
    ----------
    alphas : numpy.ndarray of shape (n_alphas,)
        Penalties λ, in the order given.
    loss : numpy.ndarray of shape (n_alphas,)
        Mean squared error per target unit and sample on the standardised targets (predicting 0
        scores 1), on the validation set if one was given.
    n_used : numpy.ndarray of shape (n_alphas, n_b)
        Number of A units with a non-zero weight, per B unit.
    coef : numpy.ndarray of shape (n_alphas, n_b, n_a)
        Weights (on standardised inputs and targets).
    intercept : numpy.ndarray of shape (n_alphas, n_b)
        Intercepts.
    """

    alphas: np.ndarray
    loss: np.ndarray
    n_used: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per λ: alpha, loss, mean / median / max units used per target."""
        return pd.DataFrame({
            "alpha": self.alphas, "loss": self.loss, "mean_units_used": self.n_used.mean(axis=1),
            "median_units_used": np.median(self.n_used, axis=1), "max_units_used": self.n_used.max(axis=1),
        })


def _standardize(M: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return (M - mean) / sd


def sparse_prediction(A: npt.ArrayLike, B: npt.ArrayLike, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                      validation: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
                      standardize_inputs: bool = True, max_iter: int = 5000, tol: float = 1e-6) -> SparsePrediction:
    """Predict each unit of B from a few units of A: Lasso regressions over a path of penalties.

    Per λ and per B unit j, minimise (1/2n)‖b_j − c − A w‖² + λ‖w‖₁ (``sklearn.linear_model.Lasso``; λ = 0
    is ordinary least squares via ``numpy.linalg.lstsq``). Targets are standardised per unit, as in the
    paper's setup (initial loss ≈ 1); inputs too when ``standardize_inputs`` (so one λ penalises all
    units alike; the paper fed raw activations). Rows are samples (conv maps: positions as samples,
    see :func:`~zooscope.measures.units_as_samples`).

    Parameters
    ----------
    A : array-like of shape (n_samples, n_a)
        Predictor units.
    B : array-like of shape (n_samples, n_b)
        Target units, same rows.
    alphas : sequence of float, default=(0, 1e-5, 1e-4, 1e-3, 10^-2.8, …, 1e-2, 1e-1)
        Penalties λ >= 0 (the paper's table). Fitted from the largest down with warm starts.
    validation : tuple of (array-like, array-like), optional
        Held-out (A_val, B_val) to score the loss on, standardised with the training statistics.
    standardize_inputs : bool, default=True
        z-score the columns of A (constant columns are left at 0).
    max_iter, tol : int, float
        Passed to ``Lasso``.

    Returns
    -------
    SparsePrediction
        Loss and units used per λ; ``.to_frame()`` for a table.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(500, 6)); B = A[:, [0]] - 2 * A[:, [3]]
    >>> sp = sparse_prediction(A, B, alphas=[0.05])
    >>> np.flatnonzero(sp.coef[0, 0]).tolist()
    [0, 3]
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    A, B = check_paired(A, B, min_samples=3, names=("A", "B"))
    alphas = np.asarray(list(alphas), dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
        raise ZooscopeInputError(f"'alphas' of sparse_prediction must be finite floats >= 0; got {alphas}.")
    mu_a, sd_a = A.mean(0), A.std(0)
    sd_a = np.where(sd_a > 0, sd_a, 1.0)
    mu_b, sd_b = B.mean(0), B.std(0)
    if np.any(sd_b == 0):
        raise ZooscopeInputError(f"B units {np.flatnonzero(sd_b == 0).tolist()[:10]} are constant, so they "
                                 "cannot be standardised; drop them (dead units).")
    Xs = _standardize(A, mu_a, sd_a) if standardize_inputs else A
    Ys = _standardize(B, mu_b, sd_b)
    if validation is not None:
        Av, Bv = check_paired(*validation, min_samples=1, names=("A_val", "B_val"))
        if Av.shape[1] != A.shape[1] or Bv.shape[1] != B.shape[1]:
            raise ZooscopeInputError(f"validation has {Av.shape[1]} and {Bv.shape[1]} units; training has "
                                     f"{A.shape[1]} and {B.shape[1]}.")
        Xe = _standardize(Av, mu_a, sd_a) if standardize_inputs else Av
        Ye = _standardize(Bv, mu_b, sd_b)
    else:
        Xe, Ye = Xs, Ys
    n_a, n_b = A.shape[1], B.shape[1]
    coef = np.zeros((alphas.size, n_b, n_a))
    icpt = np.zeros((alphas.size, n_b))
    model = Lasso(alpha=1.0, fit_intercept=True, max_iter=max_iter, tol=tol, warm_start=True)
    for k in np.argsort(-alphas, kind="stable"):
        if alphas[k] == 0:  # Lasso at 0 is unstable and warns; least squares with an intercept column
            design = np.hstack([np.ones((Xs.shape[0], 1)), Xs])
            sol = np.linalg.lstsq(design, Ys, rcond=None)[0]
            icpt[k], coef[k] = sol[0], sol[1:].T
            continue
        model.set_params(alpha=float(alphas[k]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Xs, Ys)
        coef[k] = np.reshape(model.coef_, (n_b, n_a))
        icpt[k] = model.intercept_
    loss = np.array([np.mean((Xe @ coef[k].T + icpt[k] - Ye) ** 2) for k in range(alphas.size)])
    return SparsePrediction(alphas, loss, np.count_nonzero(coef, axis=2), coef, icpt)


def spectral_groups(C_joint: npt.ArrayLike, k: int, *, seed: int = 0,
                    affinity: Literal["abs", "shifted"] = "abs") -> np.ndarray:
    """Many-to-many groups: spectral clustering of a joint unit-correlation matrix.

    Parameters
    ----------
    C_joint : array-like of shape (n_units, n_units)
        Correlations among all units of both layers, e.g. ``unit_correlations(A, B, joint=True)``
        (A's units first: the 2n × 2n matrix of the paper for two layers of n units).
    k : int
        Number of groups.
    seed : int, default=0
        ``random_state`` of scikit-learn's ``SpectralClustering`` (its k-means step).
    affinity : {"abs", "shifted"}, default="abs"
        Affinity from the correlations: |C| (strong anti-correlation also groups units; the
        default) or (C + 1) / 2 (only positive correlation groups units).

    Returns
    -------
    numpy.ndarray of shape (n_units,)
        Group label in 0..k-1 of each unit; ``np.argsort(labels, kind="stable")`` reorders the matrix
        into blocks.

    Examples
    --------
    >>> C = np.kron(np.eye(2), np.full((3, 3), 0.85)) + 0.1 * np.eye(6) + 0.05
    >>> spectral_groups(C, 2).tolist() in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    True
    """
    from sklearn.cluster import SpectralClustering

    C = as_matrix(C_joint, "C_joint")
    check_finite(C, "C_joint")
    if C.shape[0] != C.shape[1] or not np.allclose(C, C.T, atol=1e-10):
        raise ZooscopeInputError(f"C_joint must be a symmetric (n_units, n_units) matrix; got shape {C.shape}. "
                                 "Use unit_correlations(A, B, joint=True).")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k < C.shape[0]:
        raise ZooscopeInputError(f"'k' of spectral_groups must be an int in [2, {C.shape[0] - 1}]; got {k!r}.")
    check_choice(affinity, ("abs", "shifted"), "affinity", "spectral_groups")
    W = np.abs(C) if affinity == "abs" else (C + 1.0) / 2.0
    W = np.clip((W + W.T) / 2.0, 0.0, None)
    sc = SpectralClustering(n_clusters=int(k), affinity="precomputed", random_state=seed, assign_labels="kmeans")
    return sc.fit_predict(W)
