"""Shared pieces of the CLI verbs: output of tables, errors on stderr, the --zoo option."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from zooscope._validation import ZooscopeInputError

err = Console(stderr=True)
out = Console()

Format = Literal["table", "csv", "json"]


def default_zoo() -> str:
    """`$ZOOSCOPE_ZOO`, else ./zoo."""
    return os.environ.get("ZOOSCOPE_ZOO", "zoo")


ZooOpt = Annotated[
    str,
    typer.Option(
        "--zoo",
        help="Zoo folder (or a catalog URL). Default: $ZOOSCOPE_ZOO, else ./zoo.",
        default_factory=default_zoo,
        show_default=False,
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: table, csv or json.")]


def open_zoo(zoo: str, *, create: bool = False):
    """The zoo at ``--zoo``. A missing zoo raises `ZooscopeInputError` naming the path (so inside `user_errors`
    a mistyped ``--zoo`` exits 2 with one line); only ``create=True`` (``zooscope init``) makes one."""
    from zooscope.zoo.zoo import Zoo

    return Zoo.open(zoo, create=create)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn bad input into one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except (ZooscopeInputError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(df: pd.DataFrame, *, title: str | None = None, index: bool = False) -> None:
    """Rich table of a DataFrame on stdout."""
    t = Table(title=title, show_lines=False)
    if index:
        t.add_column(str(df.index.name or ""), style="bold")
    for c in df.columns:
        t.add_column(str(c))
    for idx, row in df.iterrows():
        cells = [_fmt(v) for v in row.tolist()]
        t.add_row(*([str(idx)] if index else []), *cells)
    out.print(t)


def emit(
    df: pd.DataFrame, fmt: str = "table", path: Path | None = None, *, index: bool = False, title: str | None = None
) -> None:
    """Write ``df`` to ``path`` (.csv/.json/.parquet by suffix) or print it in ``fmt`` on stdout."""
    if path is not None:
        write_table(df, path, index=index)
        err.print(f"wrote {path} ({df.shape[0]}×{df.shape[1]})")
        return
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=index))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="split" if index else "records", indent=1) + "\n")
    elif fmt == "table":
        print_table(df, title=title, index=index)
    else:
        raise ZooscopeInputError(f"--format must be table, csv or json; got {fmt!r}.")


def write_table(df: pd.DataFrame, path: Path, *, index: bool = False) -> None:
    """Write a DataFrame by file suffix (atomic: temp name + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    suffix = path.suffix.lower()
    writers: dict[str, Callable[[], None]] = {
        ".csv": lambda: df.to_csv(tmp, index=index),
        ".json": lambda: tmp.write_text(
            json.dumps(json.loads(df.to_json(orient="split" if index else "records")), indent=1)
        ),
        ".parquet": lambda: df.to_parquet(tmp, index=index),
    }
    if suffix not in writers:
        raise ZooscopeInputError(f"--out must end in .csv, .json or .parquet; got {path.name!r}.")
    writers[suffix]()
    os.replace(tmp, path)
