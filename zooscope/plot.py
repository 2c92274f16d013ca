"""Plot functions: each takes DataFrames/arrays and a path, writes an image, and returns the path.

They draw on a standalone ``matplotlib.figure.Figure`` with the Agg canvas, so they never touch pyplot's
global state or need a display.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zooscope._validation import ZooscopeInputError

__all__ = ["heatmap", "zoo_map"]

log = logging.getLogger(__name__)

_ANNOTATE_MAX = 12  # write the value in each cell up to this many rows/columns


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # keep the suffix: it picks the format
    fig.savefig(tmp, dpi=fig.dpi, bbox_inches="tight")
    os.replace(tmp, path)
    log.debug("wrote %s", path)
    return path


def heatmap(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Layer × layer heat-map of a `zooscope.compare` table.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_layers_a, n_layers_b)
        Rows = layers of model A (y axis, first layer at the bottom as in Kornblith et al.), columns =
        layers of model B (x axis). ``df.attrs["measure"]`` labels the colour bar; CKA-like measures in
        [0, 1] get a fixed 0–1 colour scale so that plots are comparable.
    path : str or Path
        Output image; the suffix picks the format (``.png``, ``.pdf``, ``.svg``).
    title : str, optional
        Figure title (default: the measure and the number of examples).

    Returns
    -------
    Path
        ``path``.
    """
    values = np.asarray(df.to_numpy(), dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ZooscopeInputError(f"heatmap needs a non-empty 2-D table; got shape {values.shape}.")
    measure = str(df.attrs.get("measure", ""))
    rows, cols = [str(r) for r in df.index], [str(c) for c in df.columns]
    longest = max(len(s) for s in rows + cols)
    side = 0.45 + 0.06 * min(longest, 30)  # room for tick labels
    fig = Figure(figsize=(min(3 + 0.45 * len(cols) + side, 40), min(2.5 + 0.45 * len(rows) + side, 40)),
                 dpi=110, layout="constrained")
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if "cka" in measure or "nbs" in measure or (finite.size and lo >= 0 and hi <= 1):
        lo, hi = min(lo, 0.0), max(hi, 1.0)
    im = ax.imshow(values, origin="lower", cmap="magma", vmin=lo, vmax=hi, aspect="auto",
                   interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=8 if len(cols) < 30 else 6)
    ax.set_yticks(range(len(rows)), rows, fontsize=8 if len(rows) < 30 else 6)
    ax.set_xlabel(str(df.attrs.get("model_b") or df.columns.name or "model B"))
    ax.set_ylabel(str(df.attrs.get("model_a") or df.index.name or "model A"))
    if max(len(rows), len(cols)) <= _ANNOTATE_MAX:
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = values[i, j]
                shade = (v - lo) / (hi - lo) if hi > lo and np.isfinite(v) else 0.0
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if shade > 0.6 else "white")
    fig.colorbar(im, ax=ax, label=measure or "value", shrink=0.9)
    n = df.attrs.get("n_examples")
    ax.set_title(title if title is not None else
                 f"{measure or 'similarity'}" + (f" on {n:,} inputs" if isinstance(n, int) else ""))
    return _save(fig, path)


def zoo_map(coords_df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Scatter plot of a 2-D zoo map (`zooscope.zoo.curate.zoo_map`), one labelled point per model.

    Parameters
    ----------
    coords_df : pandas.DataFrame
        Columns ``model``, ``x``, ``y`` and optionally ``trained_on`` (points are coloured by it).
    path : str or Path
        Output image; the suffix picks the format.
    title : str, optional

    Returns
    -------
    Path
        ``path``.
    """
    missing = {"model", "x", "y"} - set(coords_df.columns)
    if missing:
        raise ZooscopeInputError(f"zoo_map needs columns model, x, y; missing {sorted(missing)}.")
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    groups = coords_df["trained_on"].fillna("unknown") if "trained_on" in coords_df else pd.Series(
        ["models"] * len(coords_df), index=coords_df.index)
    for name, part in coords_df.groupby(groups.to_numpy()):
        ax.scatter(part["x"], part["y"], label=str(name), s=30)
    for _, row in coords_df.iterrows():
        ax.annotate(str(row["model"]), (row["x"], row["y"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.legend(fontsize=7, title="trained on", title_fontsize=7)
    ax.set_title(title or "zoo map")
    return _save(fig, path)
