"""History as a model, fitted at query time on what is recorded (nothing is written).

"this model does well on targets like this one".

1. The results matrix ``R`` (models × past datasets) is read with the target's own column DROPPED FIRST
   (`history_matrix`): nothing recorded on the target it ranks can reach the ranking (tests/zoo/
   test_select_history_model.py fails if it does).
2. Similarity of the target to each past dataset (`combine_similarities`): the mean of the target-side score
   profile's (max(0, Spearman) of the default score of the models on the target and on that dataset; 1 when it
   cannot be computed) and Task2Vec's (1 − d_sym of the two task vectors through the zoo's probe network; left
   out when a task vector cannot be computed).
3. Weighted prior: each model's z-scored outcome on the past datasets, weighted by that similarity
   (`zooscope.zoo.history.history_prior`).
4. Low-rank interaction: the target-side fused score (z-scored) is projected onto the span of the rank-r model
   factors of ``R`` (`zooscope.zoo.history_model.lowrank_factors`, ridge), so a model that is good on past
   datasets whose results pattern matches the target's score pattern is lifted. The projection is shrunk toward the
   weighted prior with few past datasets: history = λ·z(projection) + (1 − λ)·z(prior), λ = n/(n + `SHRINK_N`).
5. `finetune_top=k` (`zooscope.zoo.select.refine`) re-estimates every model from ``R`` plus k measured outcomes
   (`zooscope.zoo.history_model.impute_column`, OBOE-style, shrunk toward the prior).

Not (yet) in the model: each model's own source-task distance to the target (issue 20 item 3); the Task2Vec
part of the similarity is not measured on the benchmarks (the offline evaluation has no task vectors).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo import history as hist
from zooscope.zoo.select.context import DEFAULT_COLUMNS, SelectContext, combine_ranks
from zooscope.zoo.select.scores import default_table, score_table

__all__ = ["RANK", "SHRINK_N", "combine_similarities", "history_matrix", "lowrank_history", "prior"]

#: rank of the results matrix's model factors
RANK = 2
#: λ = n_past / (n_past + SHRINK_N): the weight of the low-rank projection against the weighted prior
SHRINK_N = 3

log = logging.getLogger(__name__)


def prior(ctx: SelectContext, rec: dict[str, Any], index: pd.Index, fits: list[dict[str, Any]],
          all_models: list[dict[str, Any]], base: pd.Series | None, use: bool, metric: str, max_examples: int,
          seed: int) -> tuple[pd.DataFrame, dict[str, float], pd.Series]:
    """(prior table, past-dataset weights, results recorded on the target) for the models of ``index``.

    ``base`` is the default ranker's target-side score (None: computed here when a prior is needed); ``use``
    False skips the prior (no history asked for); results on the target itself are returned apart, never used.
    """
    dataset = rec.name
    recorded = hist.results(ctx.catalog)
    recorded = recorded[recorded["metric"] == metric]
    own = recorded[recorded["dataset"] == dataset].set_index("model")["value"]
    table = pd.DataFrame({"prior": np.nan, "n_past": 0}, index=index)
    weights: dict[str, float] = {}
    past = sorted(set(recorded.loc[recorded["dataset"] != dataset, "dataset"]))
    if use and past:
        if base is None:
            base = pd.Series(combine_ranks(*default_table(ctx, rec, fits, max_examples, seed)), index=index)
        sims = combine_similarities(_similarities(ctx, base, past, all_models, max_examples, seed),
                                    _task2vec_similarities(ctx, dataset, past))
        table, weights = hist.history_prior(recorded, dataset, list(index), metric, sims)
        table["prior"] = lowrank_history(history_matrix(recorded, dataset, list(index), metric), base,
                                         table["prior"])
    return table, weights, own


def combine_similarities(profile: dict[str, float], task2vec: dict[str, float]) -> dict[str, float]:
    """Each past dataset's weight.

    The mean of its score-profile and its Task2Vec similarity to the target (the one available when the other
    is missing).
    """
    return {p: float(np.mean([v for v in (w, task2vec.get(p)) if v is not None])) for p, w in profile.items()}


def _task2vec_similarities(ctx: SelectContext, target: str, past: Sequence[str]) -> dict[str, float]:
    """1 − d_sym(Task2Vec(past), Task2Vec(target)) through the zoo's probe network, clipped to [0, 1].

    For each past dataset with a task vector (computed in memory when not stored); {} when the target has
    none.
    """
    from zooscope.embed.task2vec import task_distance
    from zooscope.zoo.embedrun import compute_missing

    try:
        tvec = compute_missing(ctx.embedding, "task2vec", target)[0]
    except ZooscopeInputError as e:
        log.warning("no task vector for %r, history weights from score profiles only: %s", target, e)
        return {}
    out = {}
    for p in past:
        try:
            d = float(task_distance(compute_missing(ctx.embedding, "task2vec", p)[0], tvec, kind="sym"))
            out[p] = min(max(1.0 - d, 0.0), 1.0)
        except ZooscopeInputError as e:
            log.warning("no task vector for past dataset %r: %s", p, e)
    return out


def history_matrix(recorded: pd.DataFrame, target: str, models: Sequence[str], metric: str = "accuracy"
                   ) -> pd.DataFrame:
    """Return the results matrix (``models`` × past datasets.

    NaN where not recorded) WITHOUT ``target``'s column: its rows are dropped before anything else is read.
    """
    past = recorded[(recorded["dataset"] != target) & (recorded["metric"] == metric)]
    R = past.pivot_table(index="model", columns="dataset", values="value", aggfunc="last")
    return R.reindex(index=pd.Index(models), columns=sorted(R.columns)).astype(float)


def _z(s: pd.Series) -> pd.Series:
    sd = float(s.std(ddof=0))
    return (s - s.mean()) / sd if sd > 0 else s * 0.0


def lowrank_history(R: pd.DataFrame, target_score: pd.Series, prior: pd.Series, rank: int = RANK) -> pd.Series:
    """λ·z(projection of the target-side score on R's model factors) + (1 − λ)·z(prior), λ = n/(n + `SHRINK_N`).

    ``R``: `history_matrix` (no target column); models without history keep NaN; with fewer than 2 usable past
    datasets, or fewer than rank + 2 models with history and a score, the prior is returned unchanged.
    """
    from sklearn.linear_model import Ridge

    from zooscope.zoo.history_model import lowrank_factors

    have = R.notna().any(axis=1)
    cols = [c for c in R.columns if R[c].notna().sum() >= 2 and float(R[c].std(ddof=0)) > 0]
    rank = min(rank, len(cols))
    both = have & target_score.reindex(R.index).notna()
    if len(cols) < 2 or int(both.sum()) < rank + 2:
        return prior
    F = pd.DataFrame(lowrank_factors(R.loc[have, cols].to_numpy(), rank), index=R.index[have])
    y = _z(target_score.reindex(R.index)[both])
    proj = pd.Series(Ridge(alpha=1.0).fit(F.loc[y.index], y).predict(F), index=F.index)
    lam = len(cols) / (len(cols) + SHRINK_N)
    out = lam * _z(proj) + (1 - lam) * _z(prior.reindex(F.index).fillna(0.0))
    return out.reindex(prior.index)


def _similarities(ctx: SelectContext, target_score: pd.Series, past: Sequence[str], models: list[dict[str, Any]],
                  max_examples: int, seed: int) -> dict[str, float]:
    """Task similarity of each past dataset to the target.

    Max(0, Spearman correlation over the models of the default score on both); 1.0 when it cannot be computed.
    """
    from scipy.stats import spearmanr

    out = {}
    for p in past:
        try:
            rec = ctx.catalog.get_dataset(p)
            fit = [m for m in models if rec.input_shape and tuple(m.input_shape or ()) ==
                   tuple(rec.input_shape)]
            t, _ = score_table(ctx, rec, fit, DEFAULT_COLUMNS, max_examples, seed)
            other = pd.Series(combine_ranks(t, DEFAULT_COLUMNS), index=t["model"])
            both = pd.concat([target_score, other], axis=1, join="inner").dropna()
            with warnings.catch_warnings():  # a constant profile has no correlation: weight 1 below
                warnings.simplefilter("ignore")
                r = spearmanr(both.iloc[:, 0], both.iloc[:, 1])[0] if len(both) >= 3 else np.nan
            out[p] = max(float(r), 0.0) if np.isfinite(r) else 1.0
        except ZooscopeInputError as e:
            log.warning("no task similarity for past dataset %r: %s", p, e)
            out[p] = 1.0
    return out
