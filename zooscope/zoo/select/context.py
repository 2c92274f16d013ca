"""What `select` reads and ranks by.

`SelectContext`, the method table (from the measure registry) and the rank arithmetic shared by every stage
(`combine_ranks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.measures import MEASURES
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.embedrun import EmbedContext
from zooscope.zoo.indices import IndexReader
from zooscope.zoo.probes import ProbeContext
from zooscope.zoo.vectors import VectorRepo

__all__ = ["DEFAULT_COLUMNS", "DISTANCES", "FISHER_EXAMPLES", "METHODS", "SCORES", "STAGE1_ALL", "SelectContext",
           "chosen_methods", "combine_ranks", "rank01"]

#: select's transferability methods: method name -> the registered score (`zooscope.measures.TransferMeta`)
SCORES = {e.transfer.method: e for e in MEASURES.transfer_scores()}
METHODS = ("task2vec", *SCORES, "fisher", "history")
#: the distance methods and their table columns (smaller is better)
DISTANCES = {"task2vec": "task_distance", "fisher": "fisher_distance"}
FISHER_EXAMPLES = 300  # examples per (model, dataset) Fisher of the ``fisher`` method
#: the default ranker's members (chosen by the worst benchmark, `benchmarks/selection_robust.py`; select's docstring)
DEFAULT_COLUMNS = ("logme", "leep", "nce", "hscore")
STAGE1_ALL = 200  # at most this many fitting models: all are scored; above, the task2vec index proposes candidates


@dataclass(frozen=True)
class SelectContext:
    """What `select` reads.

    Catalog, stored vectors, indices, probe sets, and the embedding plan (used only to compute missing vectors
    in memory).
    """

    catalog: Catalog
    vectors: VectorRepo
    indices: IndexReader
    probes: ProbeContext
    embedding: EmbedContext


def chosen_methods(method: str | None, methods: Sequence[str] | None) -> list[str]:
    """Return the methods asked for (``[]``: the default ranker), each checked against `METHODS`."""
    if method is not None and methods is not None:
        raise ZooscopeInputError("Pass either method= (one) or methods= (several) to Zoo.select, not both.")
    if methods is not None:
        chosen = [check_choice(m, METHODS, "methods", "Zoo.select") for m in methods]
        if not chosen:
            raise ZooscopeInputError(f"Zoo.select needs at least one method among {', '.join(METHODS)}.")
        return chosen
    return [check_choice(method, METHODS, "method", "Zoo.select")] if method is not None else []


def smaller_is_better() -> tuple[str, ...]:
    """Columns ranked ascending: the distances, and any registered score where smaller is more transferable."""
    return (*DISTANCES.values(), *(c for c, e in SCORES.items() if not e.larger_is_more_similar))


def combine_ranks(table: pd.DataFrame, columns: Sequence[str], smaller_is_better: Sequence[str] = ()) -> np.ndarray:
    """Mean of per-column rank-normalised scores in [0, 1] (1 = best), ignoring NaN cells.

    Parameters
    ----------
    table : pandas.DataFrame
    columns : sequence of str
    smaller_is_better : sequence of str
        Columns where smaller values are better (distances).

    Returns
    -------
    ndarray of shape (len(table),)
        NaN for a row with no value in any column.
    """
    parts = []
    for c in columns:
        col = table[c].astype(float)
        col = -col if c in smaller_is_better else col
        r = col.rank(method="average")
        m = int(col.notna().sum())
        parts.append(((r - 1) / (m - 1)) if m > 1 else r.where(r.isna(), 1.0))
    if not parts:
        return np.full(len(table), np.nan)
    return pd.concat(parts, axis=1).mean(axis=1, skipna=True).to_numpy(dtype=float)


def rank01(col: pd.Series) -> pd.Series:
    """One column rank-normalised to [0, 1] (1 = largest), NaN kept."""
    return pd.Series(combine_ranks(col.to_frame("c"), ["c"]), index=col.index)


