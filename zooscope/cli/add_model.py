"""`zooscope add-model`: register a trained network in the zoo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import ZooOpt, err, user_errors

app = typer.Typer()


def parse_json_option(text: str | None, what: str) -> dict:
    """Parse a JSON object given on the command line, with a clear error."""
    from zooscope._validation import ZooscopeInputError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooscopeInputError(f"{what} must be a JSON object such as '{{\"num_classes\": 10}}'; {e}.") from None
    if not isinstance(value, dict):
        raise ZooscopeInputError(f"{what} must be a JSON object such as '{{\"num_classes\": 10}}'; got {text!r}.")
    return value


@app.command("add-model")
def add_model_cmd(
    name: Annotated[str, typer.Argument(help="A unique name for the model in the zoo, e.g. mnv3-digits.")],
    arch: Annotated[str, typer.Option(help="Model spec: timm:<name> or package.module:factory.")],
    zoo: ZooOpt,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Weights: .safetensors (or a weights-only torch file).")
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option(help="JSON kwargs for the factory, e.g. '{\"num_classes\": 10}'.")
    ] = None,
    trained_on: Annotated[str | None, typer.Option(help="Name of the zoo dataset it was trained on, if known.")] = None,
    metrics: Annotated[str | None, typer.Option(help="JSON metrics, e.g. '{\"acc\": 0.97}'.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for several.")] = None,
) -> None:
    """Add a model (architecture spec + optional safetensors checkpoint) to the zoo.

    Example: zooscope add-model mnv3-digits --arch timm:mobilenetv3_small_050 --checkpoint w.safetensors
    --kwargs '{"num_classes": 10, "in_chans": 1}' --trained-on digits
    """
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        z = Zoo.open(zoo)
        z.add_model(
            name,
            arch=arch,
            checkpoint=str(checkpoint) if checkpoint else None,
            kwargs=parse_json_option(kwargs, "--kwargs"),
            trained_on=trained_on,
            metrics=parse_json_option(metrics, "--metrics") or None,
            tags=list(tag or []) or None,
        )
        err.print(f"added model {name!r} ({arch})")
