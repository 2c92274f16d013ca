"""Unit-level alignment of two layers (Li, Yosinski, Clune, Lipson, Hopcroft, ICLR 2016; seed 003).

"Convergent learning" asks whether two networks learn the same units. Every unit of layer A is
correlated with every unit of layer B over a probe set (conv layers: every spatial position is a sample);
units are then paired one-to-one (bipartite matching: the assignment with the largest total
correlation) or greedily (semi-matching: each A unit takes its best B unit, repeats allowed).
Mutual information is in :mod:`zooscope.measures.mutual_info`; few-to-one sparse prediction and
many-to-many spectral groups in :mod:`zooscope.measures.subspace`.

Reference: ``YixuanLi/convergent_learning`` @ 2ab72f8, ``experiments/match_unit.py`` (networkx
``max_weight_matching`` / Munkres, identical to ``scipy.optimize.linear_sum_assignment(maximize=True)``)
and the notebook's "greedy matching".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from zooscope._validation import (
    ZooscopeInputError,
    _to_numpy,
    as_matrix,
    check_alloc,
    check_finite,
    check_paired,
)
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures.mutual_info import mi_matrix, mutual_information, percentile_bins
from zooscope.measures.subspace import SparsePrediction, sparse_prediction, spectral_groups

__all__ = [
    "MatchResult",
    "SemiMatchResult",
    "SparsePrediction",
    "UnitCorrelation",
    "bipartite_match",
    "cycles",
    "follow_loops",
    "mean_matched_correlation",
    "mi_matrix",
    "mutual_information",
    "percentile_bins",
    "semi_match",
    "sparse_prediction",
    "spectral_groups",
    "unit_correlations",
    "units_as_samples",
]

log = logging.getLogger(__name__)


def units_as_samples(A: Any, name: str = "A") -> np.ndarray:
    """Activations as a float64 (n_samples, n_units) matrix; conv maps make every position a sample.

    Parameters
    ----------
    A : array-like or torch.Tensor of shape (B, C) or (B, C, H, W)
        A batch of activations. 4-D (channels-first) maps become (B·H·W, C): each spatial position
        of each image is a sample and each channel a unit, as in the paper.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_units)
    """
    arr = _to_numpy(A)
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 1, -1).reshape(-1, arr.shape[1])
    elif arr.ndim == 3:
        raise ZooscopeInputError(
            f"{name} is 3-D {arr.shape}: ambiguous between (B, C, L) maps and (B, tokens, C). Reshape it to "
            f"(n_samples, n_units) yourself, e.g. {name}.reshape(-1, {name}.shape[-1]) for tokens."
        )
    arr = as_matrix(arr, name)
    check_finite(arr, name)
    return arr


class UnitCorrelation:
    """Streaming Pearson correlations within and between the units of two layers.

    Accumulates, in float64, the means and centred co-moments of the concatenated units [A | B] batch
    by batch (Chan et al.'s pairwise update: no E[ab] − E[a]E[b] cancellation when units have large
    means). ``update`` takes paired batches; the statistics are read off at any time.

    Attributes
    ----------
    n_ : int
        Samples seen (images × positions for conv maps).
    mean_ : numpy.ndarray of shape (n_a + n_b,)
        Per-unit means, A's units first.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(100, 3)); acc = UnitCorrelation()
    >>> _ = acc.update(A[:60], 2 * A[:60, ::-1] + 1).update(A[60:], 2 * A[60:, ::-1] + 1)
    >>> float(np.round(acc.correlation(), 12)[0, 2])
    1.0
    """

    def __init__(self) -> None:
        self.n_ = 0
        self.n_a_: int | None = None
        self.mean_: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # centred co-moment matrix Σ (x − mean)(x − mean)ᵀ

    def update(self, A: Any, B: Any) -> UnitCorrelation:
        """Add one paired batch.

        Parameters
        ----------
        A : array-like or torch.Tensor of shape (B, C_a) or (B, C_a, H, W)
            Activations of layer A for a batch.
        B : array-like or torch.Tensor of shape (B, C_b) or (B, C_b, H', W')
            Activations of layer B for the same inputs; after flattening positions both must have the
            same number of samples (conv maps of both layers need the same spatial size).

        Returns
        -------
        UnitCorrelation
            ``self``.
        """
        a, b = units_as_samples(A, "A"), units_as_samples(B, "B")
        if a.shape[0] != b.shape[0]:
            raise ZooscopeInputError(
                f"A and B give {a.shape[0]} and {b.shape[0]} samples for this batch. They must describe the "
                "same inputs (and, for conv maps, the same spatial positions): pool or resize one layer "
                "(CLI: --spatial mean)."
            )
        if self.n_a_ is not None and (a.shape[1] != self.n_a_ or a.shape[1] + b.shape[1] != self.mean_.size):
            raise ZooscopeInputError(
                f"Unit counts changed between batches: first ({self.n_a_}, {self.mean_.size - self.n_a_}), "
                f"now ({a.shape[1]}, {b.shape[1]})."
            )
        x = np.hstack([a, b])
        m, mean_b = x.shape[0], x.mean(axis=0)
        xc = x - mean_b
        m2_b = xc.T @ xc
        if self.mean_ is None:
            self.n_a_, self.n_, self.mean_, self._m2 = a.shape[1], m, mean_b, m2_b
            return self
        n = self.n_
        delta = mean_b - self.mean_
        self._m2 = self._m2 + m2_b + (n * m / (n + m)) * np.outer(delta, delta)
        self.mean_ = self.mean_ + delta * (m / (n + m))
        self.n_ = n + m
        return self

    def joint(self) -> np.ndarray:
        """Correlation matrix of all units, A's first: shape (n_a + n_b, n_a + n_b).

        Units with zero variance (dead ReLUs) get correlation 0 with every unit, and 1 with themselves.
        """
        if self._m2 is None or self.n_ < 2:
            raise ZooscopeInputError("UnitCorrelation needs at least 2 samples; call update(A, B) first.")
        sd = np.sqrt(np.diag(self._m2))
        dead = sd == 0
        if dead.any():
            log.warning("%d unit(s) are constant over the probe set; their correlations are set to 0.",
                        int(dead.sum()))
        inv = np.where(dead, 0.0, 1.0 / np.where(dead, 1.0, sd))
        C = self._m2 * inv[:, None] * inv[None, :]
        np.clip(C, -1.0, 1.0, out=C)
        C[np.diag_indices_from(C)] = 1.0
        return C

    def correlation(self) -> np.ndarray:
        """Between-layer block: C[i, j] = corr(A unit i, B unit j), shape (n_a, n_b)."""
        return self.joint()[: self.n_a_, self.n_a_:]


def unit_correlations(acts_a: Any, acts_b: Any, *, joint: bool = False) -> np.ndarray:
    """Pearson correlation of every unit of A with every unit of B, streamed over batches.

    Parameters
    ----------
    acts_a : numpy.ndarray or torch.Tensor of shape (n, C_a) or (n, C_a, H, W), or an iterable of them
        Activations of layer A (conv maps: every position is a sample). A list, tuple or generator is
        read as a sequence of batches.
    acts_b : numpy.ndarray or torch.Tensor, or an iterable of them
        Activations of layer B for the same inputs, batch for batch.
    joint : bool, default=False
        Return the full (C_a + C_b) × (C_a + C_b) matrix (within-A, within-B and between blocks).

    Returns
    -------
    numpy.ndarray of shape (C_a, C_b), or (C_a + C_b, C_a + C_b) if ``joint``
        Correlations in [-1, 1]; rows are A's units.

    Examples
    --------
    >>> A = np.random.default_rng(0).normal(size=(50, 4))
    >>> C = unit_correlations(A, A[:, [2, 0, 3, 1]])
    >>> C.argmax(axis=1).tolist()
    [1, 3, 0, 2]
    """
    acc = UnitCorrelation()
    if _is_batch(acts_a) and _is_batch(acts_b):
        acc.update(acts_a, acts_b)
    else:
        for a, b in zip(acts_a, acts_b, strict=True):
            acc.update(a, b)
    return acc.joint() if joint else acc.correlation()


def _is_batch(x: Any) -> bool:
    """Return a numpy array or torch tensor is one batch; lists, tuples and generators are read as batches."""
    return isinstance(x, np.ndarray) or hasattr(x, "detach")


def _check_score_matrix(C: npt.ArrayLike) -> np.ndarray:
    C = as_matrix(C, "C")
    check_finite(C, "C")
    if C.size == 0:
        raise ZooscopeInputError(f"C must have at least one row and one column; got shape {C.shape}.")
    return C


@dataclass(frozen=True)
class MatchResult:
    """A one-to-one matching of A's units (rows) to B's units (columns).

    Attributes
    ----------
    rows, cols : numpy.ndarray of shape (n_matched,)
        Matched pairs (rows[k], cols[k]), rows ascending; n_matched = min(n_a, n_b).
    values : numpy.ndarray of shape (n_matched,)
        C[rows, cols].
    total, mean : float
        Sum and mean of ``values``.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    total: float
    mean: float

    @property
    def order(self) -> np.ndarray:
        """The reference's ``order``: order[i] = B unit matched to A unit i (square C only)."""
        return self.cols


