"""Stratified, seeded sampling.

The one helper (scikit-learn's ``resample(stratify=…)``) behind probe subsets, ``?n=`` dataset options, fixed
train/test splits, training splits and Task2Vec's ``max_samples``.

Each class gets its proportional share (scikit-learn's ``_approximate_mode``: floors, then the largest
remainders), the examples within a class are a seeded random choice, and the result comes in a seeded random
order (minibatches mix classes). Same (labels, n, seed) -> same indices.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError

__all__ = ["stratified_sample", "stratified_split"]


def stratified_sample(y: npt.ArrayLike | None, n: int, seed: int = 0, *, size: int | None = None) -> np.ndarray:
    """Return indices of a stratified (by ``y``), seeded sample of ``n`` examples without replacement.

    Parameters
    ----------
    y : array-like of shape (N,), or None
        Class labels; None (or ``size=N`` without labels) gives a uniform random sample.
    n : int
        1 <= n <= N.
    seed : int, default=0
    size : int, optional
        N when ``y`` is None.

    Returns
    -------
    ndarray of int64 of shape (n,)
        Indices into the N examples, in a seeded random order.

    Examples
    --------
    >>> y = np.repeat([0, 1, 2], [60, 30, 10])
    >>> np.bincount(y[stratified_sample(y, 20, seed=0)]).tolist()
    [12, 6, 2]
    """
    from sklearn.utils import resample

    N = int(size) if y is None else len(np.asarray(y))
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= N:
        raise ZooscopeInputError(f"A stratified sample needs 1 <= n <= {N} (the dataset size); got n={n!r}.")
    idx = resample(np.arange(N), replace=False, n_samples=int(n), random_state=int(seed),
                   stratify=None if y is None else np.asarray(y))
    return np.asarray(idx, dtype=np.int64)


def stratified_split(y: npt.ArrayLike, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of a stratified, seeded split with ``test_fraction`` of the examples held out.

    Both sorted; the test part is `stratified_sample` of ``round(test_fraction * N)`` (at least 1) examples.
    """
    y = np.asarray(y)
    if not 0 < float(test_fraction) < 1:
        raise ZooscopeInputError(f"'test_fraction' must be in (0, 1); got {test_fraction!r}.")
    test = np.sort(stratified_sample(y, max(1, round(float(test_fraction) * len(y))), seed))
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), test
