"""`zooscope select`: which zoo model to transfer from for a labelled dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, user_errors

app = typer.Typer()


@app.command("select")
def select_cmd(
    dataset: Annotated[str, typer.Argument(help="A labelled dataset in the zoo (add it with add-dataset).")],
    zoo: ZooOpt,
    k: Annotated[int, typer.Option("--k", min=1, help="Number of models to return.")] = 10,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """Rank zoo models for transfer to DATASET, with per-method columns and a `why` column.

    Example: zooscope select my-task --k 5
    """
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        table = Zoo.open(zoo).select(dataset, k=k)
        emit(table, fmt, out, title=f"models to transfer from for {dataset}")
