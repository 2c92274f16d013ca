"""Plot functions: each takes DataFrames/arrays and a path, writes an image, and returns the path.

They draw on a standalone ``matplotlib.figure.Figure`` with the Agg canvas, so they never touch pyplot's
global state or need a display, and write the file atomically (`zooscope._io.atomic_write`).

Conventions shared by every plot: the title names the measure and which way is "more similar"; the axes
name the models (spec and checkpoint file name); the colour scale spans the measure's registered bounds
(``MeasureMeta.bounds``, e.g. [0, π/2] for Procrustes) and is oriented so that a brighter cell is always
*more similar*: similarity measures use ``magma``, distances ``magma_r``.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError

__all__ = ["heatmap", "heatmap_figure", "match_figure", "match_plot", "measure_scale", "model_label", "zoo_map",
           "zoo_map_figure"]

log = logging.getLogger(__name__)

_ANNOTATE_MAX = 12  # write the value in each cell up to this many rows/columns


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` in the format of ``path``'s suffix and write it atomically."""
    path = Path(path)
    canvas = FigureCanvasAgg(fig)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in canvas.get_supported_filetypes():
        raise ZooscopeInputError(f"Cannot write an image as {path.suffix or 'a file without suffix'!r} "
                                 f"({path.name!r}); use one of "
                                 f"{', '.join('.' + s for s in sorted(canvas.get_supported_filetypes()))}.")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.1)
    atomic_write(path, buf.getvalue())
    log.debug("wrote %s", path)
    return path


def model_label(spec: str | None, checkpoint: str | Path | None = None) -> str:
    """``timm:resnet18 (tuned.safetensors)``: a spec and its checkpoint file name, so two runs differ on a plot."""
    text = str(spec or "model")
    if checkpoint:
        text += f" ({Path(str(checkpoint)).name})"
    return text


def measure_scale(measure: str, values: np.ndarray | None = None,
                  larger_is_more_similar: bool | None = None) -> dict[str, Any]:
    """Colour scale of a measure.

    ``vmin``, ``vmax`` (registered bounds, else the data), ``cmap``, ``larger``, ``direction`` ("higher = more
    similar" / "lower = more similar") and ``bounded`` (both bounds finite).
    """
    meta = _measure_meta(measure)
    larger = larger_is_more_similar
    if larger is None:
        larger = getattr(meta, "larger_is_more_similar", True)
    bounds = getattr(meta, "bounds", None)
    finite = np.asarray(values, dtype=np.float64) if values is not None else np.empty(0)
    finite = finite[np.isfinite(finite)]
    lo_data, hi_data = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = lo_data, hi_data
    bounded = False
    if bounds is not None:
        blo, bhi = (float(b) for b in bounds)
        bounded = math.isfinite(blo) and math.isfinite(bhi)
        lo = blo if math.isfinite(blo) else lo_data
        hi = bhi if math.isfinite(bhi) else hi_data
        lo, hi = min(lo, lo_data), max(hi, hi_data)  # never hide a value outside the declared range
    if hi <= lo:
        hi = lo + 1.0
    return {"vmin": lo, "vmax": hi, "cmap": "magma" if larger else "magma_r", "larger": bool(larger),
            "direction": "higher = more similar" if larger else "lower = more similar", "bounded": bounded}


def _measure_meta(measure: str) -> Any:
    """Return the registered metadata of a measure or streaming comparer (None if unknown)."""
    if not measure:
        return None
    try:
        from zooscope.measures import MEASURES

        if measure in MEASURES.available():
            return MEASURES.get(measure)
        from zooscope.embed.compare import COMPARERS

        if measure not in COMPARERS:
            return None
        base = measure.split("_", 1)[1] if "_" in measure else measure  # grad_nbs estimates nbs (bounds, direction)
        for candidate in (base, f"linear_{base}"):
            if candidate in MEASURES.available():
                return MEASURES.get(candidate)
        return COMPARERS.get(measure).meta
    except ImportError:  # pragma: no cover - a partial install
        return None
    return None


def _bound_text(v: float) -> str:
    if math.isclose(v, math.pi / 2):
        return "π/2"
    if math.isclose(v, math.pi):
        return "π"
    return f"{v:.3g}"


