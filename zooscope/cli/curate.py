"""`zooscope curate dupes|clusters|map`: curation of a zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, err, user_errors

app = typer.Typer(help="Curate the zoo: near-duplicates, clusters, a 2-D map.", no_args_is_help=True)


@app.command("dupes")
def dupes_cmd(
    zoo: ZooOpt,
    threshold: Annotated[float, typer.Option(help="CKA above which two models are near-duplicates.")] = 0.995,
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    fmt: FormatOpt = "table",
) -> None:
    """Groups of near-identical models.

    Example: zooscope curate dupes --threshold 0.995
    """
    from zooscope.zoo import curate
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        emit(curate.duplicates(Zoo.open(zoo), threshold=threshold, by=by), fmt, title="near-duplicate groups")


@app.command("clusters")
def clusters_cmd(
    zoo: ZooOpt,
    n_clusters: Annotated[int | None, typer.Option(help="Number of clusters (default: chosen automatically).")] = None,
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    fmt: FormatOpt = "table",
) -> None:
    """Cluster the zoo's models by similarity.

    Example: zooscope curate clusters --n-clusters 3
    """
    from zooscope.zoo import curate
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        emit(curate.clusters(Zoo.open(zoo), n_clusters=n_clusters, by=by), fmt, title="clusters")


@app.command("map")
def map_cmd(
    zoo: ZooOpt,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("zoo_map.png"),
    by: Annotated[str, typer.Option(help="Embedding kind: cka or task2vec.")] = "cka",
    fmt: FormatOpt = "table",
) -> None:
    """A 2-D map of the zoo (MDS of the distances), saved as a PNG.

    Example: zooscope curate map --by cka --out zoo_map.png
    """
    from zooscope.zoo import curate
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        coords = curate.zoo_map(Zoo.open(zoo), by=by, path=out)
        emit(coords, fmt, title="zoo map coordinates")
        err.print(f"wrote {out}")
