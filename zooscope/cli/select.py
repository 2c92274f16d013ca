"""`zooscope select`: which zoo model to transfer from for a labelled dataset."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, open_zoo, say, status

app = typer.Typer()


@app.command("select")
def select_cmd(
    dataset: Annotated[str, typer.Argument(help="A labelled dataset in the zoo (add it with add-dataset).")],
    zoo: ZooOpt,
    k: Annotated[int, typer.Option("--k", min=1, max=100_000, help="Number of models to return.")] = 10,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """Rank zoo models for transfer to DATASET, with per-method columns and a `why` column.

    Example: zooscope select my-task --k 5
    """
    z = open_zoo(zoo)
    options: dict[str, Any] = {}
    if "progress" in inspect.signature(z.select).parameters or _select_takes_progress():
        options["progress"] = True  # the library draws the bar (feature passes and scores) on stderr
        table = z.select(dataset, k=k, **options)
    else:
        say(f"selecting models for {dataset!r} (feature passes over every candidate; this can take minutes)")
        with status(f"selecting models for {dataset}"):
            table = z.select(dataset, k=k)
    emit(table, fmt, out, title=f"models to transfer from for {dataset}")


def _select_takes_progress() -> bool:
    """`Zoo.select(**options)` forwards to `zooscope.zoo.select.select`: does that take ``progress``?"""
    try:
        from zooscope.zoo.select import select
    except ImportError:
        return False
    return "progress" in inspect.signature(select).parameters
