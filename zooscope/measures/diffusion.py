"""Diffusion maps with a Nyström extension, and geometric harmonics (Coifman & Lafon 2006).

Used by :mod:`zooscope.measures.transform` to build transformations between networks
(Bertalan, Dietrich, Kevrekidis et al. 2020); the Mahalanobis-like metric of that paper comes from
:mod:`zooscope.measures.mahalanobis`. Implemented with numpy/scipy only; conventions (kernel
exp(-d^2/epsilon), alpha-normalisation, eigenvectors normalised so phi_0 = 1) are stated in each docstring.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.linalg
from scipy.spatial.distance import cdist

from zooscope._validation import ZooscopeInputError, as_matrix, check_choice, check_finite, check_positive
from zooscope.measures.geodesic import _GeodesicGraph
from zooscope.measures.mahalanobis import _check_covariances, mahalanobis_sq_distances

__all__ = ["DiffusionMaps", "GeometricHarmonics", "NotFittedError"]


class NotFittedError(ZooscopeInputError, AttributeError):
    """A method that needs learned state was called before ``fit`` (sklearn's NotFittedError, ours)."""


def _check_fitted(est: Any, attr: str) -> None:
    if not hasattr(est, attr):
        raise NotFittedError(
            f"This {type(est).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
            "before using this method."
        )


def _epsilon(D2: np.ndarray, epsilon: Any, scale: float, owner: str) -> float:
    """Kernel bandwidth: a float as given, or ``scale * median`` of the off-diagonal squared distances."""
    if isinstance(epsilon, str):
        check_choice(epsilon, ["median"], "epsilon", owner)
        scale = check_positive(scale, "epsilon_scale", owner)
        off = D2[np.triu_indices(D2.shape[0], k=1)]
        med = float(np.median(off))
        if not med > 0:
            raise ZooscopeInputError(
                f"The median squared distance is {med:.3g}: more than half of the pairs of points coincide, "
                f"so epsilon='median' is undefined for {owner}. Remove duplicates or pass epsilon=<float>."
            )
        return scale * med
    return check_positive(epsilon, "epsilon", owner)


def _check_n_components(k: Any, n: int, owner: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'n_components' of {owner} must be an int >= 1; got {k!r}.")
    if k > n - 2:
        raise ZooscopeInputError(
            f"{owner} with n_components={k} needs at least n_components + 2 = {k + 2} samples; got {n}. "
            "Pass more samples or fewer components."
        )
    return int(k)


class DiffusionMaps:
    """Diffusion maps (Coifman & Lafon 2006) with alpha-normalisation and a Nyström extension.

    Steps: W_ij = exp(-d_ij^2 / epsilon); q = W 1; W~ = diag(q)^-alpha W diag(q)^-alpha (alpha = 1 removes
    the sampling density); P = diag(d~)^-1 W~ with d~ = W~ 1. P is similar to the symmetric
    S = diag(d~)^-1/2 W~ diag(d~)^-1/2, whose eigenpairs (scipy.linalg.eigh, stable) give P's right
    eigenvectors phi_k = sqrt(sum d~) diag(d~)^-1/2 v_k: phi_0 = 1, and sum_i pi_i phi_k(i)^2 = 1 with the
    stationary distribution pi = d~ / sum d~. Each phi_k's sign makes its largest-magnitude entry positive.

    Parameters
    ----------
    n_components : int, default=2
        Non-trivial eigenvectors phi_1..phi_k to keep (phi_0 = 1 is dropped).
    epsilon : float or "median", default="median"
        Kernel bandwidth (in squared-distance units); "median" uses ``epsilon_scale`` times the median of
        the pairwise squared distances.
    epsilon_scale : float, default=1.0
        Factor on the median; smaller values resolve finer structure (and need denser samples).
    alpha : float, default=1.0
        Density normalisation: 0 graph Laplacian, 0.5 Fokker-Planck, 1 Laplace-Beltrami.
    metric : {"euclidean", "mahalanobis", "precomputed"}, default="euclidean"
        "mahalanobis" needs ``covariances`` in fit/transform (see ``mahalanobis_sq_distances``);
        "precomputed" takes squared distances: (n, n) in fit, (n_new, n) in transform.
    diffusion_time : float, default=0.0
        The embedding is phi_k * lambda_k ** diffusion_time (0: the eigenvectors themselves).
    rank, rcond : int or None, float
        Pseudo-inverse rule of the Mahalanobis metric (see ``mahalanobis_sq_distances``).
    n_neighbors : int, optional
        With metric="mahalanobis": None uses the pairwise formula for every pair (valid only between
        nearby points: pair it with a small ``epsilon_scale``); an int uses geodesic distances over a graph
        of that many neighbours per point (``mahalanobis_geodesic_sq_distances``), valid for every pair.

    Attributes
    ----------
    epsilon_ : float
        The bandwidth used.
    eigenvalues_ : np.ndarray of shape (n_components,)
        lambda_1 >= ... >= lambda_k of P (lambda_0 = 1 is dropped).
    eigenvectors_ : np.ndarray of shape (n_samples, n_components)
        phi_1..phi_k at the training points.
    embedding_ : np.ndarray of shape (n_samples, n_components)
        phi_k * lambda_k ** diffusion_time.

    Examples
    --------
    >>> x = np.linspace(0, 1, 200)[:, None]
    >>> phi = DiffusionMaps(n_components=1, epsilon_scale=0.05).fit_transform(x)[:, 0]
    >>> bool(abs(np.corrcoef(phi, np.cos(np.pi * x[:, 0]))[0, 1]) > 0.99)
    True
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        epsilon: float | Literal["median"] = "median",
        epsilon_scale: float = 1.0,
        alpha: float = 1.0,
        metric: Literal["euclidean", "mahalanobis", "precomputed"] = "euclidean",
        diffusion_time: float = 0.0,
        rank: int | None = None,
        rcond: float = 1e-10,
        n_neighbors: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.epsilon = epsilon
        self.epsilon_scale = epsilon_scale
        self.alpha = alpha
        self.metric = metric
        self.diffusion_time = diffusion_time
        self.rank = rank
        self.rcond = rcond
        self.n_neighbors = n_neighbors

    # -- distances ------------------------------------------------------------------------------------
    def _train_sq_distances(self, X: npt.ArrayLike, covariances: npt.ArrayLike | None) -> np.ndarray:
        owner = type(self).__name__
        check_choice(self.metric, ["euclidean", "mahalanobis", "precomputed"], "metric", owner)
        if self.metric != "mahalanobis" and covariances is not None:
            raise ZooscopeInputError(f"covariances are only used with metric='mahalanobis'; got "
                                     f"metric={self.metric!r}. Set metric='mahalanobis' or drop them.")
        if self.metric == "precomputed":
            D2 = as_matrix(X, "X")
            check_finite(D2, "X")
            if D2.shape[0] != D2.shape[1] or (D2 < 0).any():
                raise ZooscopeInputError(f"With metric='precomputed', X must be an (n, n) matrix of squared "
                                         f"distances >= 0; got shape {D2.shape}.")
            return 0.5 * (D2 + D2.T)
        X = as_matrix(X, "X")
        check_finite(X, "X")
        self.X_fit_ = X
        if self.metric == "mahalanobis":
            if covariances is None:
                raise ZooscopeInputError(
                    "metric='mahalanobis' needs covariances of shape (n_samples, m, m): pass "
                    "covariances=jacobian_covariances(fn, x) (or burst_covariances), or use metric='euclidean'.")
            C = _check_covariances(covariances, X.shape[0], X.shape[1], "covariances")
            self.covariances_fit_ = C
            if self.n_neighbors is not None:
                rcond = check_positive(self.rcond, "rcond", owner)
                self.graph_ = _GeodesicGraph(int(self.n_neighbors), self.rank, rcond, 0.5).fit(X, C)
                return self.graph_.geodesic_**2
            return mahalanobis_sq_distances(X, C, rank=self.rank, rcond=self.rcond)
        return cdist(X, X, "sqeuclidean")  # differences first: no cancellation from large offsets

    def _new_sq_distances(self, X: npt.ArrayLike, covariances: npt.ArrayLike | None) -> np.ndarray:
        n = self.eigenvectors_.shape[0]
        if self.metric == "precomputed":
            D2 = as_matrix(X, "X")
            check_finite(D2, "X")
            if D2.shape[1] != n or (D2 < 0).any():
                raise ZooscopeInputError(f"With metric='precomputed', transform needs (n_new, {n}) squared "
                                         f"distances to the training points; got shape {D2.shape}.")
            return D2
        X = as_matrix(X, "X")
        check_finite(X, "X")
        if X.shape[1] != self.X_fit_.shape[1]:
            raise ZooscopeInputError(f"X has {X.shape[1]} features, but {type(self).__name__} was fitted "
                                     f"with {self.X_fit_.shape[1]}.")
        if self.metric == "mahalanobis":
            if covariances is None:
                raise ZooscopeInputError("metric='mahalanobis' needs the covariances of the new points too: "
                                         "transform(X, covariances=jacobian_covariances(fn, x_new)).")
            if self.n_neighbors is not None:
                return self.graph_.extend(X, _check_covariances(covariances, X.shape[0], X.shape[1], "covariances"))
            return mahalanobis_sq_distances(X, covariances, self.X_fit_, self.covariances_fit_,
                                            rank=self.rank, rcond=self.rcond)
        if covariances is not None:
            raise ZooscopeInputError("covariances are only used with metric='mahalanobis'.")
        return cdist(X, self.X_fit_, "sqeuclidean")

    # -- fit / transform ------------------------------------------------------------------------------
    def fit(self, X: npt.ArrayLike, y: Any = None, *, covariances: npt.ArrayLike | None = None) -> DiffusionMaps:
        """Learn the diffusion coordinates of the training points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples, n_samples) if metric="precomputed"
            Observations (rows = examples), or their squared distances.
        y : None
            Ignored (sklearn convention).
        covariances : array-like of shape (n_samples, n_features, n_features), optional
            Required with metric="mahalanobis".

        Returns
        -------
        DiffusionMaps
            ``self``, fitted.
        """
        owner = type(self).__name__
        D2 = self._train_sq_distances(X, covariances)
        n = D2.shape[0]
        k = _check_n_components(self.n_components, n, owner)
        alpha = float(self.alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ZooscopeInputError(f"'alpha' of {owner} must be a float in [0, 1]; got {self.alpha!r}.")
        eps = _epsilon(D2, self.epsilon, self.epsilon_scale, owner)
        W = np.exp(-D2 / eps)
        q = W.sum(axis=1)
        Wt = W / np.outer(q**alpha, q**alpha)  # W~ = D^-a W D^-a: removes the sampling density (alpha = 1)
        dt = Wt.sum(axis=1)
        s = np.sqrt(dt)
        S = Wt / np.outer(s, s)  # symmetric conjugate of the Markov matrix P = D~^-1 W~
        lam, V = scipy.linalg.eigh(S, subset_by_index=[n - k - 1, n - 1])
        lam, V = lam[::-1], V[:, ::-1]
        phi = V * (np.sqrt(dt.sum()) / s)[:, None]  # right eigenvectors of P, phi_0 = 1
        phi = phi[:, 1:]
        idx = np.abs(phi).argmax(axis=0)
        phi = phi * np.sign(phi[idx, np.arange(k)])
        self.epsilon_ = eps
        self.kernel_degrees_ = q
        self.eigenvalues_ = lam[1:].copy()
        self.eigenvectors_ = np.ascontiguousarray(phi)
        self.n_features_in_ = D2.shape[1] if self.metric == "precomputed" else self.X_fit_.shape[1]
        self.embedding_ = self.eigenvectors_ * self.eigenvalues_**self.diffusion_time
        return self

    def fit_transform(self, X: npt.ArrayLike, y: Any = None, *,
                      covariances: npt.ArrayLike | None = None) -> np.ndarray:
        """Fit, then return ``embedding_`` of shape (n_samples, n_components)."""
        return self.fit(X, covariances=covariances).embedding_

    def transform(self, X: npt.ArrayLike, *, covariances: npt.ArrayLike | None = None) -> np.ndarray:
        """Nyström extension of the diffusion coordinates to new points.

        phi_k(y*) = lambda_k^-1 sum_j p(y*, y_j) phi_k(y_j), where p(y*, .) is the kernel row of y*
        normalised exactly as the training rows (alpha step, then to sum 1). At a training point it
        reproduces phi_k to round-off, since P phi_k = lambda_k phi_k.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features), or (n_new, n_samples) if metric="precomputed"
            New observations, or their squared distances to the training points.
        covariances : array-like of shape (n_new, n_features, n_features), optional
            Required with metric="mahalanobis".

        Returns
        -------
        np.ndarray of shape (n_new, n_components)
            phi_k(y*) * lambda_k ** diffusion_time.
        """
        _check_fitted(self, "eigenvectors_")
        D2 = self._new_sq_distances(X, covariances)
        # A row-constant shift of d^2 rescales the row of W by c; with the alpha step and the row
        # normalisation that factor cancels, so subtracting each row's minimum only prevents underflow.
        Wn = np.exp(-(D2 - D2.min(axis=1, keepdims=True)) / self.epsilon_)
        qn = Wn.sum(axis=1)
        Wt = Wn / np.outer(qn**self.alpha, self.kernel_degrees_**self.alpha)
        P = Wt / Wt.sum(axis=1, keepdims=True)
        return (P @ self.eigenvectors_) / self.eigenvalues_ * self.eigenvalues_**self.diffusion_time


class GeometricHarmonics:
    """Extend a function off its samples with geometric harmonics (Coifman & Lafon 2006b).

    With the symmetric Gaussian kernel W_ij = exp(-||x_i - x_j||^2 / epsilon) = sum_k mu_k psi_k psi_k^T,
    the function's mean-removed values f are projected on the psi_k with mu_k > delta * mu_0 and each
    psi_k is extended by psi_k(x*) = mu_k^-1 sum_j W(x*, x_j) psi_k(x_j):
    f(x*) = mean(f) + sum_k mu_k^-1 W(x*, .) psi_k <psi_k, f - mean(f)>.

    Parameters
    ----------
    delta : float, default=1e-6
        Relative eigenvalue cut-off: larger is smoother (and less exact at the samples), smaller fits
        finer detail but amplifies noise by up to 1 / delta.
    epsilon : float or "median", default="median"
        Kernel bandwidth in squared-distance units; "median" uses ``epsilon_scale`` times the median of
        the pairwise squared distances.
    epsilon_scale : float, default=1.0
        Factor on the median.
    n_eigenpairs : int, optional
        Keep at most this many eigenpairs (after the delta rule).

    Attributes
    ----------
    epsilon_ : float
    eigenvalues_ : np.ndarray of shape (n_kept,)
        mu_k > delta * mu_0, descending.
    eigenvectors_ : np.ndarray of shape (n_samples, n_kept)
    coefficients_ : np.ndarray of shape (n_kept, n_targets)
        <psi_k, f - mean(f)>.

    Examples
    --------
    >>> x = np.linspace(0, 1, 60)[:, None]
    >>> gh = GeometricHarmonics().fit(x, np.sin(3 * x[:, 0]))
    >>> bool(abs(gh.predict([[0.505]])[0] - np.sin(3 * 0.505)) < 1e-4)
    True
    """

    def __init__(self, *, delta: float = 1e-6, epsilon: float | Literal["median"] = "median",
                 epsilon_scale: float = 1.0, n_eigenpairs: int | None = None) -> None:
        self.delta = delta
        self.epsilon = epsilon
        self.epsilon_scale = epsilon_scale
        self.n_eigenpairs = n_eigenpairs

    def fit(self, X: npt.ArrayLike, F: npt.ArrayLike) -> GeometricHarmonics:
        """Fit the extension of F from the samples X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Sample locations.
        F : array-like of shape (n_samples,) or (n_samples, n_targets)
            Function values at X.

        Returns
        -------
        GeometricHarmonics
            ``self``, fitted.
        """
        owner = type(self).__name__
        X = as_matrix(X, "X")
        check_finite(X, "X")
        F_arr = np.asarray(F, dtype=np.float64)
        self._1d = F_arr.ndim == 1
        F2 = as_matrix(F_arr.reshape(-1, 1) if self._1d else F_arr, "F")
        check_finite(F2, "F")
        if F2.shape[0] != X.shape[0] or X.shape[0] < 2:
            raise ZooscopeInputError(f"X and F must have the same number (>= 2) of rows; got {X.shape[0]} "
                                     f"and {F2.shape[0]}.")
        delta = check_positive(self.delta, "delta", owner)
        if delta >= 1:
            raise ZooscopeInputError(f"'delta' of {owner} must be a float in (0, 1); got {self.delta!r}.")
        D2 = cdist(X, X, "sqeuclidean")
        eps = _epsilon(D2, self.epsilon, self.epsilon_scale, owner)
        mu, psi = scipy.linalg.eigh(np.exp(-D2 / eps))
        mu, psi = mu[::-1], psi[:, ::-1]
        keep = mu > delta * mu[0]
        if self.n_eigenpairs is not None:
            if int(self.n_eigenpairs) < 1:
                raise ZooscopeInputError(f"'n_eigenpairs' of {owner} must be None or >= 1; "
                                         f"got {self.n_eigenpairs!r}.")
            keep[int(self.n_eigenpairs):] = False
        self.offset_ = F2.mean(axis=0)
        self.X_fit_ = X
        self.epsilon_ = eps
        self.eigenvalues_ = mu[keep].copy()
        self.eigenvectors_ = np.ascontiguousarray(psi[:, keep])
        self.coefficients_ = self.eigenvectors_.T @ (F2 - self.offset_)
        # Fold mu^-1 and the coefficients into one (n_samples, n_targets) weight: predict is one matmul.
        self._weights = self.eigenvectors_ @ (self.coefficients_ / self.eigenvalues_[:, None])
        return self

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        """Return extended function values at new points.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)

        Returns
        -------
        np.ndarray of shape (n_new,) or (n_new, n_targets)
            Shaped like the F given to fit.
        """
        _check_fitted(self, "coefficients_")
        X = as_matrix(X, "X")
        check_finite(X, "X")
        if X.shape[1] != self.X_fit_.shape[1]:
            raise ZooscopeInputError(f"X has {X.shape[1]} features, but GeometricHarmonics was fitted with "
                                     f"{self.X_fit_.shape[1]}.")
        out = self.offset_ + np.exp(-cdist(X, self.X_fit_, "sqeuclidean") / self.epsilon_) @ self._weights
        return out[:, 0] if self._1d else out
