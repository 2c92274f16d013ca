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
from rich.text import Text

from zooscope._tables import fitted_table
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
def print_table(df: pd.DataFrame, *, title: str | None = None, index: bool = False) -> None:
    """Rich table of a DataFrame on stdout, sized to the terminal width (`zooscope._tables.fitted_table`).

    One line per row, long text cut with an ellipsis. ``--format csv|json`` and table files keep the full
    text.
    """
    out.print(fitted_table(df, out.width, title=title, index=index))


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
