"""`zooscope check`: catalog ↔ vectors ↔ index consistency and changed checkpoints."""

from __future__ import annotations

import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, err, user_errors

app = typer.Typer()


@app.command("check")
def check_cmd(zoo: ZooOpt, fmt: FormatOpt = "table") -> None:
    """Check the zoo: every catalog row has its vector, every index matches the catalog, checkpoints unchanged.

    Exits 1 when a problem is found.

    Example: zooscope check --zoo ./zoo
    """
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        problems = Zoo.open(zoo).check()
    if len(problems):
        emit(problems, fmt, title="problems")
        raise typer.Exit(code=1)
    err.print("[green]zoo is consistent[/green]")
