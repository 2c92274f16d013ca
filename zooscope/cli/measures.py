"""`zooscope measures`: list the registered measures and their metadata."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from zooscope.cli._common import FormatOpt, emit, user_errors

app = typer.Typer()


@app.command("measures")
def measures_cmd(
    pattern: Annotated[str, typer.Argument(help="Glob over measure names, e.g. '*cka*'.")] = "*",
    fmt: FormatOpt = "table",
) -> None:
    """List every measure with its direction, metric flag, invariances and bounds.

    Example: zooscope measures '*cka*'
    """
    from zooscope import measures as M

    with user_errors():
        rows = []
        for name in M.available(pattern):
            m = M.get(name)
            rows.append(
                {
                    "measure": name,
                    "larger_is_more_similar": m.larger_is_more_similar,
                    "is_metric": m.is_metric,
                    "invariances": str(m.invariances).replace("Inv.", ""),
                    "bounds": m.bounds,
                    "inputs": m.inputs,
                    "layerwise": m.layerwise,
                }
            )
        emit(pd.DataFrame(rows), fmt)
