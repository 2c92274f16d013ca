"""`zooscope curate dupes|clusters|map`: curation of a zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope._validation import check_choice
from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit

app = typer.Typer(help="Curate the zoo: near-duplicates, clusters, a 2-D map.", no_args_is_help=True)

KINDS = ("cka", "task2vec", "gradsketch")


@app.command("dupes")
def dupes_cmd(
    zoo: ZooOpt,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0,
                                             help="Similarity above which two models are near-duplicates "
                                             "(in (0, 1]).")] = 0.995,
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    fmt: FormatOpt = "table",
) -> None:
    """Show groups of near-identical models.

    Example: zooscope curate dupes --threshold 0.995
    """
    from zooscope.zoo import curate

    check_choice(by, KINDS, "--by", "zooscope curate dupes")
    z = open_zoo(zoo)
    table = curate.duplicates(z, threshold=threshold, by=by, progress=True)
    emit(table, fmt, title="near-duplicate groups")


@app.command("clusters")
def clusters_cmd(
    zoo: ZooOpt,
    n_clusters: Annotated[int | None, typer.Option(min=1, max=100_000, help="Number of clusters (default: "
                                                   "chosen automatically).")] = None,
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    fmt: FormatOpt = "table",
) -> None:
    """Cluster the zoo's models by similarity.

    Example: zooscope curate clusters --n-clusters 3
    """
    from zooscope.zoo import curate

    check_choice(by, KINDS, "--by", "zooscope curate clusters")
    z = open_zoo(zoo)
    table = curate.clusters(z, n_clusters=n_clusters, by=by, progress=True)
    emit(table, fmt, title="clusters")


@app.command("map")
def map_cmd(
    zoo: ZooOpt,
    out: Annotated[Path, typer.Option(help="Image to write (.png, .pdf or .svg).")] = Path("zoo_map.png"),
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    labels: Annotated[int, typer.Option(min=0, max=10_000, help="Label at most this many points on the map "
                                        "(those with the most room); every model is in the table.")] = 25,
    fmt: FormatOpt = "table",
) -> None:
    """Draw a 2-D map of the zoo (MDS of 1 − similarity), saved as an image; the coordinates go to stdout.

    Example: zooscope curate map --by cka --out zoo_map.png
    """
    from zooscope.plot import zoo_map as draw
    from zooscope.zoo import curate

    check_choice(by, KINDS, "--by", "zooscope curate map")
    z = open_zoo(zoo)
    coords = curate.zoo_map(z, by=by, progress=True)
    what = {"cka": "linear CKA of penultimate layers", "task2vec": "Task2Vec similarity of training sets",
            "gradsketch": "gradient-sketch CKA"}[by]
    coords = draw(coords, out, title=f"zoo map: distance = 1 − {what}", max_labels=labels)
    emit(coords, fmt, title="zoo map coordinates")
    say(f"wrote {out}")


map_cmd.out_is_image = True  # type: ignore[attr-defined]  # --out is checked as an image, not a table
