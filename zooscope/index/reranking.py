"""The generic exact re-rank: re-score approximate candidates with any exact score and sort them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, _to_numpy

__all__ = ["rerank"]


def rerank(
    query: npt.ArrayLike, candidate_ids: Iterable[int] | npt.ArrayLike,
    fetch: Callable[[list[int]], npt.ArrayLike], score: Callable[[np.ndarray, np.ndarray], npt.ArrayLike],
    *, k: int | None = None, larger_is_better: bool = True,
) -> list[tuple[int, float]]:
    """Re-score ANN candidates exactly and sort them.

    Parameters
    ----------
    query : array-like
        Whatever ``score`` takes as its first argument (e.g. a full-size vector of shape (dim,)).
    candidate_ids : iterable of int
        Ids from `VectorIndex.search`; -1 and repeats are dropped.
    fetch : callable
        ``fetch(ids) -> array of shape (m, ...)``: the exact vectors of ``ids`` in that order (e.g. from the
        vector store).
    score : callable
        ``score(query, candidates) -> array of shape (m,)``: the exact score of each candidate.
    k : int, optional
        Keep the best ``k``.
    larger_is_better : bool, default=True
        False for distances.

    Returns
    -------
    list of (int, float)
        (id, exact score), best first; ties by id.
    """
    seen: dict[int, None] = {}
    for i in np.asarray(_to_numpy(candidate_ids)).reshape(-1).tolist():
        if int(i) >= 0:
            seen.setdefault(int(i), None)
    ids: Sequence[int] = list(seen)
    if not ids:
        return []
    cands = np.asarray(_to_numpy(fetch(list(ids))))
    if cands.shape[0] != len(ids):
        raise ZooscopeInputError(f"fetch returned {cands.shape[0]} rows for {len(ids)} ids; return one per id.")
    scores = np.asarray(_to_numpy(score(np.asarray(_to_numpy(query)), cands)), dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(ids):
        raise ZooscopeInputError(f"score returned {scores.shape[0]} values for {len(ids)} candidates.")
    sign = -1.0 if larger_is_better else 1.0
    order = sorted(range(len(ids)), key=lambda j: (sign * scores[j], ids[j]))
    out = [(int(ids[j]), float(scores[j])) for j in order]
    return out if k is None else out[: int(k)]
