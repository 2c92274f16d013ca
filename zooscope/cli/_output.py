"""The CLI's output: tables on stdout (Rich table, csv or json), table files, a spinner on stderr."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from zooscope.cli._errors import say
from zooscope.cli._validators import check_format, check_table_path

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


@contextmanager
def status(text: str) -> Iterator[None]:
    """Return a spinner with elapsed time on stderr, for library calls that do not report progress themselves."""
    if not err.is_terminal:
        yield
        return
    with err.status(Text(text), spinner="dots"):
        yield


# -- tables -----------------------------------------------------------------------------------------------------
def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return ""
    return str(v)


def _fit(natural: list[int], floors: list[int], room: int) -> list[int]:
    """Column widths summing to at most ``room``: the widest column above its floor loses one character at a
    time (so long text is cut first and short cells keep their width)."""
    widths = list(natural)
    while sum(widths) > room:
        i = max(range(len(widths)), key=lambda j: (widths[j] > floors[j], widths[j]))
        if widths[i] <= floors[i]:
            break  # every column at its floor: the table is wider than the terminal
        widths[i] -= 1
    return widths


def print_table(df: pd.DataFrame, *, title: str | None = None, index: bool = False) -> None:
    """Rich table of a DataFrame on stdout, sized to the terminal width: one line per row, never wrapped.

    Numbers and short cells are never cut; when the table is wider than the terminal, the widest text columns
    (``why``, ``arch``, paths, long names) are cut with an ellipsis. ``--format csv|json`` and table files keep
    the full text.
    """
    heads = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    columns = ([[str(i) for i in df.index]] if index else []) + [[_fmt(v) for v in df[c].tolist()]
                                                                 for c in df.columns]
    natural = [max([len(h), *map(len, cells)]) for h, cells in zip(heads, columns, strict=True)]
    floors = [n if n <= 10 or all(_is_number(v) for v in cells) else min(n, 16 if j == 0 else 8)
              for j, (n, cells) in enumerate(zip(natural, columns, strict=True))]
    room = out.width - 3 * len(heads) - 1  # a border and a blank either side of each cell
    widths = _fit(natural, floors, room)
    t = Table(title=Text(title) if title else None, show_lines=False)
    for j, h in enumerate(heads):
        t.add_column(Text(h), no_wrap=True, overflow="ellipsis", max_width=widths[j], min_width=widths[j],
                     style="bold" if index and j == 0 else "")
    for r in range(len(df)):
        t.add_row(*[Text(col[r]) for col in columns])
    out.print(t)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == ""
    return True


def emit(
    df: pd.DataFrame, fmt: str = "table", path: Path | None = None, *, index: bool = False, title: str | None = None
) -> None:
    """Write ``df`` to ``path`` (.csv/.json/.parquet by suffix) or print it in ``fmt`` on stdout.

    Models a query skipped (``df.attrs["skipped"]``: [(model, reason)], see `zooscope.zoo.integrity`) are said
    on stderr, one line each.
    """
    for name, reason in df.attrs.get("skipped") or []:
        say(f"skipped {name}: {reason}")
    if path is not None:
        write_table(df, path, index=index)
        say(f"wrote {path} ({df.shape[0]}×{df.shape[1]})")
        return
    check_format(fmt)
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=index))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="split" if index else "records", indent=1, default_handler=str) + "\n")
    else:
        print_table(df, title=title, index=index)


def write_table(df: pd.DataFrame, path: Path, *, index: bool = False) -> None:
    """Write a DataFrame by file suffix, atomically (`zooscope._io.atomic_write`)."""
    from zooscope._io import atomic_write

    path = check_table_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = df.to_csv(index=index).encode()
    elif suffix == ".json":
        text = df.to_json(orient="split" if index else "records", default_handler=str)
        data = json.dumps(json.loads(text), indent=1).encode()
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=index)
        data = buf.getvalue()
    atomic_write(path, data)