def bipartite_match(C: npt.ArrayLike, *, ignore_diag: bool = False) -> MatchResult:
    """Maximum-weight one-to-one matching of rows to columns of a score matrix.

    The assignment maximising Σ_i C[i, order[i]] (Hungarian method via
    ``scipy.optimize.linear_sum_assignment(maximize=True)``; the reference's networkx and Munkres
    routines give the same assignment).

    Parameters
    ----------
    C : array-like of shape (n_a, n_b)
        Scores, e.g. :func:`unit_correlations` or :func:`mi_matrix`; rectangular is allowed
        (min(n_a, n_b) pairs).
    ignore_diag : bool, default=False
        Forbid i ↔ i pairs: the within-network baseline (best partner other than itself) when C
        compares a layer with itself. Needs n_a, n_b >= 2.

    Returns
    -------
    MatchResult

    Examples
    --------
    >>> r = bipartite_match([[0.1, 0.9], [0.8, 0.3]])
    >>> r.order.tolist(), round(r.total, 6)
    ([1, 0], 1.7)
    """
    C = _check_score_matrix(C)
    W = C
    if ignore_diag:
        if min(C.shape) < 2:
            raise ZooscopeInputError(f"ignore_diag=True needs at least 2 rows and columns; got {C.shape}.")
        W = C.copy()
        k = min(C.shape)
        W[np.arange(k), np.arange(k)] = -np.inf  # a forbidden edge, as the reference drops it
    rows, cols = linear_sum_assignment(W, maximize=True)
    values = C[rows, cols]
    return MatchResult(rows, cols, values, float(values.sum()), float(values.mean()))


