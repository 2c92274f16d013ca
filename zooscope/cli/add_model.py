"""`zooscope add-model`: register a trained network in the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._common import open_zoo
from zooscope.cli._errors import EXIT_FOUND, say
from zooscope.cli._options import ZooOpt
from zooscope.cli._validators import check_name, parse_json_object, parse_shape

app = typer.Typer()


@app.command("add-model")
def add_model_cmd(
    zoo: ZooOpt,
    name: Annotated[str | None, typer.Argument(
        help="A unique name for the model in the zoo, e.g. mnv3-digits (not with --from).")] = None,
    arch: Annotated[str | None, typer.Option(help="Model spec: timm:<name> or package.module:factory.")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Weights: .safetensors (or a weights-only torch file).")
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option(help="JSON kwargs for the factory, e.g. '{\"num_classes\": 10}'.")
    ] = None,
    trained_on: Annotated[str | None, typer.Option(
        help="Name of the zoo dataset it was trained on, if known (one not registered yet is accepted with a "
        "warning; register it with add-dataset before select).")] = None,
    input_shape: Annotated[str | None, typer.Option(
        help="C,H,W of its inputs, e.g. 3,224,224 (default: --trained-on's shape or the first registered "
        "dataset shape that a dry forward pass accepts, settled at `embed` if no dataset is registered yet).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a model of the same name (its vectors "
                                          "are dropped and re-embedded by the next `embed`).")] = False,
    metrics: Annotated[str | None, typer.Option(help="JSON metrics, e.g. '{\"acc\": 0.97}'.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for several.")] = None,
    manifest: Annotated[Path | None, typer.Option("--from", help=(
        "Add many models from a CSV manifest in one process: a header row naming the columns name, arch and "
        "optionally checkpoint, trained-on, kwargs (JSON), input-shape, metrics (JSON), tags (;-separated); "
        "relative checkpoints are read against the manifest's folder. Each failing row is one line with its "
        "row number; the other rows are added."))] = None,
) -> None:
    """Add a model (architecture spec + optional safetensors checkpoint) to the zoo.

    Example: zooscope add-model mnv3-digits --arch timm:mobilenetv3_small_050 --checkpoint w.safetensors
    --kwargs '{"num_classes": 10, "in_chans": 1}' --trained-on digits --input-shape 1,8,8 ;
    zooscope add-model --from manifest.csv
    """
    if manifest is not None:
        given = [o for o, v in (("NAME", name), ("--arch", arch), ("--checkpoint", checkpoint),
                                ("--kwargs", kwargs), ("--trained-on", trained_on), ("--input-shape", input_shape),
                                ("--metrics", metrics), ("--tag", tag)) if v]
        if given:
            raise ZooscopeInputError(f"--from reads every model from the manifest; drop {', '.join(given)} "
                                     "(or put them in the manifest's columns).")
        add_from_manifest(zoo, manifest, replace=replace)
        return
    if name is None or arch is None:
        raise ZooscopeInputError("give a model NAME and --arch (or --from manifest.csv for many models).")
    check_name(name, "model")
    if trained_on is not None:  # a dataset's name, maybe registered later (a warning says so)
        check_name(trained_on, "--trained-on dataset")
    kw = parse_json_object(kwargs, "--kwargs")
    met = parse_json_object(metrics, "--metrics") or None
    shape = parse_shape(input_shape, "--input-shape")
    if checkpoint is not None and not checkpoint.is_file():
        raise ZooscopeInputError(f"--checkpoint {str(checkpoint)!r}: no such file.")
    z = open_zoo(zoo)
    if not replace and name in set(z.models()["name"]):
        raise ZooscopeInputError(f"a model named {name!r} is already in the zoo; pass --replace to replace it "
                                 "(or `zooscope remove model` first).")
    extra = {"input_shape": shape} if shape is not None else {}
    z.add_model(name, arch=arch, checkpoint=str(checkpoint.expanduser().resolve()) if checkpoint else None,
                kwargs=kw, trained_on=trained_on, metrics=met, tags=list(tag or []) or None, replace=replace,
                **extra)
    row = z.models().set_index("name").loc[name]
    recorded = row.get("input_shape")
    verb = "replaced" if replace else "added"
    if recorded is None or not len(recorded):
        say(f"{verb} model {name!r} ({arch}); input shape: settled by the next `zooscope embed` from the "
            "registered datasets it accepts (or set it with --input-shape)")
        return
    how = "given" if shape is not None else "found by a dry forward pass; set it with --input-shape"
    say(f"{verb} model {name!r} ({arch}), input shape {'×'.join(str(s) for s in recorded)} ({how})")


def add_from_manifest(zoo: str, manifest: Path, *, replace: bool) -> None:
    """`zooscope add-model --from`: one line per added model or failing row, a summary, exit 1 if a row failed."""
    from zooscope.zoo.manifest import RowOutcome, add_models, read_manifest

    list(read_manifest(manifest))  # a missing file or a bad header fails here, before the zoo is opened
    z = open_zoo(zoo)

    def report(o: RowOutcome) -> None:
        say(f"row {o.row}: added model {o.name!r}" if o.error is None else
            f"row {o.row}{f' ({o.name})' if o.name else ''}: {o.error}")

    outcomes = add_models(z, manifest, replace=replace, on_row=report)
    bad = [o for o in outcomes if o.error is not None]
    verb = "added or replaced" if replace else "added"
    say(f"{verb} {len(outcomes) - len(bad)} of {len(outcomes)} models from {manifest}"
        + (f"; {len(bad)} row(s) failed (rows {', '.join(str(o.row) for o in bad)}): fix those rows and rerun "
           "with a manifest of them only" if bad else ""))
    if bad:
        raise typer.Exit(code=EXIT_FOUND)
