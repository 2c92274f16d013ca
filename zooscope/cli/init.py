"""`zooscope init`: create an empty zoo."""

from __future__ import annotations

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import ZooOpt

app = typer.Typer()


@app.command("init")
def init_cmd(zoo: ZooOpt) -> None:
    """Create an empty zoo (catalog, vector store, index folder); a no-op on an existing zoo.

    Example: zooscope init --zoo ./zoo
    """
    z = open_zoo(zoo, create=True)
    say(f"zoo ready at {z.path} ({len(z.models())} models, {len(z.datasets())} datasets)")
