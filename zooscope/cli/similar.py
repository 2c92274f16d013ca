"""`zooscope similar`: the zoo models most similar to a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.cli._common import open_zoo
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit, status
from zooscope.cli._validators import parse_json_object

app = typer.Typer()


@app.command("similar")
def similar_cmd(
    model: Annotated[str, typer.Argument(help="A model in the zoo, or a name for a new model given by --arch.")],
    zoo: ZooOpt,
    k: Annotated[int, typer.Option("--k", min=1, max=100_000, help="Number of neighbours to return.")] = 10,
    by: Annotated[str, typer.Option(help="Embedding kind: cka, task2vec, gradsketch or fisher (stored (model, "
                                   "dataset) pair vectors, same architecture only).")] = "cka",
    arch: Annotated[str | None, typer.Option(help="Spec of a NEW model (not in the zoo), embedded on the fly.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint of the new model (.safetensors).")] = None,
    kwargs: Annotated[str | None, typer.Option(help="JSON kwargs of the new model's factory.")] = None,
    rule: Annotated[
        str, typer.Option(help="Model-level score: layer (the penultimate layer) or best_match.")
    ] = "layer",
    dataset: Annotated[str | None, typer.Option(help="--by fisher: compare the models' Fisher on this dataset "
                                                "(default: each model's own training set).")] = None,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """Rank the zoo models most similar to MODEL (a zoo model never lists itself).

    Example: zooscope similar mnv3-digits --k 5 --by cka
    Example: zooscope similar mnv3-digits --by fisher --dataset svhn
    """
    check_choice(by, ("cka", "task2vec", "gradsketch", "fisher"), "--by", "zooscope similar")
    check_choice(rule, ("layer", "best_match"), "--rule", "zooscope similar")
    kw = parse_json_object(kwargs, "--kwargs") or None
    if arch is None and (checkpoint is not None or kw is not None):
        raise ZooscopeInputError("--checkpoint and --kwargs describe a new model: give its spec with --arch too.")
    if checkpoint is not None and not checkpoint.is_file():
        raise ZooscopeInputError(f"--checkpoint {str(checkpoint)!r}: no such file.")
    z = open_zoo(zoo)
    with status(f"ranking the zoo against {model}"):
        table = z.similar(model, k=k, by=by, arch=arch,
                          checkpoint=str(checkpoint.expanduser().resolve()) if checkpoint else None, kwargs=kw,
                          rule=rule, dataset=dataset)
    emit(table, fmt, out, title=f"most similar to {model} (by {by})")
