"""`zooscope record` and `zooscope results`: fine-tuning outcomes the ranking learns from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit

app = typer.Typer()


def _facade(z: Any, method: str, verb: str) -> Any:
    fn = getattr(z, method, None)
    if fn is None:
        raise ZooscopeInputError(f"`zooscope {verb}` needs Zoo.{method}, which this zoo version does not have; "
                                 "upgrade zooscope.")
    return fn


@app.command("record")
def record_cmd(
    model: Annotated[str, typer.Argument(help="A model in the zoo (the one that was fine-tuned).")],
    dataset: Annotated[str, typer.Argument(help="The zoo dataset it was fine-tuned and evaluated on.")],
    zoo: ZooOpt,
    value: Annotated[float | None, typer.Option(help="The outcome, e.g. 0.914 (test accuracy).")] = None,
    metric: Annotated[str, typer.Option(help="Name of the metric; larger must be better.")] = "accuracy",
    remove: Annotated[bool, typer.Option("--remove", help="Delete the recorded outcome instead.")] = False,
) -> None:
    """Record how fine-tuning MODEL on DATASET went; later `select` runs use it for other datasets.

    Example: zooscope record ckpt-0077 my-task --value 0.914 --metric accuracy
    """
    if not metric.strip():
        raise ZooscopeInputError("--metric must be a non-empty name such as accuracy.")
    z = open_zoo(zoo)
    if remove:
        if value is not None:
            raise ZooscopeInputError("--remove takes no --value.")
        _facade(z, "remove_result", "record --remove")(model, dataset, metric=metric)
        say(f"removed the {metric} of {model!r} on {dataset!r}")
        return
    if value is None:
        raise ZooscopeInputError("--value is required, e.g. --value 0.914 (or --remove to delete a result).")
    if not math.isfinite(value):
        raise ZooscopeInputError(f"--value must be a finite number; got {value!r}.")
    _facade(z, "record_result", "record")(model, dataset, value, metric=metric)
    say(f"recorded {metric} = {value:g} for {model!r} on {dataset!r}")


@app.command("results")
def results_cmd(
    zoo: ZooOpt,
    model: Annotated[str | None, typer.Option(help="Only this model's results.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only results on this dataset.")] = None,
    metric: Annotated[str | None, typer.Option(help="Only this metric.")] = None,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """List the recorded fine-tuning outcomes.

    Example: zooscope results --format csv > outcomes.csv
    """
    z = open_zoo(zoo)
    table = _facade(z, "results", "results")()
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    for col, want in (("model", model), ("dataset", dataset), ("metric", metric)):
        if want is not None and col in table.columns:
            table = table[table[col] == want]
    emit(table.reset_index(drop=True), fmt, out, title="recorded results")
