"""`zooscope export DIR` and `zooscope import DIR --zoo NEW`: back a zoo up and rebuild it without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import ZooOpt
from zooscope.cli._output import status

app = typer.Typer()


@app.command("export")
def export_cmd(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder to write the export to.")],
    zoo: ZooOpt,
) -> None:
    """Export the zoo: catalog tables (JSON), vector files, probe files and the zoo marker, each verified first.

    Nothing is recomputed by `zooscope import`; FAISS indices are rebuilt from the vectors there.

    Example: zooscope export ./zoo-backup --zoo ./zoo
    """
    from zooscope.zoo.transfer_io import export_zoo

    z = open_zoo(zoo)
    with status(f"exporting to {dest}"):
        manifest = export_zoo(z, dest)
    rows = ", ".join(f"{n} {k}" for k, n in manifest["rows"].items())
    say(f"exported {rows} and {len(manifest['files'])} files to {dest}")


@app.command("import")
def import_cmd(
    src: Annotated[Path, typer.Argument(help="A folder written by `zooscope export`.")],
    zoo: ZooOpt,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="Accept model/probe specs naming any package.module:factory (code that `embed` and "
        "`select` will run). Without it only zooscope's own factories and timm: names are imported.")] = False,
) -> None:
    """Create a new zoo (--zoo, which must not exist yet or be empty) from an export; every file is verified.

    An export is data: specs that name other code are refused (listed) unless --trust-code is given.

    Example: zooscope import ./zoo-backup --zoo ./zoo-restored
    """
    from zooscope.zoo.transfer_io import import_zoo
    from zooscope.zoo.zoo import Zoo

    with status(f"importing {src}"):
        z = import_zoo(src, zoo, Zoo, trust_code=trust_code)
    say(f"imported {len(z.catalog.models())} models, {len(z.catalog.datasets())} datasets and "
        f"{len(z.catalog.embeddings())} embeddings into {z.root}")
