"""Model selection: which zoo model to fine-tune for a new labelled dataset.

Reads only (see `SelectContext`); the one thing written is deletable cache under the zoo's ``cache/``
(pre-logits features per (model, dataset, subset) in ``cache/select_features``, the target's task vector and the
trivial task's vector when task distance is asked for).

Default ranker (``method=None``), chosen for robustness (issue 20)
    The robust z-mean (`fusion.robust_zmean`: (x − median)/(1.4826·MAD), clipped to ±3, averaged) of LogME, LEEP,
    NCE and H-score (`DEFAULT_COLUMNS`; the five-member candidate below was not adopted), every score on
    the candidate's **pre-logits** features (`zooscope.embed.prelogits`) on a stratified subset (≤ ``max_examples``)
    of the target's labelled data. A member that is constant or saturated on the target (half the models or more
    tie) is dropped for that target and named in ``why``; a model without a classifier head has no NCE. Nothing
    here needs the model's training data or any recorded history.

    Chosen by the WORST benchmark, not one mean (``benchmarks/selection_robust.py``; RESULTS.md "A robust default"):
    among rank means and robust z-means of every 2-5-member subset, those within 0.02 of the best single score on
    every benchmark, no member anti-correlated alone on a benchmark, best worst-benchmark mean τ_w:

    ==============================================  ==========  ==========  ========
    rule (mean τ_w; b1: 8 targets, b2: 3 targets)   b1          b2          in/out
    ==============================================  ==========  ==========  ========
    robust z-mean of five (+k-NN, probe log-loss)   0.703       0.333       not adopted
    **LogME, LEEP, NCE, H-score (default)**         **0.712**   **0.321**
    LogME                                           0.678       0.332       in
    probe log-loss / k-NN / H-score / NCE           0.649 / 0.623 / 0.619 / 0.558 (b1)     in
    LEEP (only one source-head score kept: NCE)     0.611       0.226       out
    SFDA-PCA (worst on b2)                          0.655       0.086       out
    ETran energy (near 0 on b1)                     0.185       0.245       out
    NCTI (anti-correlated on b1)                    -0.420      0.042       out
    ==============================================  ==========  ==========  ========

    The five-member candidate and the old members are not distinguishable (paired bootstrap over targets: b1
    −0.009 [−0.043, 0.020], b2 +0.013 [−0.219, 0.201]; with b1's 11 targets 0.640 vs 0.663, −0.023 [−0.056,
    0.006]), and on a zoo of one trained and seven random-init CNNs its label-only members rank a random network
    first; the old members stay until b2 is complete. Task distance (τ_w 0.27 on issue 8's zoo) and the
    ``fisher`` pair distance (lowered the rank mean from 0.746 to 0.705 on 4 targets) stay out.

History as a model (`zooscope.zoo.select.history`, fitted at query time on what is recorded, nothing written)
    The results matrix (models × past datasets) is read with the target's own results dropped first. Each past
    dataset is weighted by its similarity to the target (mean of max(0, Spearman) of the default score profiles and
    1 − Task2Vec d_sym); each model's weighted mean z-scored outcome is its prior; the target-side fused score is
    projected onto the span of the matrix's rank-2 model factors and shrunk toward the prior with few past
    datasets (λ = n/(n + 3)). The default score is the mean of the target-side rank and the rank of that history
    score. A result recorded on the target itself is shown in ``result_on_target`` and never used to rank it. Not
    yet in the model: each model's source-task distance.

Candidates (stage 1) and exact scores (stage 2)
    Zoos of at most ``STAGE1_ALL`` (200) fitting models: every model is scored. Larger zoos (`candidates`): the
    task2vec index of the target's probe network proposes the nearest source datasets (FAISS on the centred
    log-Fisher), their models are re-ranked by d_asym (`distances.task_distances`), the ``pool`` nearest kept, plus
    every model whose training data is unknown and the ``pool`` best by the history prior; near-duplicates (CKA ≥
    0.995 on the stored signatures) are scored once per group (column ``group``). Stage 2 scores the candidates
    exactly as above.

Time budget (``budget_s``, default 60 s; `budget`)
    Planned from each model's recorded cost (FLOPs and measured seconds per batch, `zooscope.nets.cost`): when the
    candidates' forward passes on every example do not fit, successive halving on nested stratified subsets keeps
    the better half by the default score each round (columns ``examples`` and ``round``; ``why`` says where a model
    stopped). With ``backend="ray"`` the first round runs as Ray tasks (`remote`).

Methods by name (``method=``; the table's ``score`` is then that column, rank-normalised)
    ``logme``, ``leep``, ``nce``, ``hscore``, ``ncti``, ``knn``, ``linear_probe``, ``sfda``, ``sfda_pca``, ``gbc``,
    ``transrate`` (the transferability scores registered with `zooscope.measures.TransferMeta`, on pre-logits
    features or source-head softmax; ``hscore`` is ``h_score``, ``knn`` is ``knn_accuracy``), ``task2vec``
    (d_asym(source → target) through the zoo's probe network, Achille et al. 2019; smaller is better), ``fisher``
    (d_sym(F_m(source), F_m(target)): the per-filter diagonal Fisher of each candidate itself on its training
    dataset and on the target, Task2Vec's estimator with the candidate as the probe, `FISHER_EXAMPLES` examples,
    cached per (model, dataset) in ``cache/select_fisher``; smaller is better; NaN when the training data is
    unknown), ``history`` (the prior alone).
    ``methods=(...)`` (several) ranks by the rank mean of those columns.

Optional refinement, an active step (`zooscope.zoo.select.refine`): ``finetune_top=k`` fine-tunes k models
chosen for information (the top-1, then the most different in the history's factor space among the top 3k; the top
k without history) for ``epochs`` (head replaced, all layers, `zooscope.nets.training.train_classifier`, stratified
80/20 split; column ``finetune_val_acc``), re-estimates every model from the low-rank history plus those k outcomes
(OBOE-style, `zooscope.zoo.history_model.impute_column`), and moves a model above another only when its estimate
is larger by more than the seed noise (`refine.SEED_NOISE` = 0.02, the benchmarks' median seed std). Off by default.

The package, in the order `select` uses it: `context` (what it reads, the method table from the measure
registry, rank arithmetic), `candidates` and `distances` (stage 1 and ``fisher``), `budget` and `remote`
(successive halving, its Ray round), `scores` (stage 2: features and scores with their caches), `fusion` (the
default's robust z-mean), `history` (history as a model), `refine` (``finetune_top``), `explain` (the ``why`` text).

Speed (measured with the old default; the probe log-loss member adds ~0.4 s per model at 1000×512, not
re-measured end to end): one target, 20 small models, default settings, no cached features: 11–19 s on 2 loaded
cores; features and scores are then cached per (model, dataset, subset) and a repeat takes ~0.1 s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo.integrity import model_problem, skipped_note
from zooscope.zoo.select.budget import DEFAULT_BUDGET_S, halving
from zooscope.zoo.select.candidates import duplicate_groups, expand_groups, stage1
from zooscope.zoo.select.context import (
    DEFAULT_COLUMNS,
    DISTANCES,
    FISHER_EXAMPLES,
    METHODS,
    SCORES,
    STAGE1_ALL,
    SelectContext,
    chosen_methods,
    combine_ranks,
    rank01,
    smaller_is_better,
)
from zooscope.zoo.select.distances import fisher_distances
from zooscope.zoo.select.explain import why
from zooscope.zoo.select.fusion import robust_zmean
from zooscope.zoo.select.history import prior as history_prior
from zooscope.zoo.select.remote import remote_round
from zooscope.zoo.select.scores import score_table

__all__ = ["DEFAULT_BUDGET_S", "DEFAULT_COLUMNS", "FISHER_EXAMPLES", "METHODS", "STAGE1_ALL", "SelectContext",
           "combine_ranks", "select"]

log = logging.getLogger(__name__)


def select(ctx: SelectContext, dataset: str, k: int = 10, *, method: str | None = None,
           methods: Sequence[str] | None = None, candidates: Sequence[str] | None = None, pool: int | None = None,
           alpha: float = 0.15, max_examples: int = 1000, seed: int = 0, history: bool = True,
           metric: str = "accuracy", finetune_top: int = 0, epochs: int = 1, progress: bool = False,
           budget_s: float | None = DEFAULT_BUDGET_S, backend: str = "local",
           address: str | None = None) -> pd.DataFrame:
    """Rank the zoo models to transfer from for a registered labelled ``dataset`` (module docstring: the rule).

    Parameters
    ----------
    ctx : SelectContext
    dataset : str
        A registered dataset with at least two classes.
    k : int, default=10
    method : str, optional
        Rank by one method (`METHODS`); default: the evidence-chosen default ranker.
    methods : sequence of str, optional
        Rank by the rank mean of several methods (instead of ``method``).
    candidates : sequence of str, optional
        Restrict to these models (default: every model whose input shape fits the dataset).
    pool : int, optional
        Stage-1 survivors with known source tasks in zoos above `STAGE1_ALL` models (default max(3k, 10)).
    alpha : float, default=0.15
        d_asym's complexity weight (``task2vec``).
    max_examples : int, default=1000
        Target examples used for the transferability scores (stratified, seeded).
    seed : int, default=0
    history : bool, default=True
        Use results recorded on other datasets (default ranker and ``method="history"``).
    metric : str, default="accuracy"
        The recorded metric the history uses.
    finetune_top : int, default=0
        Fine-tune the top n candidates for ``epochs`` and re-order them by validation accuracy.
    epochs : int, default=1
    progress : bool, default=False
        A progress bar on stderr over the candidates' feature passes and scores.
    budget_s : float or None, default=`DEFAULT_BUDGET_S` (60 s)
        Seconds of forward passes, planned from each model's recorded cost (`zooscope.nets.cost`): when every
        candidate does not fit at full size, successive halving (`zooscope.zoo.select.budget`; columns
        ``examples`` and ``round``). None: no budget, every candidate on every example.
    backend : {"local", "ray"}, default="local"
        ``"ray"``: the first halving round's feature passes run as Ray tasks (`zooscope.zoo.parallel`, as embed).
    address : str, optional
        The Ray cluster (``backend="ray"``), as for `Zoo.embed`.

    Returns
    -------
    pandas.DataFrame
        rank, model, score (in [0, 1], larger = better), the method columns, history ("0.88 (4 past)"),
        result_on_target, [finetune_val_acc], arch, trained_on, why. ``attrs["skipped"]``: [(model, reason)] of
        the models left out (checkpoint missing or changed, non-finite weights): one bad model never blocks select.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ZooscopeInputError(f"'k' of Zoo.select must be an int >= 1; got {k!r}.")
    chosen = chosen_methods(method, methods)
    default = not chosen
    if isinstance(finetune_top, bool) or not isinstance(finetune_top, int | np.integer) or finetune_top < 0:
        raise ZooscopeInputError(f"finetune_top must be an int >= 0; got {finetune_top!r}.")
    all_models, rec, fits, skipped = _candidates(ctx, dataset, candidates)
    score_cols = list(DEFAULT_COLUMNS) if default else [c for c in chosen if c in SCORES]
    dist: dict[str, float] = {}
    large = len(fits) > STAGE1_ALL
    if "task2vec" in chosen or large:
        dist, fits = stage1(ctx, dataset, fits, chosen, alpha, int(pool or max(3 * k, 10)), metric, history)
    groups = duplicate_groups(ctx, fits) if large and score_cols else {}
    scored = [m for m in fits if m.name not in groups]  # near-duplicates: one model of each group is scored
    if budget_s is not None and (isinstance(budget_s, bool) or not float(budget_s) > 0):
        raise ZooscopeInputError(f"budget_s must be a number of seconds > 0 (or None: no budget); got {budget_s!r}.")
    table, ds = None, None
    if score_cols:
        first = None if backend == "local" else remote_round(backend, address)
        table, ds = halving(ctx, rec, scored, score_cols, max_examples, seed, k, budget_s, progress, skipped, first)
    if table is None:
        table, ds = score_table(ctx, rec, scored, score_cols, max_examples, seed, progress, skipped)
    if groups:
        table = expand_groups(table, fits, groups)
    fits = [m for m in fits if m.name not in dict(skipped)]
    table = table[~table["model"].isin(dict(skipped))].reset_index(drop=True)
    if not fits:
        raise ZooscopeInputError(f"Every candidate model was skipped: {'; '.join(skipped_note(skipped))}.")
    table["task_distance"] = [dist.get(n, np.nan) for n in table["model"]]
    if "fisher" in chosen:
        fd = fisher_distances(ctx, rec, fits, seed)
        table["fisher_distance"] = [fd[n] for n in table["model"]]
    table.index = pd.Index(table["model"].to_numpy(), name=None)
    cols = [DISTANCES.get(c, c) for c in (DEFAULT_COLUMNS if default else chosen)]
    target_side = [c for c in cols if c != "history"]
    dropped: dict[str, str] = {}
    if default:  # robust z-mean of the members; constant/saturated members dropped for this target, named in why
        fused, dropped = robust_zmean(table, target_side, smaller_is_better())
        base = rank01(fused)
    else:
        base = pd.Series(combine_ranks(table, target_side, smaller_is_better=smaller_is_better()),
                         index=table.index) if target_side else pd.Series(np.nan, index=table.index)
    # history: results on OTHER datasets only; the target's own results are displayed, never ranked on
    prior, weights, own = history_prior(ctx, rec, table.index, fits, all_models, base if default else None,
                                        history and (default or "history" in chosen), metric, max_examples, seed)
    table["result_on_target"] = own.reindex(table.index).to_numpy(dtype=float)
    table["history"] = [f"{p:.2f} ({n} past)" if np.isfinite(p) else "" for p, n in
                        zip(prior["prior"], prior["n_past"], strict=True)]
    hr = rank01(prior["prior"])
    if chosen == ["history"]:
        table["score"] = hr
    else:
        table["score"] = pd.concat([base, hr], axis=1).mean(axis=1, skipna=True) \
            if default or "history" in chosen else base
    table["arch"] = [m.spec for m in fits]
    table["trained_on"] = [m.trained_on for m in fits]
    by = ["_r", "score", "model"] if "_r" in table else ["score", "model"]  # halving: further rounds rank first
    table = table.sort_values(by, ascending=[False] * (len(by) - 1) + [True], na_position="last")
    if finetune_top:
        from zooscope.zoo.history import results
        from zooscope.zoo.select.history import history_matrix
        from zooscope.zoo.select.refine import refine

        R = history_matrix(results(ctx.catalog), dataset, list(table.index), metric) if history else None
        table = refine(table, fits, ds, int(finetune_top), int(epochs), seed, R)
    return _shown(ctx, table, k, cols, score_cols, prior, weights, default, bool(finetune_top), skipped, dropped)


