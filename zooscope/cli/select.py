"""`zooscope select`: which zoo model to transfer from for a labelled dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit

app = typer.Typer()

_METHOD_HELP = ("Rank by one method instead of the default (rank mean of LogME, LEEP, NCE, H-score + history): "
                "logme, leep, nce, hscore, ncti, knn, linear_probe, sfda, sfda_pca, gbc, transrate, task2vec, "
                "history.")


@app.command("select")
def select_cmd(
    dataset: Annotated[str, typer.Argument(help="A labelled dataset in the zoo (add it with add-dataset).")],
    zoo: ZooOpt,
    k: Annotated[int, typer.Option("--k", min=1, max=100_000, help="Number of models to return.")] = 10,
    method: Annotated[str | None, typer.Option("--method", help=_METHOD_HELP)] = None,
    history: Annotated[bool, typer.Option("--history/--no-history",
                                          help="Use fine-tuning results recorded on other datasets.")] = True,
    finetune_top: Annotated[int, typer.Option("--finetune-top", min=0, max=1000,
                                              help="Fine-tune the top N briefly and re-order them by validation "
                                                   "accuracy (off: 0).")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=1000, help="Epochs for --finetune-top.")] = 1,
    max_examples: Annotated[int, typer.Option("--max-examples", min=2, help="Target examples scored "
                                                                            "(stratified subset).")] = 1000,
    budget: Annotated[str, typer.Option("--budget", help="Time for the candidates' forward passes, planned from "
                                        "their recorded cost: 120s, 2m, or 'none' (every model on every "
                                        "example). Over budget: successive halving (columns examples, round).")
                      ] = "60s",
    backend: Annotated[str, typer.Option("--backend", help="local, or ray: the first halving round runs as Ray "
                                         "tasks (as embed --backend ray).")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (with --backend ray).")
                       ] = None,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """Rank zoo models for transfer to DATASET, with per-method columns and a `why` column.

    Example: zooscope select my-task --k 5   (or --method logme; record outcomes with `zooscope record`)
    """
    from zooscope._validation import check_choice

    budget_s = parse_budget(budget)
    check_choice(backend, ("local", "ray"), "--backend", "zooscope select")
    z = open_zoo(zoo)
    table = z.select(dataset, k=k, method=method, history=history, finetune_top=finetune_top,
                     epochs=epochs, max_examples=max_examples, budget_s=budget_s, backend=backend,
                     address=address, progress=True)
    emit(table, fmt, out, title=f"models to transfer from for {dataset}")


def parse_budget(text: str) -> float | None:
    """``"120s"``, ``"2m"``, ``"90"`` (seconds) or ``"none"`` -> seconds (None: no budget)."""
    from zooscope._validation import ZooscopeInputError

    t = text.strip().lower()
    if t in ("none", "off", "unlimited", "inf"):
        return None
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ZooscopeInputError(f"--budget must be a duration > 0 like 120s or 2m, or 'none'; got {text!r}.")
    return value
