"""`zooscope remove model|dataset NAME`: delete a model or dataset with its vectors and index entries."""

from __future__ import annotations

from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import ZooOpt

app = typer.Typer()


@app.command("remove")
def remove_cmd(
    what: Annotated[str, typer.Argument(help="model or dataset.")],
    name: Annotated[str, typer.Argument(help="Its name in the zoo (see `zooscope ls models|datasets`).")],
    zoo: ZooOpt,
) -> None:
    """Remove a model or a dataset from the zoo: its catalog row, its vectors and its index entries.

    Models trained on a removed dataset stay (their trained_on becomes unknown to the ranking).

    Example: zooscope remove model ckpt-0412 --zoo ./zoo
    """
    from zooscope._validation import check_choice

    check_choice(what, ("model", "dataset"), "what", "zooscope remove")
    z = open_zoo(zoo)
    if what == "model":
        z.remove_model(name)
    else:
        z.remove_dataset(name)
    say(f"removed {what} {name!r}")
