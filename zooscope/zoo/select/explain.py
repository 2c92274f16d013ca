"""The ``why`` text of each ranked model.

Source task and distance, the scores it leads or its ranks, history, a result recorded on the target, and the
fine-tuning check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zooscope.zoo.select.context import DEFAULT_COLUMNS, SCORES

__all__ = ["why"]


def why(table: pd.DataFrame, model: str, cols: list[str], prior: pd.DataFrame, weights: dict[str, float],
        default: bool, registered: set[str] = frozenset(), dropped: dict[str, str] | None = None) -> str:
    """One row's explanation (``cols``: the ranked columns shown; ``registered``: the zoo's dataset names.

    ``dropped``: {default member left out on this target: reason}, named in every row).
    """
    row = table.loc[model]
    parts = []
    if "task_distance" in cols:
        if np.isnan(row["task_distance"]) and isinstance(row["trained_on"], str) and row["trained_on"] not in \
                registered:
            parts.append(f"training data {row['trained_on']!r} not registered: transferability only")
        elif np.isnan(row["task_distance"]):
            parts.append("training data unknown: transferability only")
        else:
            nearest = row["task_distance"] <= table["task_distance"].min(skipna=True)
            parts.append(f"{'nearest' if nearest else 'source'} task ({row['trained_on']}, "
                         f"d_asym={row['task_distance']:.3g})")
    elif not (isinstance(row["trained_on"], str) and row["trained_on"] in registered):  # said, not needed to rank
        parts.append(f"training data {row['trained_on']!r} not registered" if isinstance(row["trained_on"], str)
                     else "training data unknown")
    if "fisher_distance" in cols and np.isfinite(row["fisher_distance"]):
        parts.append(f"own Fisher source vs target d_sym={row['fisher_distance']:.3g}")
    scores = [(c, SCORES[c].transfer.display) for c in cols if c in SCORES and np.isfinite(row[c])]
    best = [name for c, name in scores if row[c] >= table[c].max(skipna=True)]
    if best:
        parts.append("best " + ", ".join(best))
    ranks = [f"{name} {int((table[c] > row[c]).sum()) + 1}/{int(table[c].notna().sum())}" for c, name in scores
             if name not in best]
    if ranks and len(table) > 1:
        parts.append("rank " + ", ".join(ranks))
    if default and not any(np.isfinite(row[c]) for c in DEFAULT_COLUMNS if c in ("leep", "nce") and c in row):
        parts.append("no classifier head: source-head scores missing")
    if dropped:
        parts.append("dropped on this target: " + ", ".join(
            f"{SCORES[c].transfer.display if c in SCORES else c} ({r})" for c, r in dropped.items()))
    p = prior.loc[model] if model in prior.index else None
    if p is not None and np.isfinite(p["prior"]):
        near = sorted((w, d) for d, w in weights.items() if w > 0)[::-1][:3]
        like = ", ".join(f"{d} (sim {w:.2f})" for w, d in near)
        # with one past task its similarity is 1 by normalisation and says nothing: name it only among several
        like = f"; most similar: {like}" if sum(w > 0 for w in weights.values()) > 1 else ""
        parts.append(f"history: {'above' if p['prior'] > 0 else 'below'} average (z {p['prior']:+.2f}) on "
                     f"{int(p['n_past'])} past task(s){like}")
    if np.isfinite(row.get("result_on_target", np.nan)):
        parts.append(f"recorded on this dataset: {row['result_on_target']:.3g} (shown, not used to rank)")
    if "group" in table and isinstance(row["group"], str) and row["group"]:
        n = int((table["group"] == row["group"]).sum())
        parts.append(f"group of {n} near-duplicates (CKA ≥ 0.995) scored once" if row["group"] == model else
                     f"near-duplicate of {row['group']} (CKA ≥ 0.995): its scores")
    if "round" in table and isinstance(row["round"], str):
        done, total = row["round"].split("/")
        parts.append(f"kept through every round: scored on {row['examples']} examples (round {row['round']})"
                     if done == total else
                     f"stopped at round {row['round']} on {row['examples']} examples: not in the better half "
                     f"(successive halving within the time budget)")
    if "finetune_val_acc" in table and np.isfinite(row["finetune_val_acc"]):
        parts.append(f"fine-tuned briefly: val acc {row['finetune_val_acc']:.3f}")
    return "; ".join(parts)