@dataclass(frozen=True)
class SemiMatchResult:
    """Greedy ("semi") matching: each unit takes its best partner, repeats allowed.

    Attributes
    ----------
    argmax_rows : numpy.ndarray of shape (n_a,)
        Best B unit of each A unit.
    max_rows : numpy.ndarray of shape (n_a,)
        Its score; ``total`` and ``mean_max_rows`` are its sum and mean.
    argmax_cols, max_cols : numpy.ndarray of shape (n_b,)
        Best A unit of each B unit and its score; ``mean_max_cols`` their mean.
    n_distinct_targets : int
        Number of distinct B units chosen by A's units.
    overlap_ratio : float
        Share of A units whose greedy partner is their bipartite partner (rows without a bipartite
        partner, when n_a > n_b, count as different).
    """

    argmax_rows: np.ndarray
    max_rows: np.ndarray
    argmax_cols: np.ndarray
    max_cols: np.ndarray
    total: float
    mean_max_rows: float
    mean_max_cols: float
    n_distinct_targets: int
    overlap_ratio: float


def semi_match(C: npt.ArrayLike) -> SemiMatchResult:
    """Semi-matching (the notebook's "greedy matching"): row-wise argmax with repeats allowed.

    Its total is never below the bipartite total; the gap and ``overlap_ratio`` show how far a
    one-to-one alignment is from every unit's best partner.

    Parameters
    ----------
    C : array-like of shape (n_a, n_b)
        Scores, rows = A's units.

    Returns
    -------
    SemiMatchResult

    Examples
    --------
    >>> s = semi_match([[0.9, 0.8], [0.7, 0.1]])
    >>> s.argmax_rows.tolist(), s.n_distinct_targets, s.overlap_ratio
    ([0, 0], 1, 0.5)
    """
    C = _check_score_matrix(C)
    am_r, am_c = C.argmax(axis=1), C.argmax(axis=0)
    mx_r, mx_c = C[np.arange(C.shape[0]), am_r], C[am_c, np.arange(C.shape[1])]
    bip = bipartite_match(C)
    partner = np.full(C.shape[0], -1)
    partner[bip.rows] = bip.cols
    return SemiMatchResult(
        argmax_rows=am_r, max_rows=mx_r, argmax_cols=am_c, max_cols=mx_c, total=float(mx_r.sum()),
        mean_max_rows=float(mx_r.mean()), mean_max_cols=float(mx_c.mean()),
        n_distinct_targets=int(np.unique(am_r).size), overlap_ratio=float(np.mean(am_r == partner)),
    )


