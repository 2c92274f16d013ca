"""The default ranker's fusion.

A robust per-target z-mean of its member scores (median/MAD), members that are constant or saturated on the
target dropped for that target and named (`zooscope.zoo.select.explain`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["MAD_SCALE", "robust_zmean"]

#: MAD × 1.4826 estimates the standard deviation of normal data
MAD_SCALE = 1.4826
#: robust z-scores are clipped to ±CLIP so one outlier model cannot dominate the mean
CLIP = 3.0


def robust_zmean(table: pd.DataFrame, columns: Sequence[str], smaller_is_better: Sequence[str] = ()
                 ) -> tuple[pd.Series, dict[str, str]]:
    """Mean over ``columns`` of each row's robust z-score ((x − median) / (1.4826·MAD), clipped to ±3).

    A member is dropped for this table (target) when it has fewer than 3 finite values, is constant, or is
    saturated: at least half of the candidates tie at one value (its MAD is 0, e.g. a probe at 100 % accuracy).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per candidate model.
    columns : sequence of str
    smaller_is_better : sequence of str
        Columns negated first.

    Returns
    -------
    (pandas.Series of the fused score (NaN where no member has a value), {dropped column: reason})

    Examples
    --------
    >>> t = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 1.0, 1.0, 0.5]})
    >>> s, dropped = robust_zmean(t, ["a", "b"])
    >>> s.round(2).tolist(), dropped
    ([-1.01, -0.34, 0.34, 1.01], {'b': 'saturated: 3 of 4 models tie at 1'})
    """
    parts, dropped = [], {}
    for c in columns:
        col = table[c].astype(float)
        col = -col if c in smaller_is_better else col
        ok = col.dropna()
        if len(ok) < 3:
            dropped[c] = f"only {len(ok)} model(s) have a value"
            continue
        med = float(ok.median())
        mad = float((ok - med).abs().median())
        if not mad > 0:
            top = ok.round(12).value_counts()
            value, n = top.index[0], int(top.iloc[0])
            dropped[c] = f"{'constant' if n == len(ok) else 'saturated'}: {n} of {len(ok)} models tie at " \
                f"{abs(value):.4g}"
            continue
        parts.append(((col - med) / (MAD_SCALE * mad)).clip(-CLIP, CLIP))
    if not parts:
        return pd.Series(np.nan, index=table.index), dropped
    return pd.concat(parts, axis=1).mean(axis=1, skipna=True), dropped
