"""Fine-tuning history as a model: a per-model prior and an OBOE-style low-rank imputation.

A zoo's history is a results matrix ``R`` (models × past datasets, NaN where a model was never fine-tuned on a
dataset). These are plain functions on arrays, fitted on what is passed in and nothing else: a caller that ranks a
target passes a history *without* that target's column, so nothing recorded on the target can leak in.

- `zscore_columns`: each past dataset's column z-scored over the models that have it (NaN kept).
- `prior_scores`: each model's mean z-scored outcome over the past datasets (the "model prior"; NaN for a
  model with no history).
- `lowrank_factors`: the model-side factors of ``R``: the z-scored matrix is completed by iterative truncated
  SVD (missing cells start at 0, the column mean, and are replaced by the rank-``rank`` reconstruction until they
  stop moving; Mazumder et al.'s hard-impute), and its top ``rank`` left singular vectors scaled by the singular
  values are returned (models × rank).
- `impute_column`: OBOE (Yang et al., KDD 2019): measure a few models on the new dataset, regress the measured
  outcomes on those models' factors (``sklearn.linear_model.Ridge`` with an intercept: the new column is not
  z-scored), predict every model. The measured models keep their measured values.

Example
-------
>>> import numpy as np
>>> R = np.outer([1.0, 2.0, 3.0, 4.0], [1.0, 0.5, 2.0])
>>> prior_scores(R).round(2).tolist()
[-1.34, -0.45, 0.45, 1.34]
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping

import numpy as np

__all__ = ["impute_column", "lowrank_factors", "prior_scores", "zscore_columns"]


def zscore_columns(R: np.ndarray) -> np.ndarray:
    """Each column z-scored over its finite entries (population std); a constant column becomes 0; NaN kept."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2:
        raise ValueError(f"a results matrix is 2-D (models × datasets); got shape {R.shape}")
    with np.errstate(invalid="ignore"), _quiet():
        mean = np.nanmean(R, axis=0)
        sd = np.nanstd(R, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.inf)  # constant or empty column: z = 0 where observed
    return (R - mean) / sd


def prior_scores(R: np.ndarray) -> np.ndarray:
    """Each model's mean z-scored outcome over the datasets it has (NaN for a model with none)."""
    Z = zscore_columns(R)
    with _quiet():
        return np.nanmean(Z, axis=1)


def lowrank_factors(R: np.ndarray, rank: int = 2, *, iters: int = 100, tol: float = 1e-6) -> np.ndarray:
    """Model factors (models × rank) of the z-scored results matrix, completed by iterative truncated SVD."""
    Z = zscore_columns(R)
    n, d = Z.shape
    rank = int(rank)
    if not 1 <= rank <= min(n, d):
        raise ValueError(f"rank must be in 1..{min(n, d)} for a {n} × {d} history; got {rank}")
    miss = ~np.isfinite(Z)
    X = np.where(miss, 0.0, Z)
    for _ in range(iters if miss.any() else 1):
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        low = (U[:, :rank] * s[:rank]) @ Vt[:rank]
        step = np.abs(low[miss] - X[miss]).max() if miss.any() else 0.0
        X[miss] = low[miss]
        if step < tol:
            break
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    return U[:, :rank] * s[:rank]


def impute_column(R: np.ndarray, measured: Mapping[int, float], rank: int = 2, *, alpha: float = 1e-3,
                  factors: np.ndarray | None = None, toward_prior: bool = False) -> np.ndarray:
    """Every model's predicted outcome on a new dataset from a few measured ones (OBOE-style).

    Parameters
    ----------
    R : array (models, past datasets)
        The history, NaN where missing; must not contain the new dataset.
    measured : {model row: outcome}
        The models fine-tuned on the new dataset and their outcomes (at least 2).
    rank : int, default=2
    alpha : float, default=1e-3
        Ridge penalty on the factor weights (the intercept is not penalised).
    factors : array (models, rank), optional
        Precomputed `lowrank_factors(R, rank)`.
    toward_prior : bool, default=False
        Shrink toward the prior instead of toward a constant: the new column is modelled as
        ``c + σ·F(w0 + δ)`` where ``F w0`` is the least-squares fit of `prior_scores` in the factor basis, ``σ``
        the median standard deviation of the history's columns, and the ridge penalty acts on ``δ``. A large
        ``alpha`` then returns the prior's order (not ties), a small one the plain projection. Few measurements
        of near-equal models (the prior's top k) cannot flip the order's sign this way.

    Returns
    -------
    ndarray (models,)
        Predicted outcomes; measured rows hold their measured values.
    """
    from sklearn.linear_model import Ridge

    if len(measured) < 2:
        raise ValueError("impute_column needs at least 2 measured models")
    F = lowrank_factors(R, rank) if factors is None else np.asarray(factors, dtype=float)
    rows = np.fromiter(measured.keys(), dtype=int)
    y = np.fromiter(measured.values(), dtype=float)
    if not toward_prior:
        pred = Ridge(alpha=alpha, fit_intercept=True).fit(F[rows], y).predict(F)
    else:
        prior = prior_scores(R)
        ok = np.isfinite(prior)
        w0, *_ = np.linalg.lstsq(np.c_[np.ones(ok.sum()), F[ok]], prior[ok], rcond=None)
        base = F @ w0[1:]
        with _quiet():
            sigma = float(np.nanmedian(np.nanstd(np.asarray(R, dtype=float), axis=0)))
        sigma = sigma if np.isfinite(sigma) and sigma > 0 else 1.0
        reg = Ridge(alpha=alpha, fit_intercept=True).fit(F[rows], y / sigma - base[rows])
        pred = sigma * (base + reg.predict(F))
    pred[rows] = y
    return pred


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN-slice RuntimeWarnings (an empty row/column is a valid NaN answer here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
