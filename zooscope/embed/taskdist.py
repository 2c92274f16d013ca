"""Task2Vec distances (Achille et al. 2019): d_sym, d_asym, pairwise matrices, and the FAISS index vector.

The `TaskEmbedding` container lives here too, so distances need no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, check_choice

__all__ = ["TaskEmbedding", "cdist", "index_vector", "pdist", "task_distance"]


@dataclass
class TaskEmbedding:
    """A Task2Vec vector.

    Attributes
    ----------
    hessian : np.ndarray of shape (dim,)
        Per-filter diagonal Fisher (float64, ≥ 0).
    scale : np.ndarray of shape (dim,)
        Ones for Monte Carlo; ``exp(-log λ²)`` per layer for the variational method.
    layout : list of (module_name, start, stop)
        Which slice of the vector belongs to which module.
    meta : dict
        Parameters, estimator used, timings, head training error, number of examples.
    """

    hessian: np.ndarray
    scale: np.ndarray
    layout: list[tuple[str, int, int]]
    meta: dict[str, Any] = field(default_factory=dict)


def index_vector(hessian: npt.ArrayLike) -> np.ndarray:
    """Return the vector to put in a FAISS index for candidate generation: ``log F`` minus its mean (float32).

    On unit-normalised copies the inner product is the correlation of the log-Fisher vectors: scale-free
    and not dominated by the few largest entries, as the raw Fisher's cosine is.  Zero entries are floored
    at 1e-12 × max F.  It drops the vector's overall scale, which d_sym does see (d_sym(a, c·b) ≠ d_sym(a, b)),
    so re-rank candidates with `task_distance` on the stored Fisher vectors, never on these.

    Parameters
    ----------
    hessian : array-like of shape (dim,) or (n, dim)

    Returns
    -------
    np.ndarray of the same shape, float32
    """
    h = np.asarray(hessian, dtype=np.float64)
    floor = 1e-12 * np.maximum(h.max(axis=-1, keepdims=True, initial=0.0), 1e-300)
    v = np.log(h + floor)
    return (v - v.mean(axis=-1, keepdims=True)).astype(np.float32)


def _fisher_array(a: Any, name: str) -> np.ndarray:
    h = np.asarray(a.hessian if isinstance(a, TaskEmbedding) else a, dtype=np.float64).reshape(-1)
    if h.size == 0 or not np.isfinite(h).all():
        raise ZooscopeInputError(f"{name} must be a finite, non-empty Task2Vec vector.")
    if (h < 0).any():
        raise ZooscopeInputError(f"{name} has negative entries, so it is not a Fisher vector (an index_vector?); "
                                 "pass the stored Fisher (TaskEmbedding.hessian or the task2vec kind's vector).")
    return h


def _dsym(a: np.ndarray, b: np.ndarray, eps: float) -> float:
    # Achille et al.: cosine distance of F_a/(F_a+F_b) and F_b/(F_a+F_b), element-wise; eps as the reference
    den = a + b + eps
    safe = np.where(den > 0, den, 1.0)  # eps = 0: an entry that is 0 in both carries no information -> 0
    u, v = a / safe, b / safe
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 1.0
    return float(1.0 - (u @ v) / (nu * nv))


def task_distance(a: TaskEmbedding | npt.ArrayLike, b: TaskEmbedding | npt.ArrayLike,
                  kind: Literal["sym", "asym"] = "sym", alpha: float = 0.15,
                  trivial: TaskEmbedding | npt.ArrayLike | None = None, eps: float = 1e-8) -> float:
    """Task2Vec distance between two task embeddings (smaller = more similar tasks).

    ``d_sym(a, b) = d_cos(F_a / (F_a + F_b + eps), F_b / (F_a + F_b + eps))`` in [0, 1], symmetric.
    ``d_asym(a → b) = d_sym(a, b) − alpha · d_sym(a, trivial)``: ``a`` is the SOURCE (the candidate expert's
    task), ``b`` the target; the second term favours complex sources (paper: alpha = 0.15 for ResNet-34).
    Not a metric; can be negative.

    Parameters
    ----------
    a, b : TaskEmbedding or array of shape (dim,)
        Fisher vectors (``hessian``, or the ``task2vec`` embedding kind's stored vector).
    kind : {"sym", "asym"}, default="sym"
    alpha : float, default=0.15
    trivial : TaskEmbedding or array of shape (dim,), optional
        Required for "asym": the trivial task's embedding, e.g. ``Task2Vec(probe).embed_trivial(x)``.
    eps : float, default=1e-8
        Added to the denominator, as the reference (``task_similarity.cosine``); use 0 for the exact formula.
        It only matters for vectors on the reference's (tiny) scale.

    Returns
    -------
    float

    Examples
    --------
    >>> task_distance([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], eps=0)  # proportional Fishers: same task
    0.0
    """
    check_choice(kind, ("sym", "asym"), "kind", "task_distance")
    if not eps >= 0:
        raise ZooscopeInputError(f"'eps' of task_distance must be a float >= 0; got {eps!r}.")
    fa, fb = _fisher_array(a, "a"), _fisher_array(b, "b")
    if fa.shape != fb.shape:
        raise ZooscopeInputError(f"a and b have dims {fa.size} and {fb.size}: embed both with the same probe "
                                 "and the same skip_layers/include_bn.")
    d = _dsym(fa, fb, eps)
    if kind == "asym":
        if trivial is None:
            raise ZooscopeInputError("kind='asym' needs trivial=: the trivial task's embedding, e.g. "
                                     "Task2Vec(probe).embed_trivial(x_probe).")
        ft = _fisher_array(trivial, "trivial")
        if ft.shape != fa.shape:
            raise ZooscopeInputError(f"trivial has dim {ft.size}, but a has {fa.size}.")
        d -= float(alpha) * _dsym(fa, ft, eps)
    return d


def cdist(sources: Sequence[Any], targets: Sequence[Any], **kwargs: Any) -> np.ndarray:
    """Distances ``D[i, j] = task_distance(sources[i], targets[j], **kwargs)``, shape (n_sources, n_targets)."""
    return np.array([[task_distance(a, b, **kwargs) for b in targets] for a in sources], dtype=np.float64)


def pdist(embeddings: Sequence[Any], **kwargs: Any) -> np.ndarray:
    """All pairwise `task_distance` values, shape (n, n); zero diagonal (exactly, for "sym")."""
    D = cdist(embeddings, embeddings, **kwargs)
    if kwargs.get("kind", "sym") == "sym":
        np.fill_diagonal(D, 0.0)
    return D