def cycles(order: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Cycle decomposition of a permutation, each cycle started at the smallest unseen index.

    Parameters
    ----------
    order : sequence of int of length n
        A permutation of 0..n-1 (e.g. ``MatchResult.order`` of a square C).

    Returns
    -------
    list of list of int
        The cycles i → order[i] → order[order[i]] → …

    Examples
    --------
    >>> cycles([1, 0, 2])
    [[0, 1], [2]]
    """
    order = np.asarray(order)
    n = order.size
    if order.ndim != 1 or not np.array_equal(np.sort(order), np.arange(n)):
        raise ZooscopeInputError("order must be a permutation of 0..n-1 (a square matching); got "
                                 f"{order.tolist()[:20]}{' …' if n > 20 else ''}.")
    seen = np.zeros(n, dtype=bool)
    out: list[list[int]] = []
    for start in range(n):
        if seen[start]:
            continue
        cyc, i = [], start
        while not seen[i]:
            seen[i] = True
            cyc.append(i)
            i = int(order[i])
        out.append(cyc)
    return out


def follow_loops(order: Sequence[int] | np.ndarray) -> tuple[list[int], list[int]]:
    """Return the reference's ``follow_loops``: units listed cycle by cycle, and the cycle lengths.

    Reordering both axes of a matched correlation matrix by this list puts each cycle in a block.

    Parameters
    ----------
    order : sequence of int of length n
        A permutation of 0..n-1.

    Returns
    -------
    tuple of (list of int, list of int)
        The concatenated cycles, and their lengths.

    Examples
    --------
    >>> follow_loops([2, 1, 0])
    ([0, 2, 1], [2, 1])
    """
    cyc = cycles(order)
    return [i for c in cyc for i in c], [len(c) for c in cyc]


@MEASURES.register(MeasureMeta(
    larger_is_more_similar=True, symmetric=True, bounds=(-1.0, 1.0), min_samples=3,
    invariances=Inv.PERMUTATION | Inv.TRANSLATION | Inv.ISOTROPIC_SCALE,
    not_invariant=Inv.ORTHOGONAL | Inv.INVERTIBLE_LINEAR,
    reference="Li, Yosinski, Clune, Lipson, Hopcroft 2016 (ICLR), bipartite matching",
))
def mean_matched_correlation(X: npt.ArrayLike, Y: npt.ArrayLike) -> float:
    """Mean correlation of the one-to-one unit matching between two layers.

    The bipartite matching of :func:`unit_correlations` (maximum total Pearson correlation), averaged
    over the min(p_x, p_y) matched pairs. Invariant to permuting units, shifting them and scaling each
    unit by a *positive* factor; not to rotations (units are the basis).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features_x)
        Activations of one layer (flatten conv maps to (B·H·W, C) with :func:`units_as_samples`).
    Y : array-like of shape (n_samples, n_features_y)
        Activations for the same inputs, same row order.

    Returns
    -------
    float
        In [-1, 1]; 1 when Y is a permuted, positively scaled, shifted copy of X. Larger is more similar.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(40, 5))
    >>> round(mean_matched_correlation(X, 3 * X[:, ::-1] + 1), 12)
    1.0
    """
    X, Y = check_paired(X, Y, min_samples=3)
    P = X.shape[1] + Y.shape[1]
    check_alloc((3, P, P), f"The {P}×{P} unit correlation matrix of mean_matched_correlation",
                "Match fewer units (a subset of channels), or use linear_cka, which needs no unit-by-unit matrix")
    return bipartite_match(unit_correlations(X, Y)).mean

