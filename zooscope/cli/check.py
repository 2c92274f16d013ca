"""`zooscope check`: catalog ↔ vectors ↔ index consistency and changed checkpoints; `--fix` repairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import EXIT_FOUND, say
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit, status

app = typer.Typer()


@app.command("check")
def check_cmd(
    zoo: ZooOpt,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what can be repaired: drop catalog rows whose vector "
                                      "is gone, delete orphan vectors, rebuild the indices, re-queue changed "
                                      "checkpoints. Run `zooscope embed` afterwards to recompute what was "
                                      "dropped or changed.")] = False,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write the problems to .csv/.json/.parquet.")] = None,
) -> None:
    """Check the zoo: every catalog row has its vector, every index matches the catalog, checkpoints unchanged.

    Exits 1 when a problem is found (after --fix: when one remains), 0 when the zoo is consistent.

    Example: zooscope check --zoo ./zoo ; zooscope check --fix && zooscope embed
    """
    z = open_zoo(zoo)
    if (note := z.task2vec_probe_note()):
        say(note)
    if fix:
        with status("checking the zoo"):
            before = z.check()
        if len(before):
            with status(f"fixing {len(before)} problems"):
                problems = z.check(fix=True)
            say(f"fixed {len(before) - len(problems)} of {len(before)} problems; run `zooscope embed` to "
                "recompute what was dropped")
        else:
            problems = before
    else:
        with status("checking the zoo"):
            problems = z.check()
    if len(problems):
        emit(problems, fmt, out, title="problems")
        raise typer.Exit(code=EXIT_FOUND)
    say("zoo is consistent")