def heatmap(df: pd.DataFrame, path: str | Path, title: str | None = None, *, model_a: str | None = None,
            model_b: str | None = None) -> Path:
    """Layer × layer heat-map of a `zooscope.compare` table.

    Parameters
    ----------
    df : pandas.DataFrame of shape (n_layers_a, n_layers_b)
        Rows = layers of model A (y axis, first layer at the bottom as in Kornblith et al.), columns =
        layers of model B (x axis). ``df.attrs``: ``measure`` (its registered bounds set the colour scale),
        ``larger_is_more_similar``, ``n_examples``, and the model names ``model_a``/``model_b`` with their
        checkpoints ``weights_a``/``weights_b`` (file names shown on the axes).
    path : str or Path
        Output image; the suffix picks the format (``.png``, ``.pdf``, ``.svg``).
    title : str, optional
        Figure title (default: the measure, its direction and the number of inputs).
    model_a, model_b : str, optional
        Axis labels (default: from ``df.attrs``, see `model_label`).

    Returns
    -------
    Path
        ``path``.
    """
    return _save(heatmap_figure(df, title, model_a=model_a, model_b=model_b), path)


def heatmap_figure(df: pd.DataFrame, title: str | None = None, *, model_a: str | None = None,
                   model_b: str | None = None) -> Figure:
    """Return the `heatmap` figure, not yet written (for tests and notebooks)."""
    values = np.asarray(df.to_numpy(), dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ZooscopeInputError(f"heatmap needs a non-empty 2-D table; got shape {values.shape}.")
    measure = str(df.attrs.get("measure", ""))
    larger = df.attrs.get("larger_is_more_similar")
    scale = measure_scale(measure, values, None if larger is None else bool(larger))
    rows, cols = [str(r) for r in df.index], [str(c) for c in df.columns]
    longest = max(len(s) for s in rows + cols)
    side = 0.45 + 0.06 * min(longest, 30)  # room for tick labels
    fig = Figure(figsize=(min(3.5 + 0.45 * len(cols) + side, 40), min(3 + 0.45 * len(rows) + side, 40)),
                 dpi=110, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, origin="lower", cmap=scale["cmap"], vmin=scale["vmin"], vmax=scale["vmax"],
                   aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=8 if len(cols) < 30 else 6)
    ax.set_yticks(range(len(rows)), rows, fontsize=8 if len(rows) < 30 else 6)
    label_a = model_a or _attr_label(df.attrs, "a") or str(df.index.name or "model A")
    label_b = model_b or _attr_label(df.attrs, "b") or str(df.columns.name or "model B")
    ax.set_xlabel(f"B: {label_b}" if not label_b.startswith("B:") else label_b)
    ax.set_ylabel(f"A: {label_a}" if not label_a.startswith("A:") else label_a)
    if max(len(rows), len(cols)) <= _ANNOTATE_MAX:
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = values[i, j]
                ax.text(j, i, f"{v:.2f}" if np.isfinite(v) else "–", ha="center", va="center", fontsize=7,
                        color=_ink(im, v))
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(f"{measure or 'value'} ({scale['direction']})")
    if scale["bounded"]:
        ticks = list(bar.get_ticks())
        ticks = [t for t in ticks if scale["vmin"] <= t <= scale["vmax"]]
        for b in (scale["vmin"], scale["vmax"]):
            if not any(math.isclose(t, b, abs_tol=1e-9) for t in ticks):
                ticks.append(b)
        ticks = sorted(ticks)
        bar.set_ticks(ticks, labels=[_bound_text(t) for t in ticks])
    n = df.attrs.get("n_examples")
    ax.set_title(title if title is not None else
                 f"{measure or 'similarity'} ({scale['direction']})"
                 + (f" on {n:,} inputs" if isinstance(n, int | np.integer) else ""), fontsize=10)
    return fig


def _attr_label(attrs: dict[str, Any], side: str) -> str | None:
    spec = attrs.get(f"model_{side}")
    if spec is None:
        return None
    spec = str(spec)
    prefix = f"{side.upper()}: "
    spec = spec[len(prefix):] if spec.startswith(prefix) else spec
    return model_label(spec, attrs.get(f"weights_{side}") or attrs.get(f"checkpoint_{side}"))


def _ink(im: Any, v: float) -> str:
    """Black or white text, whichever reads better on the cell's colour."""
    if not np.isfinite(v):
        return "black"
    r, g, b, _ = im.cmap(im.norm(v))
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def match_plot(C: np.ndarray, rows: Sequence[int], cols: Sequence[int], values: Sequence[float], path: str | Path,
               *, model_a: str, model_b: str, layer_a: str, layer_b: str, method: str) -> Path:
    """Plot unit matching of two layers.

    The sorted matched correlations, and the correlation matrix with both axes reordered so that matched pairs
    sit on the diagonal.

    Parameters
    ----------
    C : ndarray of shape (n_units_a, n_units_b)
        Pearson correlation between every unit of A's layer and every unit of B's layer.
    rows, cols, values : sequences of the same length
        The matched pairs (unit of A, unit of B) and their correlations.
    model_a, model_b : str
        Model names (see `model_label`); ``layer_a``, ``layer_b``: module names; ``method``: bipartite or semi.
    """
    return _save(match_figure(C, rows, cols, values, model_a=model_a, model_b=model_b, layer_a=layer_a,
                              layer_b=layer_b, method=method), path)


def match_figure(C: np.ndarray, rows: Sequence[int], cols: Sequence[int], values: Sequence[float], *,
                 model_a: str, model_b: str, layer_a: str, layer_b: str, method: str) -> Figure:
    """Return the `match_plot` figure, not yet written."""
    C = np.asarray(C, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    rows, cols = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
    if C.ndim != 2 or values.size == 0:
        raise ZooscopeInputError(f"match_plot needs a 2-D correlation matrix and matched pairs; got {C.shape}.")
    order = np.argsort(-values, kind="stable")
    fig = Figure(figsize=(12, 5), dpi=110, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
    ax1.bar(np.arange(values.size), values[order], width=1.0, color="tab:blue")
    ax1.axhline(float(values.mean()), color="black", lw=0.8, ls="--", label=f"mean {values.mean():.3f}")
    ax1.set_xlabel("matched unit pair (sorted by correlation)")
    ax1.set_ylabel("Pearson correlation (higher = more similar)")
    ax1.set_ylim(min(0.0, float(values.min())) - 0.05, 1.05)
    ax1.legend(loc="lower left", fontsize=8)
    ax1.set_title(f"{method} matching: {values.size} pairs", fontsize=10)
    other_rows = np.setdiff1d(np.arange(C.shape[0]), rows)
    other_cols = np.setdiff1d(np.arange(C.shape[1]), cols)
    if method == "bipartite":
        row_order = np.concatenate([rows[order], other_rows])
        col_order = np.concatenate([cols[order], other_cols])
    else:  # semi: B units may repeat; order A by value and B by first use
        row_order = np.concatenate([rows[order], other_rows])
        col_order = np.concatenate([np.array(list(dict.fromkeys(cols[order].tolist())), dtype=int), other_cols])
    im = ax2.imshow(C[np.ix_(row_order, col_order)], cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                    interpolation="nearest")
    ax2.set_xlabel(f"units of B: {model_b} · {layer_b}\n(reordered by match)", fontsize=9)
    ax2.set_ylabel(f"units of A: {model_a} · {layer_a}\n(reordered by match)", fontsize=9)
    ax2.set_title("correlation, reordered (matched pairs on the diagonal)", fontsize=10)
    fig.colorbar(im, ax=ax2, fraction=0.046, label="Pearson correlation [-1, 1]")
    fig.suptitle(f"A: {model_a} · {layer_a}   vs   B: {model_b} · {layer_b}", fontsize=11)
    return fig


# -- the zoo map -------------------------------------------------------------------------------------------------
_OFFSETS = [(6, 6), (6, -12), (-6, 6), (-6, -12), (10, -3), (-10, -3), (0, 10), (0, -16)]  # points


def zoo_map(coords_df: pd.DataFrame, path: str | Path, title: str | None = None, *,
            max_labels: int = 25) -> pd.DataFrame:
    """Scatter plot of a 2-D zoo map (`zooscope.zoo.curate.zoo_map`): labels that never overlap.

    Points are coloured by training dataset. Labels are placed greedily (most isolated point first) at the
    first of eight offsets around the point whose text box overlaps no other label and no other point and
    stays inside the axes; at most ``max_labels`` are drawn. When some models are left unlabelled, the
    figure says so and the full table is written beside the image as ``<image stem>.csv``.

    Parameters
    ----------
    coords_df : pandas.DataFrame
        Columns ``model``, ``x``, ``y`` and optionally ``trained_on``.
    path : str or Path
        Output image; the suffix picks the format.
    title : str, optional
    max_labels : int, default=25

    Returns
    -------
    pandas.DataFrame
        ``coords_df`` with a boolean ``labelled`` column.
    """
    fig, df = zoo_map_figure(coords_df, title, max_labels=max_labels)
    if not df["labelled"].all():
        side = Path(path).with_suffix(".csv")
        n = len(df)
        note = (f"{int(df['labelled'].sum())} of {n} models labelled (no room for the rest); all {n} with "
                f"coordinates: {side.name}")
        fig.text(0.01, 0.005, note, fontsize=7, ha="left", va="bottom", color="0.3")
        atomic_write(side, df.to_csv(index=False).encode())
    _save(fig, path)
    return df


def zoo_map_figure(coords_df: pd.DataFrame, title: str | None = None, *,
                   max_labels: int = 25) -> tuple[Figure, pd.DataFrame]:
    """Return the `zoo_map` figure (labels placed) and the table with its ``labelled`` column, not yet written."""
    missing = {"model", "x", "y"} - set(coords_df.columns)
    if missing:
        raise ZooscopeInputError(f"zoo_map needs columns model, x, y; missing {sorted(missing)}.")
    df = coords_df.reset_index(drop=True).copy()
    n = len(df)
    fig = Figure(figsize=(7.5, 6), dpi=110)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    groups = df["trained_on"].fillna("unknown").astype(str) if "trained_on" in df else pd.Series(["models"] * n)
    colours = _palette(len(groups.unique()))
    for colour, (name, part) in zip(colours, df.groupby(groups.to_numpy(), sort=True), strict=False):
        ax.scatter(part["x"], part["y"], label=str(name), s=28, color=colour, zorder=3, edgecolor="white",
                   linewidth=0.5)
    ax.margins(0.12)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.set_title(title or "zoo map", fontsize=10)
    if "trained_on" in df:
        ax.legend(fontsize=7, title="trained on", title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    df["labelled"] = _place_labels(ax, canvas, df, max_labels)
    return fig, df


def _palette(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _place_labels(ax: Any, canvas: FigureCanvasAgg, df: pd.DataFrame, max_labels: int) -> np.ndarray:
    """Greedy non-overlapping labels; returns which rows got one."""
    renderer = canvas.get_renderer()
    n = len(df)
    done = np.zeros(n, dtype=bool)
    if n == 0 or max_labels <= 0:
        return done
    pts = ax.transData.transform(df[["x", "y"]].to_numpy(dtype=float))  # display pixels
    axbox = ax.get_window_extent(renderer)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(n) * 1e12
    order = np.argsort(-d.min(axis=1), kind="stable") if n > 1 else np.arange(n)
    taken: list[Any] = []
    r = 4.0  # half the marker size, pixels
    point_boxes = [(x - r, y - r, x + r, y + r) for x, y in pts]
    for i in order:
        if done.sum() >= max_labels:
            break
        for dx, dy in _OFFSETS:
            t = ax.annotate(str(df.at[i, "model"]), (df.at[i, "x"], df.at[i, "y"]), xytext=(dx, dy),
                            textcoords="offset points", fontsize=7, zorder=4,
                            ha="left" if dx >= 0 else "right")
            bb = t.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            inside = box[0] >= axbox.x0 and box[2] <= axbox.x1 and box[1] >= axbox.y0 and box[3] <= axbox.y1
            clash = any(_overlap(box, o) for o in taken) or any(
                _overlap(box, p) for j, p in enumerate(point_boxes) if j != i)
            if inside and not clash:
                taken.append(box)
                done[i] = True
                break
            t.remove()
    return done


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])
