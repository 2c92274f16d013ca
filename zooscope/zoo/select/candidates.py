"""Candidates of zoos above `STAGE1_ALL` models (stage 1), from what the zoo has already indexed.

1. **Task2Vec neighbours**: the task2vec index proposes the source datasets nearest the target (FAISS on the
   centred log-Fisher), their models are re-ranked by d_asym (`distances.task_distances`) and the ``pool`` nearest
   kept, plus every model whose training data is unknown (nothing says they are far);
2. **the history prior**: the ``pool`` models with the best mean z-scored fine-tuning outcome recorded on other
   datasets (`zooscope.zoo.history.history_prior`, uniform weights: the task-weighted prior needs scores);
3. **near-duplicate groups** from the stored CKA signatures (`zooscope.zoo.curate.similarity_matrix`): candidates
   with CKA ≥ `DUPLICATE_CKA` to another candidate form a group (connected components); one of them (the cheapest by
   the cost model, then the first by name) is scored, the others get its scores, the column ``group`` names it and
   ``why`` says so. Without CKA vectors there are no groups.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.select.context import STAGE1_ALL, SelectContext

__all__ = ["DUPLICATE_CKA", "duplicate_groups", "expand_groups", "history_candidates", "stage1"]

log = logging.getLogger(__name__)

DUPLICATE_CKA = 0.995


def stage1(ctx: SelectContext, dataset: str, fits: list[Any], chosen: list[str], alpha: float, pool: int,
           metric: str = "accuracy", history: bool = True) -> tuple[dict[str, float], list[Any]]:
    """(task distances, candidates).

    Above `STAGE1_ALL` models the union of the three sources (module docstring), in ``fits`` order; without
    task vectors every model stays (an error only when ``task2vec`` was asked for).
    """
    from zooscope.zoo.select.distances import task_distances

    large = len(fits) > STAGE1_ALL
    try:
        dist, unknown = task_distances(ctx, dataset, fits, alpha, pool if large else len(fits))
    except ZooscopeInputError:
        if "task2vec" in chosen:
            raise
        log.warning("no task vectors for %r: scoring all %d models", dataset, len(fits))
        return {}, fits
    if large:
        keep = set(sorted(dist, key=lambda n: (dist[n], n))[:pool]) | unknown
        if history:
            keep |= history_candidates(ctx, dataset, fits, pool, metric)
        fits = [m for m in fits if m.name in keep]
    return dist, fits


def history_candidates(ctx: SelectContext, dataset: str, fits: list[Any], pool: int, metric: str) -> set[str]:
    """Return the ``pool`` models with the best prior from results recorded on datasets other than ``dataset``."""
    from zooscope.zoo import history as hist

    recorded = hist.results(ctx.catalog)
    if not len(recorded):
        return set()
    prior, _ = hist.history_prior(recorded, dataset, [m.name for m in fits], metric)
    best = prior["prior"].dropna().sort_values(ascending=False, kind="stable")
    return set(best.index[:pool])


def duplicate_groups(ctx: SelectContext, fits: list[Any], threshold: float = DUPLICATE_CKA) -> dict[str, str]:
    """{member.

    The group's scored model} for the candidates in a near-duplicate group (members only, not the scored one);
    empty without CKA vectors.
    """
    from scipy.sparse.csgraph import connected_components

    from zooscope.zoo.curate import CurateContext, similarity_matrix
    from zooscope.zoo.select.budget import costs

    try:
        S = similarity_matrix(CurateContext(ctx.vectors, ctx.probes), "cka")
    except ZooscopeInputError:
        return {}
    names = [m.name for m in fits if m.name in S.index]
    if len(names) < 2:
        return {}
    A = np.nan_to_num(S.loc[names, names].to_numpy(), nan=-np.inf) >= float(threshold)
    _, labels = connected_components(A, directed=False)
    by_name = {m.name: m for m in fits}
    out: dict[str, str] = {}
    for lab in np.unique(labels):
        members = [names[i] for i in np.flatnonzero(labels == lab)]
        if len(members) < 2:
            continue
        c = costs([by_name[n] for n in members], ctx.probes.paths.cache)
        rep = min(zip(c, members, strict=True))[1]
        out.update({n: rep for n in members if n != rep})
    return out


def expand_groups(table: pd.DataFrame, fits: list[Any], groups: dict[str, str]) -> pd.DataFrame:
    """Return the scored table with one row per candidate again.

    Each member gets its group's scored row (the ``group`` column names the scored model for every model of a
    group), in ``fits`` order.
    """
    rows = table.set_index("model", drop=False)
    reps = set(groups.values())
    out = []
    for m in fits:
        src = groups.get(m.name, m.name)
        if src not in rows.index:  # skipped (non-finite features): its group goes with it
            continue
        r = rows.loc[src].copy()
        r["model"] = m.name
        r["group"] = src if (m.name in groups or m.name in reps) else ""
        out.append(r)
    return pd.DataFrame(out).reset_index(drop=True) if out else table.assign(group="")
