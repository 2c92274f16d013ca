"""Fine-tuning outcomes a zoo learns from: ``record_result`` / ``results`` / ``remove_result``, and the prior.

A result is (model, dataset, metric, value), larger = better, one per triple (recording again overwrites). The
``results`` table is additive: a catalog written before it existed has none; it is created (``checkfirst``) on the
first `record_result`, and reads of a catalog without it see no results.

The prior (`history_prior`) used by `zooscope.zoo.select`: for a target t, every dataset p ≠ t with recorded
results of the chosen metric contributes each model's z-scored outcome on p (z over the models recorded on p; a
dataset with fewer than two models, or all equal outcomes, says nothing and is skipped). Each past dataset is
weighted by its task similarity to t (a caller-supplied weight in [0, 1]; 1 when unknown; all 1 when every
weight is 0) and a model's prior is
the weighted mean of its z-scores over the past datasets it was recorded on. Results on t itself are NEVER read
here: the function drops them before anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog, SubjectGoneError
from zooscope.zoo.catalog.engine import _now
from zooscope.zoo.catalog.schema import datasets_table, models_table, results_table

__all__ = ["COLUMNS", "history_prior", "record_result", "remove_result", "results"]

COLUMNS = ["model", "dataset", "metric", "value", "created"]


def _has_table(catalog: Catalog) -> bool:
    with catalog.engine.connect() as conn:
        return sa.inspect(conn).has_table(results_table.name)


def _check_names(catalog: Catalog, model: str, dataset: str, metric: str) -> None:
    catalog.get_model(model)  # raises a clear unknown-name error
    catalog.get_dataset(dataset)
    if not isinstance(metric, str) or not metric.strip():
        raise ZooscopeInputError(f"metric must be a non-empty name such as 'accuracy'; got {metric!r}.")


def record_result(catalog: Catalog, model: str, dataset: str, value: float, metric: str = "accuracy") -> None:
    """Store how fine-tuning ``model`` on ``dataset`` went (``value``: larger is better).

    Overwrites a previous value for the same (model, dataset, metric).
    """
    _check_names(catalog, model, dataset, metric)
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer) \
            or not math.isfinite(float(value)):
        raise ZooscopeInputError(f"A result value must be a finite number; got {value!r}.")
    t = results_table
    with catalog._write() as conn:
        t.create(conn, checkfirst=True)
        for table, what, name in ((models_table, "model", model), (datasets_table, "dataset", dataset)):
            if catalog._lock_named(conn, table, name) is None:  # removed since the check: never a ghost result
                raise SubjectGoneError(f"The {what} {name!r} was removed meanwhile; the result was not recorded.")
        where = (t.c.model == model, t.c.dataset == dataset, t.c.metric == metric)
        if conn.execute(sa.select(t.c.id).where(*where)).first() is None:
            conn.execute(t.insert().values(model=model, dataset=dataset, metric=metric, value=float(value),
                                           created=_now()))
        else:
            conn.execute(t.update().where(*where).values(value=float(value), created=_now()))


def remove_result(catalog: Catalog, model: str, dataset: str, metric: str = "accuracy") -> None:
    """Delete a recorded result; an error naming the recorded ones when there is none."""
    t = results_table
    if _has_table(catalog):
        with catalog._write() as conn:
            n = conn.execute(t.delete().where(t.c.model == model, t.c.dataset == dataset,
                                              t.c.metric == metric)).rowcount
        if n:
            return
    have = results(catalog)
    mine = have[(have["model"] == model)] if len(have) else have
    hint = (", ".join(f"{r.dataset}/{r.metric}" for r in mine.itertuples()) or "none") if len(have) else "none"
    raise ZooscopeInputError(f"No {metric!r} result recorded for model {model!r} on dataset {dataset!r} "
                             f"(this model's results: {hint}).")


def results(catalog: Catalog) -> pd.DataFrame:
    """Every recorded result (model, dataset, metric, value, created), oldest first."""
    if not _has_table(catalog):
        return pd.DataFrame(columns=COLUMNS)
    t = results_table
    rows = catalog._read(sa.select(*[t.c[c] for c in COLUMNS]).order_by(t.c.id))
    return pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)


def history_prior(table: pd.DataFrame, target: str, models: list[str], metric: str = "accuracy",
                  similarity: Callable[[str], float] | Mapping[str, float] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-model prior from results on datasets other than ``target``.

    Parameters
    ----------
    table : DataFrame
        `results` output.
    target : str
        Its own results are dropped first (never used).
    models : list of str
    metric : str
    similarity : callable or mapping, optional
        Past dataset name -> weight in [0, 1] (task similarity to ``target``); 1 for every dataset when None.

    Returns
    -------
    (DataFrame indexed by model with columns ``prior`` (weighted mean z-score, NaN without past results) and
    ``n_past``, {past dataset: weight used})
    """
    past = table[(table["metric"] == metric) & (table["dataset"] != target)]
    out = pd.DataFrame({"prior": np.nan, "n_past": 0}, index=pd.Index(models, name="model"))
    weights: dict[str, float] = {}
    num = pd.Series(0.0, index=out.index)
    den = pd.Series(0.0, index=out.index)
    usable = {}
    for ds, g in past.groupby("dataset"):
        v = g.set_index("model")["value"].astype(float)
        sd = float(v.std(ddof=0))
        if len(v) < 2 or not sd > 0:
            continue
        w = 1.0 if similarity is None else float(similarity(ds) if callable(similarity) else similarity.get(ds, 1.0))
        usable[str(ds)] = (v, sd, min(max(w, 0.0), 1.0) if math.isfinite(w) else 0.0)
    if usable and not any(w > 0 for _, _, w in usable.values()):  # no past task looks similar: weigh them equally
        usable = {d: (v, sd, 1.0) for d, (v, sd, _) in usable.items()}
    for ds, (v, sd, w) in usable.items():
        weights[ds] = w
        zs = ((v - v.mean()) / sd).reindex(out.index)
        have = zs.notna()
        out.loc[have, "n_past"] += 1
        if w > 0:
            num[have] += w * zs[have]
            den[have] += w
    ok = den > 0
    out.loc[ok, "prior"] = num[ok] / den[ok]
    return out, weights
