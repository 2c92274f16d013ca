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
    truth_seeds: Annotated[Path | None, typer.Option(
        "--truth-seeds", help="CSV with model, dataset, value, seed (one row per seed; the builder's "
                              "truth_seeds.csv): adds the noise ceiling, τ_w of each seed against the seed "
                              "mean.")] = None,
    static: Annotated[bool, typer.Option(
        "--static/--no-static", help="Static baselines: per-family mean-accuracy oracle, source accuracy, "
                                     "parameter count.")] = True,
    resamples: Annotated[int, typer.Option("--bootstrap", min=100, help="Bootstrap resamples of the paired "
                                                                        "difference to the default.")] = 9999,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resampling.")] = 0,
    fmt: FormatOpt = "table",
    per_target: Annotated[bool, typer.Option("--per-target/--summary-only",
                                             help="Also print one row per (method, target).")] = True,
) -> None:
    """Rank every selection method against fine-tuning truth.

    Mean weighted Kendall τ_w, its paired difference to the default with a 95 % bootstrap interval, τ_w within
    each family, top-1/top-3 regret (absolute and relative error) and time per method, and per-target rows.

    τ_w is scipy.stats.weightedtau(score, accuracy)[0]; regret@k = best accuracy − the best accuracy among the
    method's top k; relerr@k = regret@k / (1 − best accuracy); delta_tau_w, ci_low, ci_high: mean paired
    difference to the default over targets and its percentile bootstrap interval (targets resampled).
    Example: zooscope bench selection --zoo zoo --truth truth.csv --truth-seeds truth_seeds.csv --methods logme
    """
    import pandas as pd

    from zooscope.bench.selection import evaluate_selection, plot_selection

    the_zoo = open_zoo(zoo)  # a bad --zoo is named before the other inputs
    if not truth.is_file():
        raise FileNotFoundError(f"--truth {truth}: no such file.")
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    if truth_seeds is not None and not truth_seeds.is_file():
        raise FileNotFoundError(f"--truth-seeds {truth_seeds}: no such file.")
    bench = evaluate_selection(the_zoo, truth, names, history=history, metric=metric, static=static,
                               truth_seeds=truth_seeds, n_resamples=resamples, seed=seed, progress=True)
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
