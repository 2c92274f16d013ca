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
    counts = f"{len(z.models())} models, {len(z.datasets())} datasets"
    if "://" in zoo:  # a catalog URL (PostgreSQL, …): name the database, and where the vectors go
        url = z.catalog.engine.url.render_as_string(hide_password=True)
        say(f"zoo ready: catalog {url}, storage folder {z.path} ({counts})")
    else:
        say(f"zoo ready at {z.path} ({counts})")
