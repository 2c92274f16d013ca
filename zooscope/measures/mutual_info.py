"""Histogram mutual information between units (Li, Yosinski et al. 2016, ``experiments/estimate_mi.py``).

MI is in **nats** (natural log) throughout. The default binning and bias correction are the reference's,
which reproduce its numbers (oracle seed D) to 1e-12:

* ``binning="percentile"``: per unit, z = fraction of values < 1e-6 (ReLU zeros); edges are the
  percentiles [0] + linspace(100.1·z, 100, bins) of the unit's values, and the first edge moves down
  by 0.01, so the first of the ``bins`` bins holds the zero mass and the others are equally filled.
* ``bias="reference"``: MI − Bx·By / (2 n ln 2). This uses the total cell count (not Miller–Madow's
  (Bx−1)(By−1)) and divides by ln 2 although MI is in nats, i.e. it mixes units; we keep it as the
  default because it is what the paper's code computed. ``bias="miller_madow"`` subtracts the textbook
  (Bx−1)(By−1)/(2n) nats, ``bias="none"`` returns the plug-in estimate.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, check_choice, check_finite, check_paired

__all__ = ["mi_matrix", "mutual_information", "percentile_bins"]

Binning = Literal["percentile", "uniform"]
Bias = Literal["reference", "miller_madow", "none"]


def percentile_bins(v: npt.ArrayLike, bins: int = 10) -> np.ndarray:
    """Bin edges of the reference's ``percentile_bins`` for one unit's values.

    Parameters
    ----------
    v : array-like of shape (n_samples,)
        Values of one unit.
    bins : int, default=10
        Number of bins (``bins + 1`` edges); the first holds values < 1e-6.

    Returns
    -------
    numpy.ndarray of shape (bins + 1,)
        Non-decreasing edges (repeats are possible, e.g. when no value is zero). Percentiles above 100
        (a unit that is zero on more than 99.9% of inputs) are clipped to 100; the reference raised.

    Examples
    --------
    >>> percentile_bins(np.r_[np.zeros(5), np.arange(1.0, 6.0)], bins=3).round(3).tolist()
    [-0.01, 0.504, 2.752, 5.0]
    """
    v = np.asarray(v, dtype=np.float64).ravel()
    z = float(np.sum(v < 1e-6)) / v.shape[0]
    pct = np.minimum([0.0, *np.linspace(z * 100.1, 100, bins)], 100.0)
    edges = np.percentile(v, pct)
    edges[0] -= 0.01
    return edges


def _uniform_edges(v: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:  # numpy's rule for a constant sample
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _bin_index(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value exactly as ``np.histogram2d``: right-closed last bin, -1 outside."""
    idx = np.searchsorted(edges, v, side="right")
    idx[v == edges[-1]] -= 1
    idx -= 1
    idx[(idx < 0) | (idx >= edges.size - 1)] = -1
    return idx


def _mi_from_counts(h: np.ndarray, bias: str) -> float:
    n = h.sum()
    p = h / n
    pi, pj = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])))  # Σ p_ij ln(p_ij / p_i p_j), nats
    bx, by = h.shape
    if bias == "reference":
        mi -= bx * by / (2 * n * math.log(2))
    elif bias == "miller_madow":
        mi -= (bx - 1) * (by - 1) / (2 * n)
    return mi


def _check_opts(bins: int, binning: str, bias: str, owner: str) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ZooscopeInputError(f"'bins' of {owner} must be an int >= 2; got {bins!r}.")
    check_choice(binning, ("percentile", "uniform"), "binning", owner)
    check_choice(bias, ("reference", "miller_madow", "none"), "bias", owner)


def _codes(A: np.ndarray, bins: int, binning: str) -> np.ndarray:
    """Bin index of every value, unit by unit: shape (n_samples, n_units)."""
    out = np.empty(A.shape, dtype=np.int64)
    for j in range(A.shape[1]):
        v = A[:, j]
        edges = percentile_bins(v, bins) if binning == "percentile" else _uniform_edges(v, bins)
        out[:, j] = _bin_index(v, edges)
    return out


def _pair_counts(cx: np.ndarray, cy: np.ndarray, bins: int) -> np.ndarray:
    ok = (cx >= 0) & (cy >= 0)
    return np.bincount(cx[ok] * bins + cy[ok], minlength=bins * bins).reshape(bins, bins).astype(np.float64)


def mutual_information(a: npt.ArrayLike, b: npt.ArrayLike, *, bins: int = 10,
                       binning: Binning = "percentile", bias: Bias = "reference") -> float:
    """Histogram estimate of the mutual information between two units, in nats.

    Parameters
    ----------
    a, b : array-like of shape (n_samples,)
        Values of one unit of each layer over the same inputs (conv maps: every position a sample).
    bins : int, default=10
        Bins per axis.
    binning : {"percentile", "uniform"}, default="percentile"
        The reference's zero-aware percentile bins, or ``np.histogram2d(a, b, bins)``'s equal widths.
    bias : {"reference", "miller_madow", "none"}, default="reference"
        Bias correction subtracted from the plug-in estimate (see the module docstring). The default
        reproduces the reference; it can make the estimate negative for independent units.

    Returns
    -------
    float
        MI in nats; larger is more dependent. About 0 for independent units. For b = f(a) with f
        strictly increasing, percentile bins of a and b coincide, so MI is the entropy of a's binning:
        ln(bins) for equally filled bins, but ≈ ln(bins − 1) for a unit without zeros (the first,
        zero-mass bin then holds only the minimum).

    Examples
    --------
    >>> x = np.random.default_rng(0).random(4000)
    >>> round(float(mutual_information(x, 3 * x + 1, binning="uniform", bias="none") / np.log(10)), 2)
    1.0
    >>> round(float(mutual_information(x, np.exp(x), bias="none") / np.log(9)), 2)
    1.0
    """
    a, b = check_paired(np.reshape(np.asarray(a, dtype=np.float64), (-1, 1)),
                        np.reshape(np.asarray(b, dtype=np.float64), (-1, 1)), names=("a", "b"))
    _check_opts(bins, binning, bias, "mutual_information")
    ca, cb = _codes(a, bins, binning), _codes(b, bins, binning)
    return _mi_from_counts(_pair_counts(ca[:, 0], cb[:, 0], bins), bias)


def mi_matrix(A: npt.ArrayLike, B: npt.ArrayLike, *, bins: int = 10, binning: Binning = "percentile",
              bias: Bias = "reference") -> np.ndarray:
    """Mutual information (nats) of every unit of A with every unit of B.

    Each unit is binned once; every pair then costs one ``bincount`` over the samples.

    Parameters
    ----------
    A : array-like of shape (n_samples, n_a)
        Units of layer A (flatten conv maps with :func:`~zooscope.measures.units_as_samples`).
    B : array-like of shape (n_samples, n_b)
        Units of layer B for the same inputs.
    bins, binning, bias
        As in :func:`mutual_information`.

    Returns
    -------
    numpy.ndarray of shape (n_a, n_b)
        MI[i, j] between A unit i and B unit j; feed it to ``bipartite_match`` for MI matching.
    """
    A, B = check_paired(A, B, names=("A", "B"))
    check_finite(A, "A")
    _check_opts(bins, binning, bias, "mi_matrix")
    ca, cb = _codes(A, bins, binning), _codes(B, bins, binning)
    M = np.empty((A.shape[1], B.shape[1]))
    for i in range(A.shape[1]):
        for j in range(B.shape[1]):
            M[i, j] = _mi_from_counts(_pair_counts(ca[:, i], cb[:, j], bins), bias)
    return M
