"""The HTML and figure pieces of `zooscope.report`: escaping, sortable tables, inline SVG figures.

Every value that reaches the page goes through `esc` (names are data: a hostile name never becomes markup), every
figure is an inline SVG (no file, no request).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from typing import Any

import numpy as np
import pandas as pd

_TICKS_MAX = 60  # name every row/column of a heat map up to this many


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _mpl_text(value: Any) -> str:
    """Text for matplotlib: ``$`` would start mathtext (and can raise on an odd count)."""
    return str(value).replace("$", r"\$")


def _short(value: Any, n: int = 28) -> str:
    """Return a tick label: at most ``n`` characters (the tables give the full name), mathtext-safe."""
    text = str(value)
    return _mpl_text(text if len(text) <= n else text[:n - 1] + "…")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    if isinstance(v, list | tuple):
        return "×".join(map(str, v)) if all(isinstance(x, int | np.integer) for x in v) else str(list(v))
    if isinstance(v, dict):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def _sort_key(v: Any) -> str:
    """Return the ``data-sort`` of a cell: numbers sort as numbers, the rest as text."""
    if isinstance(v, bool | np.bool_):
        return str(int(v))
    if isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v):
        return repr(float(v))
    return ""


def table(df: pd.DataFrame, *, tid: str, caption: str | None = None, index: bool = False,
          sortable: bool = True, tall: int = 30) -> str:
    """Return an escaped HTML table (``class="sortable"``: the inline script sorts it on a header click)."""
    if df is None or df.empty:
        return '<p class="note">(none)</p>'
    d = df.reset_index() if index else df
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f'<th scope="col" tabindex="0">{esc(c)}</th>' if sortable else f'<th scope="col">{esc(c)}</th>'
                   for c in d.columns)
    rows = []
    for rec in d.itertuples(index=False, name=None):
        cells = []
        for v in rec:
            text = esc(_fmt(v))
            key = _sort_key(v)
            cells.append(f'<td data-sort="{key}">{text}</td>' if key else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    box = "scroll tall" if len(d) > tall else "scroll"  # a long table scrolls in its own box (header stays)
    return (f'<div class="{box}"><table id="{tid}"{cls}>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _figure(body: str, caption: str) -> str:
    return f"<figure>{body}<figcaption>{esc(caption)}</figcaption></figure>"


def _svg_bytes(fig: Any) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "zooscope-report"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def _img(fig: Any, alt: str) -> str:
    data = base64.b64encode(_svg_bytes(fig)).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="{esc(alt)}">'


# -- figures --------------------------------------------------------------------------------------------------------
def matrix_figure(df: pd.DataFrame, *, title: str, label: str, axis: str, larger_is_more_similar: bool,
                  vmin: float | None = None, vmax: float | None = None) -> Any:
    """Return a square heat map of ``df`` (rows × columns named ``axis``); brighter = more similar (`zooscope.plot`)."""
    from matplotlib.figure import Figure

    values = np.asarray(df.to_numpy(), dtype=np.float64)
    n = max(values.shape)
    side = float(np.clip(3.0 + 0.22 * n, 4.0, 7.5)) if n <= _TICKS_MAX else 7.0
    fig = Figure(figsize=(side + 1.8, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="magma" if larger_is_more_similar else "magma_r", vmin=vmin, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    if n <= _TICKS_MAX:
        font = 8 if n <= 25 else 6
        ax.set_xticks(range(values.shape[1]), [_short(c) for c in df.columns], rotation=60, ha="right",
                      rotation_mode="anchor", fontsize=font)
        ax.set_yticks(range(values.shape[0]), [_short(r) for r in df.index], fontsize=font)
        ax.set_xlabel(axis)
        ax.set_ylabel(axis)
    else:  # too many to name: positions in name order (the tables list them)
        ax.set_xlabel(f"{axis} (position in the order of the caption)")
        ax.set_ylabel(f"{axis} (position in the order of the caption)")
    if n <= 12:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                r, g, b, _ = im.cmap(im.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
                ink = "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"
                ax.text(j, i, f"{v:.2f}" if np.isfinite(v) else "–", ha="center", va="center", fontsize=7, color=ink)
    bar = fig.colorbar(im, ax=ax, shrink=0.85)
    bar.set_label(label)
    ax.set_title(title, fontsize=9)
    return fig


def _cluster_order(S: pd.DataFrame) -> pd.DataFrame:
    """``S`` with rows and columns in the leaf order of average-linkage clustering on 1 − S (NaN = unrelated)."""
    if len(S) < 3:
        return S
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    D = 1.0 - np.clip(np.nan_to_num(S.to_numpy(dtype=np.float64), nan=0.0), 0.0, 1.0)
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    order = leaves_list(linkage(squareform(D, checks=False), method="average"))
    return S.iloc[order, order]


def map_svg(coords: pd.DataFrame, *, title: str, max_labels: int = 25) -> str:
    """Return the zoo map (`zooscope.plot.zoo_map_figure`) as inline SVG, each point with a ``<title>`` (its name)."""
    from zooscope.plot import zoo_map_figure

    shown = coords.copy()
    shown["model"] = [_mpl_text(m) for m in shown["model"]]
    if "trained_on" in shown:
        shown["trained_on"] = [None if t is None else _mpl_text(t) for t in shown["trained_on"]]
    fig, _ = zoo_map_figure(shown, _mpl_text(title), max_labels=max_labels)
    ax = fig.axes[0]
    for i, (x, y) in enumerate(coords[["x", "y"]].to_numpy(dtype=float)):  # invisible hover targets
        ax.plot([x], [y], "o", ms=9, alpha=0.0, gid=f"zs-pt-{i}", zorder=5)
    svg = _svg_bytes(fig).decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: the SVG is inside HTML
    names = [str(m) for m in coords["model"]]
    svg = re.sub(r'<g id="zs-pt-(\d+)">',
                 lambda m: f'<g id="zs-pt-{m.group(1)}" class="pt"><title>{esc(names[int(m.group(1))])}</title>',
                 svg)
    return svg.replace("<svg ", '<svg role="img" aria-label="zoo map" ', 1)


# -- sections -------------------------------------------------------------------------------------------------------
