"""Geodesic Mahalanobis distances: the local d^2 on a neighbour graph, summed along shortest paths.

The Mahalanobis-like d^2 of :mod:`zooscope.measures.mahalanobis` approximates ||x_i - x_j||^2 only for
nearby points. When the observations live in more dimensions than the inputs (m > d, e.g. an output plus
hidden units), the pseudo-inverse ignores the part of y_i - y_j normal to the tangent spaces, so far
points of a curved output manifold get a much too small d^2 ("shortcuts"): with two trained MLPs observed
through three units, about a quarter of the far pairs came out 10x too close. Here only short edges are
measured: each point's ``n_neighbors`` nearest observations (Euclidean), kept when the chord lies mostly
in both tangent spaces (fraction >= ``min_tangent_fraction`` of its squared length), weighted by the
Mahalanobis distance; global distances are shortest paths (Dijkstra), as in Isomap. This departs from the
paper's formula for far pairs; for neighbours it is the same.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, shortest_path
from scipy.spatial.distance import cdist

from zooscope._validation import ZooscopeInputError, as_matrix, check_finite, check_positive
from zooscope.measures.mahalanobis import _check_covariances, _tangent_bases, _whitening_factors

__all__ = ["mahalanobis_geodesic_sq_distances"]

_TINY = np.finfo(np.float64).tiny  # keeps zero-length edges (duplicate points) in the sparse graph


def _edge_stats(Ya: np.ndarray, Ba: np.ndarray, Ta: np.ndarray, Yb: np.ndarray, Bb: np.ndarray,
                Tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mahalanobis length and tangent fraction of the chords a -> b (arrays of the same leading length)."""
    delta = Yb - Ya
    qa = (np.einsum("emr,em->er", Ba, delta) ** 2).sum(axis=1)
    qb = (np.einsum("emr,em->er", Bb, delta) ** 2).sum(axis=1)
    sq = (delta**2).sum(axis=1)
    ta = (np.einsum("emr,em->er", Ta, delta) ** 2).sum(axis=1)
    tb = (np.einsum("emr,em->er", Tb, delta) ** 2).sum(axis=1)
    frac = np.where(sq > 0, np.minimum(ta, tb) / np.where(sq > 0, sq, 1.0), 1.0)
    return np.sqrt(0.5 * (qa + qb)), frac


