"""Rich tables of DataFrames that fit a width: one line per row, never wrapped (the CLI's and the demo's tables).

When a table is wider than the terminal, the widest text columns (``why``, ``arch``, paths, long names) lose one
character at a time and are cut with an ellipsis; numbers and short cells keep their width. The full text stays
in ``--format csv|json`` and table files.
"""

from __future__ import annotations

import pandas as pd
from rich.table import Table
from rich.text import Text

__all__ = ["fit_widths", "fitted_table"]


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return ""
    return str(v)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == ""
    return True


def fit_widths(natural: list[int], floors: list[int], room: int) -> list[int]:
    """Column widths summing to at most ``room``.

    The widest column above its floor loses one character at a time (so long text is cut first and short cells
    keep their width).
    """
    widths = list(natural)
    while sum(widths) > room:
        i = max(range(len(widths)), key=lambda j: (widths[j] > floors[j], widths[j]))
        if widths[i] <= floors[i]:
            break  # every column at its floor: the table is wider than the terminal
        widths[i] -= 1
    return widths


def fitted_table(df: pd.DataFrame, width: int, *, title: str | None = None, index: bool = False) -> Table:
    """Return a Rich table of ``df`` at most ``width`` columns wide (unless even its floors do not fit), no markup.

    Floors: a column of numbers keeps its longest number (its header may be cut), a column of cells of at most
    10 characters keeps them; the first text column keeps 16 characters, other text columns 8. When the floors
    do not fit between box lines, the table drops its vertical lines (2 characters a column instead of 3).
    """
    heads = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    columns = ([[str(i) for i in df.index]] if index else []) + [[_fmt(v) for v in df[c].tolist()]
                                                                 for c in df.columns]
    natural = [max([len(h), *map(len, cells)]) for h, cells in zip(heads, columns, strict=True)]
    longest = [max([3, *map(len, cells)]) for cells in columns]
    floors = [min(n, m) if m <= 10 or all(_is_number(v) for v in cells) else min(n, 16 if j == 0 else 8)
              for j, (n, m, cells) in enumerate(zip(natural, longest, columns, strict=True))]
    boxed = sum(floors) + 3 * len(heads) + 1 <= width  # a border and a blank either side of each cell
    room = width - (3 * len(heads) + 1 if boxed else 2 * len(heads))
    widths = fit_widths(natural, floors, room)
    t = Table(title=Text(title) if title else None, show_lines=False, **({} if boxed else {"box": None}))
    for j, h in enumerate(heads):
        t.add_column(Text(h), no_wrap=True, overflow="ellipsis", max_width=widths[j], min_width=widths[j],
                     style="bold" if index and j == 0 else "", header_style="bold" if boxed else "bold underline")
    for r in range(len(df)):
        t.add_row(*[Text(col[r]) for col in columns])
    return t
