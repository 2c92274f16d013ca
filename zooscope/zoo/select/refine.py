"""Optional refinement (``finetune_top=n``): fine-tune the top n candidates briefly and re-order them by
validation accuracy (the one training loop, `zooscope.nets.training.train_classifier`; imported only when asked)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["refine"]


def refine(table: pd.DataFrame, fits: list[dict[str, Any]], ds: Any, n: int, epochs: int, seed: int) -> pd.DataFrame:
    """Fine-tune the top ``n`` rows briefly (head replaced, all layers) and re-order them by validation accuracy."""
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
    top = list(table.index[:n])
    acc = {}
    for name in top:
        m = by_name[name]
        torch.manual_seed(seed)
        net = replace_classifier(ModelSpec.from_row(m).build(), int(y.max() + 1), seed=seed)
        res = train_classifier(net, ds.x[tr], ds.y[tr], epochs=epochs, seed=seed, x_val=ds.x[val], y_val=ds.y[val])
        acc[name] = float(res.val_acc)
    table = table.copy()
    table["finetune_val_acc"] = pd.Series(acc).reindex(table.index).to_numpy(dtype=float)
    head = sorted(top, key=lambda t: (-acc[t], top.index(t)))
    return table.loc[head + list(table.index[n:])]
