"""Optional refinement (``finetune_top=k``), an active step.

Fine-tune k models chosen for information, re-estimate EVERY model from the low-rank history plus those k
outcomes, and accept a re-order only where the difference exceeds the seed noise.

- Choice (`choose`): the current top-1, then, greedily, the candidate among the top ``POOL_FACTOR``·k farthest (in
  the results matrix's model-factor space) from those already chosen; without a usable history, the top k.
- Re-estimate (`reestimate`): `zooscope.zoo.history_model.impute_column` (OBOE-style ridge on the rank-2 model
  factors, shrunk toward the prior) from the k measured validation accuracies; without a usable history or with
  k < 2, only the measured models have a new estimate.
- Accept (`noisy_reorder`): a model moves above another only when its estimate is larger by more than
  ``noise`` (`SEED_NOISE`: the median seed-to-seed std of fine-tuned test accuracy measured on the selection
  benchmarks, 0.020 on b1 and 0.016 on b2); closer pairs keep the default's order.

The one training loop is `zooscope.nets.training.train_classifier` (imported only when asked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["POOL_FACTOR", "REFIT_ALPHA", "SEED_NOISE", "choose", "noisy_reorder", "reestimate", "refine"]

SEED_NOISE = 0.02
POOL_FACTOR = 3
#: ridge penalty of the re-estimate (toward the prior): 1.0 measured best offline (benchmarks/selection_history.py;
#: 1e-3 interpolates the k measurements and raised top-1 regret on b1 from 0.020 to 0.111)
REFIT_ALPHA = 1.0


def _factors(R: pd.DataFrame | None, rank: int = 2) -> pd.DataFrame | None:
    """Model factors of the usable part of ``R`` (rows with history, columns with ≥ 2 varying values), or None."""
    from zooscope.zoo.history_model import lowrank_factors

    if R is None or R.empty:
        return None
    R = R.loc[R.notna().any(axis=1), [c for c in R.columns if R[c].notna().sum() >= 2 and R[c].std(ddof=0) > 0]]
    if R.shape[1] < 2 or R.shape[0] < 4:
        return None
    return pd.DataFrame(lowrank_factors(R.to_numpy(), min(rank, R.shape[1])), index=R.index)


def choose(order: list[str], k: int, R: pd.DataFrame | None) -> list[str]:
    """K models to fine-tune: the top-1, then the farthest (max-min factor distance) among the top POOL_FACTOR·k."""
    F = _factors(R)
    if F is None or k < 2:
        return order[:k]
    pool = [m for m in order[: POOL_FACTOR * k] if m in F.index]
    picked = [order[0]] if order[0] in F.index else pool[:1]
    while len(picked) < min(k, len(pool)):
        rest = [m for m in pool if m not in picked]
        d = [min(float(np.linalg.norm(F.loc[m] - F.loc[p])) for p in picked) for m in rest]
        picked.append(rest[int(np.argmax(d))])
    return picked + [m for m in order if m not in picked][: k - len(picked)]


def reestimate(order: list[str], measured: dict[str, float], R: pd.DataFrame | None,
               alpha: float = REFIT_ALPHA) -> pd.Series:
    """Every model's estimated outcome from ``R`` (no target column) plus the measured ones (NaN: no estimate)."""
    from zooscope.zoo.history_model import impute_column

    out = pd.Series(np.nan, index=pd.Index(order))
    F = _factors(R)
    usable = [m for m in measured if F is not None and m in F.index]
    if F is not None and len(usable) >= 2:
        Rm = R.loc[F.index]
        rows = {F.index.get_loc(m): measured[m] for m in usable}
        pred = impute_column(Rm.to_numpy(), rows, rank=F.shape[1], factors=F.to_numpy(), toward_prior=True,
                             alpha=alpha)
        out.loc[F.index.intersection(out.index)] = pd.Series(pred, index=F.index)
    for m, v in measured.items():
        out[m] = v
    return out


def noisy_reorder(order: list[str], estimate: pd.Series, noise: float = SEED_NOISE) -> list[str]:
    """``order`` re-sorted by ``estimate``.

    Moving a model above its neighbour only when its estimate exceeds the neighbour's by more than ``noise``
    (models without an estimate keep their place relative to their neighbours).

    Examples
    --------
    >>> noisy_reorder(["a", "b", "c"], pd.Series({"a": 0.80, "b": 0.81, "c": 0.90}), noise=0.02)
    ['c', 'a', 'b']
    """
    out = list(order)
    changed = True
    while changed:
        changed = False
        for i in range(len(out) - 1):
            hi, lo = estimate.get(out[i], np.nan), estimate.get(out[i + 1], np.nan)
            if np.isfinite(hi) and np.isfinite(lo) and lo - hi > noise:
                out[i], out[i + 1] = out[i + 1], out[i]
                changed = True
    return out


def refine(table: pd.DataFrame, fits: list[dict[str, Any]], ds: Any, n: int, epochs: int, seed: int,
           R: pd.DataFrame | None = None, noise: float = SEED_NOISE) -> pd.DataFrame:
    """Fine-tune ``n`` models chosen for information (head replaced, all layers, ``epochs``).

    Re-estimate every model from the history ``R`` (models × past datasets, no target column) and re-order
    beyond ``noise``.
    """
    import torch

    from zooscope._sampling import stratified_sample
    from zooscope.embed.prelogits import replace_classifier
    from zooscope.nets.models import ModelSpec
    from zooscope.nets.training import train_classifier

    y = ds.y.numpy()
    n_val = max(round(0.2 * len(y)), 2 * int(y.max() + 1))
    val = np.asarray(stratified_sample(y, n_val, seed=seed))
    tr = np.setdiff1d(np.arange(len(y)), val)
    by_name = {m.name: m for m in fits}
    order = list(table.index)
    acc = {}
    for name in choose(order, n, R):
        torch.manual_seed(seed)
        net = replace_classifier(ModelSpec.from_row(by_name[name]).build(), int(y.max() + 1), seed=seed)
        res = train_classifier(net, ds.x[tr], ds.y[tr], epochs=epochs, seed=seed, x_val=ds.x[val], y_val=ds.y[val])
        acc[name] = float(res.val_acc)
    table = table.copy()
    table["finetune_val_acc"] = pd.Series(acc).reindex(table.index).to_numpy(dtype=float)
    est = reestimate(order, acc, R)
    table["finetune_estimate"] = est.reindex(table.index).to_numpy(dtype=float)
    return table.loc[noisy_reorder(order, est, noise)]