class _GeodesicGraph:
    """Neighbour graph over training observations; ``extend`` gives new points' geodesic distances."""

    def __init__(self, n_neighbors: int, rank: int | None, rcond: float, min_tangent_fraction: float) -> None:
        self.n_neighbors, self.rank, self.rcond = n_neighbors, rank, rcond
        self.min_tangent_fraction = min_tangent_fraction

    def fit(self, Y: np.ndarray, C: np.ndarray) -> _GeodesicGraph:
        n, k = Y.shape[0], self.n_neighbors
        if not 1 <= k < n:
            raise ZooscopeInputError(f"'n_neighbors' must be an int in [1, n_samples - 1] = [1, {n - 1}]; got {k}.")
        self.centre_ = Y.mean(axis=0)  # centre first: big offsets would cancel in the chords
        self.Y_ = Y - self.centre_
        self.B_ = _whitening_factors(C, self.rank, self.rcond)
        self.T_ = _tangent_bases(C, self.rank, self.rcond)
        E = cdist(self.Y_, self.Y_, "sqeuclidean")
        np.fill_diagonal(E, np.inf)
        nbrs = np.argpartition(E, k - 1, axis=1)[:, :k]
        rows, cols = np.repeat(np.arange(n), k), nbrs.ravel()
        length, frac = _edge_stats(self.Y_[rows], self.B_[rows], self.T_[rows],
                                   self.Y_[cols], self.B_[cols], self.T_[cols])
        ok = frac >= self.min_tangent_fraction
        graph = csr_matrix((length[ok] + _TINY, (rows[ok], cols[ok])), shape=(n, n))
        n_parts, _ = connected_components(graph, directed=False)
        if n_parts > 1:
            raise ZooscopeInputError(
                f"The neighbour graph of the observations falls into {n_parts} pieces, so geodesic distances "
                f"are undefined. Increase n_neighbors (now {k}), sample the inputs more densely, or lower "
                f"min_tangent_fraction (now {self.min_tangent_fraction}).")
        self.geodesic_ = shortest_path(graph, method="D", directed=False)
        return self

    def extend(self, Y_new: np.ndarray, C_new: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Squared geodesic distances (n_new, n) via each new point's kept neighbours.

        d(y*, y_j) = min_k [d_M(y*, y_k) + geodesic(k, j)] over the n_neighbors nearest training points
        y_k whose chord passes the tangent test (the nearest one when none does). A training point's own
        row is reproduced exactly: it is its own nearest neighbour at distance 0.
        """
        Yn = Y_new - self.centre_
        Bn, Tn = _whitening_factors(C_new, self.rank, self.rcond), _tangent_bases(C_new, self.rank, self.rcond)
        k = self.n_neighbors
        nbrs = np.argsort(cdist(Yn, self.Y_, "sqeuclidean"), axis=1)[:, :k]
        out = np.empty((Yn.shape[0], self.Y_.shape[0]))
        for s in range(0, Yn.shape[0], chunk):
            idx = nbrs[s : s + chunk]
            rows, cols = np.repeat(np.arange(s, s + idx.shape[0]), k), idx.ravel()
            length, frac = _edge_stats(Yn[rows], Bn[rows], Tn[rows], self.Y_[cols], self.B_[cols], self.T_[cols])
            length, ok = length.reshape(idx.shape), (frac >= self.min_tangent_fraction).reshape(idx.shape)
            ok[:, 0] |= ~ok.any(axis=1)
            via = np.where(ok, length, np.inf)[:, :, None] + self.geodesic_[idx]  # (chunk, k, n)
            out[s : s + idx.shape[0]] = via.min(axis=1)
        return out**2


def mahalanobis_geodesic_sq_distances(
    Y: npt.ArrayLike,
    covariances: npt.ArrayLike,
    n_neighbors: int = 10,
    *,
    rank: int | None = None,
    rcond: float = 1e-10,
    min_tangent_fraction: float = 0.5,
) -> np.ndarray:
    """Squared geodesic distances built from local Mahalanobis distances on a neighbour graph.

    Parameters
    ----------
    Y : array-like of shape (n_samples, m)
        Observations (network outputs or selected activations).
    covariances : array-like of shape (n_samples, m, m)
        C_i = J_i J_i^T per row (``jacobian_covariances`` or ``burst_covariances``).
    n_neighbors : int, default=10
        Euclidean nearest neighbours per point that may become graph edges.
    rank, rcond : int or None, float
        The pseudo-inverse rule of :func:`mahalanobis_sq_distances`.
    min_tangent_fraction : float, default=0.5
        Keep an edge only if ||P_i (y_j - y_i)||^2 and ||P_j (y_j - y_i)||^2 (P: projection on the
        tangent space, range(C)) are both at least this fraction of ||y_j - y_i||^2, i.e. the chord is
        within 45 degrees of both tangent spaces at 0.5. Rejects neighbours across a fold.

    Returns
    -------
    np.ndarray of shape (n_samples, n_samples)
        Squared path lengths; ~ (geodesic input distance)^2, which is ||x_i - x_j||^2 on a convex input set.

    Raises
    ------
    ZooscopeInputError
        If the graph is disconnected (the message says which knob to turn).

    Examples
    --------
    >>> t = np.linspace(0, 1, 50)
    >>> Y = np.column_stack([np.cos(3 * t), np.sin(3 * t)])       # an arc of speed 3
    >>> C = 9.0 * np.stack([np.outer(v, v) for v in np.column_stack([-np.sin(3 * t), np.cos(3 * t)])])
    >>> D2 = mahalanobis_geodesic_sq_distances(Y, C, n_neighbors=4)
    >>> round(float(np.sqrt(D2[0, -1])), 3)      # the arc length in t-units is 1; chords cut it by O(h^2)
    0.996
    """
    Y = as_matrix(Y, "Y")
    check_finite(Y, "Y")
    C = _check_covariances(covariances, Y.shape[0], Y.shape[1], "covariances")
    frac = float(min_tangent_fraction)
    if not 0.0 <= frac <= 1.0:
        raise ZooscopeInputError(f"'min_tangent_fraction' must be a float in [0, 1]; got {min_tangent_fraction!r}.")
    graph = _GeodesicGraph(int(n_neighbors), rank, check_positive(rcond, "rcond", "geodesic distances"), frac)
    return graph.fit(Y, C).geodesic_ ** 2
