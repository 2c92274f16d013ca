"""History in the ranking: each model's prior from fine-tuning results recorded on OTHER datasets
(`zooscope.zoo.history.history_prior`), each past dataset weighted by its task similarity to the target."""

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

__all__ = ["prior"]

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
        sims = _similarities(ctx, base, past, all_models, max_examples, seed)
        table, weights = hist.history_prior(recorded, dataset, list(index), metric, sims)
    return table, weights, own


def _similarities(ctx: SelectContext, target_score: pd.Series, past: Sequence[str], models: list[dict[str, Any]],
                  max_examples: int, seed: int) -> dict[str, float]:
    """Task similarity of each past dataset to the target: max(0, Spearman correlation over the models of the
    default score on both); 1.0 when it cannot be computed."""
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
