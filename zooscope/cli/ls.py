"""`zooscope ls`: list the zoo's models, datasets, embeddings or failures."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, user_errors

app = typer.Typer()


@app.command("ls")
def ls_cmd(
    zoo: ZooOpt,
    what: Annotated[str, typer.Argument(help="models, datasets or embeddings.")] = "models",
    failed: Annotated[bool, typer.Option("--failed", help="List the failed embedding pairs instead.")] = False,
    fmt: FormatOpt = "table",
) -> None:
    """List what the zoo holds.

    Example: zooscope ls models --zoo ./zoo ; zooscope ls --failed
    """
    from zooscope._validation import check_choice
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        z = Zoo.open(zoo)
        if failed:
            table = z.failures()
        else:
            check_choice(what, ("models", "datasets", "embeddings"), "what", "zooscope ls")
            listings = {"models": z.models, "datasets": z.datasets,
                        "embeddings": lambda: pd.DataFrame(z.catalog.embeddings())}
            table = listings[what]()
        if not isinstance(table, pd.DataFrame):
            table = pd.DataFrame(table)
        emit(table, fmt, title=("failures" if failed else what))
