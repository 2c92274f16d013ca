"""Transformations between networks (Bertalan, Dietrich, Kevrekidis et al. 2020, arXiv 2007.05646).

Two networks A and B observe the same inputs: y_A = N_A(x), y_B = N_B(x). They are *equivalent* when a
smooth invertible T with y_B = T(y_A) exists. We build T from data: diffusion coordinates Psi_A of A's
observations, an orthogonal alignment R of Psi_A onto B's own diffusion coordinates Psi_B, and geometric
harmonics G from Psi_B to y_B: T(y_A) = G(Psi_A(y_A) R), with Psi_A extended to new points by Nyström.
If both networks recover the same intrinsic coordinates (which the Mahalanobis metric makes likely for
equivalent networks) the held-out error is small; if B folds or squashes A's manifold, Psi_B is no
function of Psi_A and the error is large.

No reference code was released for the paper; the construction follows its abstract and the standard
Mahalanobis diffusion-maps recipe (Singer & Coifman 2008), see ``reference/seed_methods.md`` section E.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.linalg

from zooscope._validation import ZooscopeInputError, as_matrix, check_choice, check_paired, check_positive
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures.diffusion import DiffusionMaps, GeometricHarmonics, _check_fitted

__all__ = ["NetworkTransform", "relative_error", "transform_error"]


def relative_error(Y_pred: npt.ArrayLike, Y_true: npt.ArrayLike) -> float:
    """Relative reconstruction error ||Y_pred - Y_true||_F / ||Y_true - mean(Y_true)||_F.

    Parameters
    ----------
    Y_pred, Y_true : array-like of shape (n_samples, n_features)
        Predicted and true observations.

    Returns
    -------
    float
        0 for a perfect reconstruction; 1 for predicting the mean of ``Y_true``; larger is worse.
        Invariant to a common translation, scaling or rotation of both arguments.
    """
    P, T = as_matrix(Y_pred, "Y_pred"), as_matrix(Y_true, "Y_true")
    if P.shape != T.shape:
        raise ZooscopeInputError(f"Y_pred and Y_true must have the same shape; got {P.shape} and {T.shape}.")
    spread = np.linalg.norm(T - T.mean(axis=0))
    if not spread > 0:
        raise ZooscopeInputError("Y_true is the same for every example, so the relative error is undefined.")
    return float(np.linalg.norm(P - T) / spread)


def _alignment(Pa: np.ndarray, Pb: np.ndarray, how: str) -> np.ndarray:
    """R minimising ||Pa R - Pb||_F: orthogonal (Procrustes) or a diagonal of signs."""
    M = Pa.T @ Pb
    if how == "sign":
        return np.diag(np.where(np.diag(M) < 0, -1.0, 1.0))
    U, _, Vt = scipy.linalg.svd(M)  # orthogonal Procrustes: R = U V^T
    return U @ Vt


class NetworkTransform:
    """Learn T with y_B ~ T(y_A) between two networks' observations of the same inputs.

    Parameters
    ----------
    n_components : int, default=3
        Diffusion coordinates per network; at least the input-manifold dimension d. More than d helps:
        phi_1 = cos(pi t) alone is flat at the ends of a curve, so its inverse is steep there.
    metric : {"euclidean", "mahalanobis"}, default="euclidean"
        "mahalanobis" needs per-example covariances (``jacobian_covariances`` / ``burst_covariances``) in
        fit, transform and score; it makes the coordinates independent of each network's observation map.
    align : {"procrustes", "sign", "none"}, default="procrustes"
        How Psi_A is mapped to Psi_B: an orthogonal matrix (sign flips, swaps and rotations inside
        degenerate eigenspaces), sign flips only, or "none": skip Psi_B and regress y_B on Psi_A directly
        (then T only needs y_B to be a smooth function of y_A, not the same intrinsic coordinates).
    epsilon_scale : float, optional
        Diffusion-maps bandwidth: ``epsilon_scale`` times the median squared distance. Default 1.0,
        except 0.05 for metric="mahalanobis" with n_neighbors=None, whose pairwise d^2 is valid only
        between nearby points (far pairs can come out much too small, so the kernel must not reach them).
    n_neighbors : int or None, default=10
        With metric="mahalanobis": neighbours per point of the graph whose shortest paths give the
        distances (``mahalanobis_geodesic_sq_distances``); None uses the pairwise formula for all pairs.
    alpha : float, default=1.0
        Density normalisation of the diffusion maps.
    delta : float, default=1e-6
        Eigenvalue cut-off of the geometric harmonics from coordinates to y_B.
    rank, rcond : int or None, float
        Pseudo-inverse rule of the Mahalanobis metric (see ``mahalanobis_sq_distances``).

    Attributes
    ----------
    dmap_a_, dmap_b_ : DiffusionMaps
        Fitted diffusion maps of A and B (``dmap_b_`` is None when align="none").
    alignment_ : np.ndarray of shape (n_components, n_components)
        R with Psi_A R ~ Psi_B (the identity when align="none").
    coordinate_agreement_ : np.ndarray of shape (n_components,)
        |corr| of each aligned column of Psi_A R with Psi_B on the training rows (nan when align="none").
    harmonics_ : GeometricHarmonics
        The map from coordinates to y_B.
    score_ : float
        The last held-out error computed by ``score`` (read by ``is_equivalent``).

    Notes
    -----
    ``score`` is the relative error ||T(y_A) - y_B||_F / ||y_B - mean(y_B)||_F on the rows given, which
    should be held out from ``fit``: 0 is perfect, 1 is no better than predicting the mean. The verdict
    ``is_equivalent(threshold=0.05)`` asks for under 5 % of the spread of y_B; the threshold is a choice
    (the paper reports no number), so report the error itself alongside the verdict.
    """

    def __init__(
        self,
        n_components: int = 3,
        *,
        metric: Literal["euclidean", "mahalanobis"] = "euclidean",
        align: Literal["procrustes", "sign", "none"] = "procrustes",
        epsilon_scale: float | None = None,
        alpha: float = 1.0,
        delta: float = 1e-6,
        rank: int | None = None,
        rcond: float = 1e-10,
        n_neighbors: int | None = 10,
    ) -> None:
        self.n_components = n_components
        self.metric = metric
        self.align = align
        self.epsilon_scale = epsilon_scale
        self.alpha = alpha
        self.delta = delta
        self.rank = rank
        self.rcond = rcond
        self.n_neighbors = n_neighbors

    def _dmap(self) -> DiffusionMaps:
        pairwise = self.metric == "mahalanobis" and self.n_neighbors is None
        scale = self.epsilon_scale if self.epsilon_scale is not None else (0.05 if pairwise else 1.0)
        return DiffusionMaps(self.n_components, epsilon_scale=scale, alpha=self.alpha, metric=self.metric,
                             rank=self.rank, rcond=self.rcond,
                             n_neighbors=self.n_neighbors if self.metric == "mahalanobis" else None)

    def _covs(self, C: Any, name: str) -> Any:
        if self.metric == "mahalanobis" and C is None:
            raise ZooscopeInputError(
                f"metric='mahalanobis' needs {name}: pass {name}=jacobian_covariances(net, x) (or "
                "burst_covariances), or use metric='euclidean'.")
        if self.metric == "euclidean" and C is not None:
            raise ZooscopeInputError(f"{name} is only used with metric='mahalanobis'; got metric='euclidean'.")
        return C

    def fit(self, acts_a: npt.ArrayLike, acts_b: npt.ArrayLike, *, covariances_a: npt.ArrayLike | None = None,
            covariances_b: npt.ArrayLike | None = None) -> NetworkTransform:
        """Learn T from paired observations.

        Parameters
        ----------
        acts_a : array-like of shape (n_samples, m_a)
            Network A's observations (outputs or selected activations), one row per input.
        acts_b : array-like of shape (n_samples, m_b)
            Network B's observations of the same inputs, in the same row order.
        covariances_a, covariances_b : array-like of shape (n_samples, m_a, m_a) and (n_samples, m_b, m_b)
            Required with metric="mahalanobis" (``covariances_b`` is unused when align="none").

        Returns
        -------
        NetworkTransform
            ``self``, fitted.
        """
        owner = type(self).__name__
        check_choice(self.metric, ["euclidean", "mahalanobis"], "metric", owner)
        check_choice(self.align, ["procrustes", "sign", "none"], "align", owner)
        A, B = check_paired(acts_a, acts_b, min_samples=4, names=("acts_a", "acts_b"))
        self.dmap_a_ = self._dmap().fit(A, covariances=self._covs(covariances_a, "covariances_a"))
        Pa = self.dmap_a_.eigenvectors_
        if self.align == "none":
            self.dmap_b_ = None
            self.alignment_ = np.eye(Pa.shape[1])
            self.coordinate_agreement_ = np.full(Pa.shape[1], np.nan)
            coords = Pa
        else:
            self.dmap_b_ = self._dmap().fit(B, covariances=self._covs(covariances_b, "covariances_b"))
            Pb = self.dmap_b_.eigenvectors_
            self.alignment_ = _alignment(Pa, Pb, self.align)
            aligned = Pa @ self.alignment_
            self.coordinate_agreement_ = np.array(
                [abs(np.corrcoef(aligned[:, k], Pb[:, k])[0, 1]) for k in range(Pb.shape[1])])
            coords = Pb  # G is B's own map: intrinsic coordinates -> y_B
        self.harmonics_ = GeometricHarmonics(delta=self.delta).fit(coords, B)
        self.n_features_in_ = A.shape[1]
        return self

    def transform(self, acts_a: npt.ArrayLike, *, covariances_a: npt.ArrayLike | None = None) -> np.ndarray:
        """Predict B's observations from A's: T(y_A) = G(Psi_A(y_A) R).

        Parameters
        ----------
        acts_a : array-like of shape (n_new, m_a)
            Network A's observations of new inputs.
        covariances_a : array-like of shape (n_new, m_a, m_a), optional
            Required with metric="mahalanobis".

        Returns
        -------
        np.ndarray of shape (n_new, m_b)
            Predicted observations of network B.
        """
        _check_fitted(self, "harmonics_")
        coords = self.dmap_a_.transform(acts_a, covariances=self._covs(covariances_a, "covariances_a"))
        return self.harmonics_.predict(coords @ self.alignment_)

    def score(self, acts_a: npt.ArrayLike, acts_b: npt.ArrayLike, *,
              covariances_a: npt.ArrayLike | None = None) -> float:
        """Relative error ||T(y_A) - y_B||_F / ||y_B - mean(y_B)||_F on (held-out) rows; stored in ``score_``.

        Parameters
        ----------
        acts_a : array-like of shape (n_new, m_a)
        acts_b : array-like of shape (n_new, m_b)
            Both networks' observations of inputs not used in ``fit``.
        covariances_a : array-like of shape (n_new, m_a, m_a), optional
            Required with metric="mahalanobis".

        Returns
        -------
        float
            >= 0; smaller means B is better reconstructed from A (lower is more similar).
        """
        _check_fitted(self, "harmonics_")
        A, B = check_paired(acts_a, acts_b, min_samples=2, names=("acts_a", "acts_b"))
        if B.shape[1] != self.harmonics_.offset_.shape[0]:
            raise ZooscopeInputError(f"acts_b has {B.shape[1]} features, but the transform was fitted with "
                                     f"{self.harmonics_.offset_.shape[0]}.")
        self.score_ = relative_error(self.transform(A, covariances_a=covariances_a), B)
        return self.score_

    def is_equivalent(self, threshold: float = 0.05) -> bool:
        """Verdict from the last ``score``: equivalent when the held-out relative error < ``threshold``.

        Parameters
        ----------
        threshold : float, default=0.05
            Largest relative error (fraction of the spread of y_B) still called equivalent.

        Returns
        -------
        bool
        """
        threshold = check_positive(threshold, "threshold", "NetworkTransform.is_equivalent")
        if not hasattr(self, "score_"):
            _check_fitted(self, "harmonics_")
            raise ZooscopeInputError("is_equivalent needs a held-out error: call score(acts_a_test, "
                                     "acts_b_test) first.")
        return bool(self.score_ < threshold)


@MEASURES.register(MeasureMeta(
    larger_is_more_similar=False, symmetric=False,
    invariances=Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.ORTHOGONAL | Inv.PERMUTATION,
    not_invariant=Inv.INVERTIBLE_LINEAR, bounds=(0.0, float("inf")), min_samples=12,
    reference="Bertalan, Dietrich, Kevrekidis et al. 2020 (arXiv 2007.05646); Coifman & Lafon 2006"))
def transform_error(X: npt.ArrayLike, Y: npt.ArrayLike, *, n_components: int = 3, test_size: float = 0.5,
                    seed: int | np.random.Generator = 0,
                    align: Literal["procrustes", "sign", "none"] = "procrustes",
                    epsilon_scale: float = 1.0, delta: float = 1e-6) -> float:
    """Held-out error of reconstructing layer Y from layer X through diffusion coordinates.

    Rows are split at random (seeded) into a fit part and a test part; a :class:`NetworkTransform` with
    the Euclidean metric is fitted on the first and scored on the second.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        Activations of one layer (network A), one row per input.
    Y : array-like of shape (n_samples, n_features_y)
        Activations of another layer (network B) for the same inputs, same row order.
    n_components : int, default=3
        Diffusion coordinates (at least the dimension of the input manifold).
    test_size : float, default=0.5
        Fraction of rows held out for scoring, in (0, 1).
    seed : int or np.random.Generator, default=0
        Randomness of the split (fixed seed: a deterministic value).
    align : {"procrustes", "sign", "none"}, default="procrustes"
        See :class:`NetworkTransform`; "none" only asks that Y be a smooth function of X.
    epsilon_scale, delta : float
        Diffusion-map bandwidth factor and geometric-harmonics cut-off.

    Returns
    -------
    float
        Relative error ||T(X) - Y||_F / ||Y - mean(Y)||_F on the held-out rows, >= 0; 0 is a perfect
        transformation, about 1 or more means none was found (smaller is more similar). With the
        Euclidean metric the value is unchanged by rotating, scaling or shifting either layer, but not by
        a general invertible linear map (which changes the geometry the diffusion maps see).

    Examples
    --------
    >>> t = np.linspace(0, 1, 80)[:, None]
    >>> X = np.hstack([np.cos(2 * t), np.sin(2 * t)])            # a 1-D curve observed in R^2
    >>> bool(transform_error(X, 3 * X @ [[0.0, 1.0], [-1.0, 0.0]] + 5) < 0.05)
    True
    """
    X, Y = check_paired(X, Y, min_samples=12)
    test_size = float(test_size)
    if not 0.0 < test_size < 1.0:
        raise ZooscopeInputError(f"'test_size' of transform_error must be a float in (0, 1); got {test_size!r}.")
    n = X.shape[0]
    n_test = min(max(round(test_size * n), 2), n - 4)
    perm = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    nt = NetworkTransform(n_components, align=align, epsilon_scale=epsilon_scale, delta=delta)
    return nt.fit(X[train], Y[train]).score(X[test], Y[test])