def _candidates(ctx: SelectContext, dataset: str, candidates: Sequence[str] | None) -> tuple[
        list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], list[tuple[str, str]]]:
    """(every model, the dataset's record, the usable models whose input shape fits it, [(skipped, reason)])."""
    all_models = ctx.catalog.models()
    if not all_models:
        raise ZooscopeInputError("The zoo has no models. Add some (zoo.add_model) before selecting.")
    rec = ctx.catalog.get_dataset(dataset)
    models = all_models if candidates is None else [ctx.catalog.get_model(n) for n in candidates]
    skipped = [(m.name, r) for m in models if (r := model_problem(m))]  # one bad model never blocks select
    models = [m for m in models if m.name not in dict(skipped)]
    shape = tuple(rec.input_shape or ())
    fits = [m for m in models if m.input_shape and tuple(m.input_shape) == shape]
    if not fits:
        shapes = sorted({tuple(m.input_shape or ()) for m in models})
        raise ZooscopeInputError(f"No candidate model takes inputs of shape {shape} (dataset {dataset!r}); "
                                 f"the models take {shapes}. Resize the dataset (e.g. '?size=28') or add models.")
    return all_models, rec, fits, skipped


def _shown(ctx: SelectContext, table: pd.DataFrame, k: int, cols: list[str], score_cols: list[str],
           prior: pd.DataFrame, weights: dict[str, float], default: bool, finetuned: bool,
           skipped: list[tuple[str, str]], dropped: dict[str, str] | None = None) -> pd.DataFrame:
    """Return the top ``k`` rows with their ``why``, ranked, in the documented column order."""
    shown = [c for c in cols if c not in ("history",)]
    registered = {d.name for d in ctx.catalog.datasets()}
    table["why"] = [why(table, name, shown, prior, weights, default, registered, dropped) for name in table.index]
    table = table.head(k).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    distances = tuple(DISTANCES.values())
    extra = [c for c in (*distances, *score_cols)
             if c in table and (c not in distances or c in cols or table[c].notna().any())]
    halved = [c for c in ("examples", "round", "group") if c in table]
    order = ["rank", "model", "score", *dict.fromkeys(extra), *halved, "history", "result_on_target",
             *(["finetune_val_acc"] if finetuned else []), "arch", "trained_on", "why"]
    table = table[order]
    table.attrs["skipped"] = sorted(set(skipped))
    return table
