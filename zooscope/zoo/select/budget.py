"""A time budget for `select`: successive halving over nested stratified subsets of the target.

The plan comes from the cost model recorded with each model (`zooscope.nets.cost`: measured forward seconds per
example on this machine), never from timing inside the query, so one zoo, target and budget always give the same
plan and the same table. The budget counts the candidates' forward passes; the scores on the features (LogME,
LEEP, NCE, H-score on ≤ 1,000 examples) add roughly 0.05–0.2 s per model and are not counted.

Rule
    ``full`` = min(max_examples, target size) examples; the ladder of sizes is full, full/2, full/4, … down to
    `MIN_EXAMPLES` (at least 4 per class). If every candidate fits at full size (Σ seconds/example × full ≤
    budget), there is one round: exactly the unbudgeted `select`. Otherwise the plan keeps F ≤ k candidates at
    full size, F the largest whose plan fits: R = ⌈log2(N / F)⌉ rounds before it, round r scoring max(F, ⌈N/2^r⌉)
    candidates on full/2^(R−r) examples, each round keeping the better half by the default score (the rank mean of
    the round's score columns among the round's candidates). If even F = 1 does not fit, the rounds start at the
    smallest size and stop when the budget is spent: every candidate is still scored once.

Nested subsets
    Every size of the ladder is a stratified sample (`zooscope._sampling.stratified_sample`, scikit-learn) of the
    next larger one, and the full subset is ordered so that each is its prefix: going from n to 2n examples
    computes only the n new examples' features. Features are cached per (model, target, ladder chunk) in
    ``cache/select_features`` like the unbudgeted ones (a query writes nothing else).

Table
    ``examples`` (the size of the last round a model was scored in) and ``round`` ("2/3"); the models that went
    further rank above those that stopped earlier (successive halving's order), then by score.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope._io import cached_array
from zooscope._progress import track
from zooscope.zoo.catalog import params_hash
from zooscope.zoo.select.context import SelectContext, combine_ranks, smaller_is_better
from zooscope.zoo.select.scores import _cache_path, _one_score, features, load_labelled

__all__ = ["DEFAULT_BUDGET_S", "MIN_EXAMPLES", "Plan", "halving", "ladder", "nested_order", "plan_rounds"]

log = logging.getLogger(__name__)

DEFAULT_BUDGET_S = 60.0  # story 3: a ranking in about a minute
MIN_EXAMPLES = 32  # the smallest round (and at least 4 examples per class)


@dataclass(frozen=True)
class Plan:
    """Rounds of successive halving: ``sizes[r]`` examples for ``keep[r]`` candidates; ``spent``.

    The budget ends the rounds before full size.
    """

    sizes: tuple[int, ...]
    keep: tuple[int, ...]
    seconds: float
    spent: bool = False


def ladder(n_full: int, n_min: int) -> list[int]:
    """Sizes full/2^j ≥ ``n_min`` (at least ``[n_full]``), ascending."""
    sizes = [int(n_full)]
    while sizes[-1] // 2 >= n_min:
        sizes.append(sizes[-1] // 2)
    return sizes[::-1]


def nested_order(y: np.ndarray, sizes: list[int], seed: int) -> np.ndarray:
    """Return a permutation of ``range(len(y))`` whose prefix of each length in ``sizes`` (ascending.

    Last = len(y)) is a stratified sample of the next larger prefix.
    """
    idx = np.arange(len(y))
    chunks = []
    for n in sizes[-2::-1]:
        inner = idx[np.sort(_sample(y[idx], n, seed))]
        chunks.append(np.setdiff1d(idx, inner, assume_unique=True))
        idx = inner
    return np.concatenate([idx, *chunks[::-1]]) if chunks else idx


def _sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    from zooscope._sampling import stratified_sample

    return stratified_sample(y, int(n), seed=seed)


def plan_rounds(n_models: int, s_per_example: float, sizes: list[int], k: int, budget_s: float | None) -> Plan:
    """Return the rounds (module docstring) for ``n_models`` candidates of mean cost ``s_per_example`` on the ladder."""
    full = sizes[-1]
    exhaustive = Plan((full,), (n_models,), n_models * s_per_example * full)
    if budget_s is None or exhaustive.seconds <= budget_s or n_models <= 1:
        return exhaustive

    def plan(f: int) -> Plan:
        r = min(math.ceil(math.log2(n_models / f)), len(sizes) - 1)
        sz = tuple(sizes[len(sizes) - 1 - r:])
        keep = tuple(max(f, math.ceil(n_models / 2 ** i)) for i in range(len(sz)))
        cost = sum(kk * s_per_example * (n - (sz[i - 1] if i else 0))
                   for i, (n, kk) in enumerate(zip(sz, keep, strict=True)))
        return Plan(sz, keep, cost)

    for f in range(min(k, n_models - 1), 0, -1):
        p = plan(f)
        if p.seconds <= budget_s:
            return p
    # not even one model at full size: rounds from the smallest size until the budget is spent (round 0 always)
    keep = tuple(max(1, math.ceil(n_models / 2 ** i)) for i in range(len(sizes)))
    spent, used = [], 0.0
    for i, (n, kk) in enumerate(zip(sizes, keep, strict=True)):
        step = kk * s_per_example * (n - (sizes[i - 1] if i else 0))
        if i and used + step > budget_s:
            break
        spent.append(i)
        used += step
    return Plan(tuple(sizes[i] for i in spent), tuple(keep[i] for i in spent), used, spent=len(spent) < len(sizes))


def costs(models: list[Any], cache: Path | None = None) -> np.ndarray:
    """Forward seconds per example of each model.

    Recorded at add-model, else measured now and kept under ``cache/select_cost`` (models added before the
    cost model; never written to the catalog by a query).
    """
    from zooscope.nets.cost import COST_KEY, measure_cost, seconds_per_example
    from zooscope.nets.models import ModelSpec

    out = []
    for m in models:
        s = seconds_per_example((m.metrics or {}).get(COST_KEY))
        if s is None:
            def measure(m: Any = m) -> np.ndarray:
                cost = measure_cost(ModelSpec.from_row(m).build(), tuple(m.input_shape))
                return np.asarray([seconds_per_example(cost)])

            if cache is None:
                s = float(measure()[0])
            else:
                h = params_hash({"spec": m.spec, "kwargs": m.kwargs, "sha": m.checkpoint_sha256,
                                 "shape": list(m.input_shape), "rule": "cost"})
                s = float(cached_array(cache / "select_cost" / f"{h[:32]}.npy", measure)[0])
        out.append(float(s))
    return np.asarray(out)


def halving(ctx: SelectContext, rec: Any, fits: list[Any], score_cols: list[str], max_examples: int, seed: int,
            k: int, budget_s: float | None, progress: bool = False,
            skipped: list[tuple[str, str]] | None = None, first_round: Any = None) -> tuple[pd.DataFrame | None, Any]:
    """(table, labelled dataset).

    One row per model (in ``fits`` order) with its last round's ``score_cols``, ``examples``, ``round`` and
    ``_r`` (the round index, the first sort key of the ranking). The table is None when every candidate fits
    the budget at full size (the caller scores them as without a budget).

    ``first_round(models, chunks, path_of)`` computes round 0's features elsewhere and stores them in their cache
    files ``path_of(model, chunk index)`` (the Ray backend, `zooscope.zoo.select.remote`); None: in this process.
    """
    ds = load_labelled(rec)
    y_all = ds.y.numpy()
    n_full = min(int(max_examples), len(y_all))
    n_classes = len(np.unique(y_all))
    sizes = ladder(n_full, min(n_full, max(MIN_EXAMPLES, 4 * n_classes)))
    plan = plan_rounds(len(fits), float(np.mean(costs(fits, ctx.probes.paths.cache))), sizes, k, budget_s)
    if len(plan.sizes) == 1 and plan.sizes[0] == n_full:
        return None, ds
    from zooscope.nets.datasets import DatasetTensors, probe_subset

    full = probe_subset(ds, n_full, seed=seed)
    order = nested_order(full.y.numpy(), sizes, seed)
    bounds = [0, *sizes]
    chunks = [DatasetTensors(full.name, full.x[order[a:b]], full.y[order[a:b]], full.classes)
              for a, b in itertools.pairwise(bounds)]
    y = full.y.numpy()[order]
    key = {"seed": seed, "ladder": sizes, "rule": "halving"}

    def path_of(m: Any, j: int) -> Any:
        return _cache_path(ctx, m, rec, {**key, "chunk": j})

    def feats_of(m: Any, upto: int) -> tuple[np.ndarray, np.ndarray | None]:
        parts = [features(m, chunks[j], path_of(m, j)) for j in range(upto)]
        f = np.concatenate([p[0] for p in parts])
        probs = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return f, probs

    last: dict[str, dict[str, Any]] = {}
    alive = list(fits)
    rounds = len(plan.sizes)
    for r, n in enumerate(plan.sizes):
        upto = sizes.index(n) + 1
        if r == 0 and first_round is not None:
            first_round(alive, chunks[:upto], path_of)
        rows = []
        for m in track(alive, description=f"round {r + 1}/{rounds}: {len(alive)} candidates on {n} examples",
                       enabled=progress, transient=True):
            f, probs = feats_of(m, upto)
            if not np.isfinite(f).all():
                if skipped is not None:
                    skipped.append((m.name, "non-finite features (NaN or Inf weights or activations)"))
                continue
            row = {"model": m.name, **{c: _one_score(c, f, probs, y[:n], m.name, rec.name) for c in score_cols}}
            rows.append(row)
            last[m.name] = {**row, "examples": n, "round": f"{r + 1}/{rounds}", "_r": r}
        t = pd.DataFrame(rows, columns=["model", *score_cols])
        t["_s"] = combine_ranks(t, score_cols, smaller_is_better=smaller_is_better())
        t = t.sort_values(["_s", "model"], ascending=[False, True], na_position="last")
        for name, s in zip(t["model"], t["_s"], strict=True):
            last[name]["_s"] = s
        if r + 1 < rounds:
            keep = set(t["model"].head(plan.keep[r + 1]))
            alive = [m for m in alive if m.name in keep]
    table = pd.DataFrame([last[m.name] for m in fits if m.name in last])  # in ``fits`` order, like `score_table`
    log.info("select budget %.0f s: %d rounds %s keeping %s (planned %.1f s of forward passes)",
             budget_s or 0, rounds, plan.sizes, plan.keep, plan.seconds)
    return table.drop(columns=["_s"]).reset_index(drop=True), ds
