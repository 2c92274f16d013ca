"""`zooscope bench selection`: how good is the zoo's model selection against fine-tuning ground truth."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit, err

app = typer.Typer(no_args_is_help=True, help="Benchmarks of the zoo against ground truth.")


@app.command("selection")
def selection_cmd(
    zoo: ZooOpt,
    truth: Annotated[Path, typer.Option("--truth", help="CSV with model, dataset, metric, value (seed, lr "
                                                        "optional): fine-tuning results, one row per pair.")],
    methods: Annotated[str | None, typer.Option(
        "--methods", help="Comma-separated selection methods (default: every method of zoo.select).")] = None,
    history: Annotated[str | None, typer.Option(
        "--history", help="'loto': also rank each target with the other targets' truth recorded in the zoo.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="The truth's metric to rank by.")] = "accuracy",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a figure (τ_w and top-1 regret per "
                                                             "method) to this .png/.pdf/.svg.")] = None,
    fmt: FormatOpt = "table",
    per_target: Annotated[bool, typer.Option("--per-target/--summary-only",
                                             help="Also print one row per (method, target).")] = True,
) -> None:
    """Mean weighted Kendall τ_w, top-1/top-3 regret and time per method, and per-target rows.

    τ_w is scipy.stats.weightedtau(score, accuracy)[0]; regret@k = best accuracy − the best accuracy among the
    method's top k. Example: zooscope bench selection --zoo zoo --truth truth.csv --methods logme,hscore
    """
    import pandas as pd

    from zooscope.bench.selection import evaluate_selection, plot_selection
    the_zoo = open_zoo(zoo)  # a bad --zoo is named before the other inputs
    if not truth.is_file():
        raise FileNotFoundError(f"--truth {truth}: no such file.")
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    bench = evaluate_selection(the_zoo, truth, names, history=history, metric=metric, progress=True)
    for note in bench.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    if fmt == "table":
        if per_target:
            emit(bench.per_target, "table", title="per target")
        emit(bench.summary, "table", title=f"selection vs fine-tuning ({bench.per_target['dataset'].nunique()} "
                                            f"targets): mean over targets")
    else:
        summary = bench.summary.assign(dataset="(mean)")
        table = pd.concat([bench.per_target, summary], ignore_index=True) if per_target else summary
        emit(table, fmt)
    if plot is not None:
        plot_selection(bench, plot)
        err.print(f"wrote {plot}")
    sys.stdout.flush()
