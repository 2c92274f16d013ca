"""`zooscope ls`: list the zoo's models, datasets, embeddings or failures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit

app = typer.Typer()


@app.command("ls")
def ls_cmd(
    zoo: ZooOpt,
    what: Annotated[str, typer.Argument(help="models, datasets or embeddings.")] = "models",
    failed: Annotated[bool, typer.Option("--failed", help="List the failed embedding pairs instead.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="With --failed: the whole recorded error, "
                                            "with its stack frames (default: its first line).")] = False,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write .csv/.json/.parquet instead of printing.")] = None,
) -> None:
    """List what the zoo holds.

    Example: zooscope ls models --zoo ./zoo ; zooscope ls --failed
    """
    from zooscope._validation import check_choice

    check_choice(what, ("models", "datasets", "embeddings"), "what", "zooscope ls")
    z = open_zoo(zoo)
    if failed:
        table = z.failures()
        if not traceback and "error" in table:
            table["error"] = [str(e).strip().splitlines()[0] if isinstance(e, str) and e.strip() else e
                              for e in table["error"]]
    else:
        listings = {"models": lambda: _with_cost(z.models()), "datasets": z.datasets,
                    "embeddings": lambda: pd.DataFrame(z.catalog.embeddings())}
        table = listings[what]()
        if what == "models":  # storage per model: what a compact zoo (configure --cka-dtype float16) saves
            from zooscope.zoo.vectors import stored_bytes

            sizes = stored_bytes(z.catalog, z.store)
            table.insert(table.columns.get_loc("checkpoint"), "vectors_mb",
                         [round(sizes.get(n, 0) / 2**20, 3) for n in table["name"]])
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    emit(table, fmt, out, title=("failures" if failed else what))
    if (note := z.task2vec_probe_note()):
        say(note)


def _with_cost(table: pd.DataFrame) -> pd.DataFrame:
    """Return the models' recorded cost as two columns after ``input_shape``.

    ``gflops`` (per example) and ``s_per_batch`` (measured forward seconds per batch of
    `zooscope.nets.cost.COST_BATCH`).
    """
    from zooscope.nets.cost import COST_KEY

    costs = [m.get(COST_KEY) if isinstance(m, dict) else None for m in table.get("metrics", [])]
    at = list(table.columns).index("input_shape") + 1 if "input_shape" in table else len(table.columns)
    table.insert(at, "gflops", [c["flops_per_example"] / 1e9 if isinstance(c, dict) else None for c in costs])
    table.insert(at + 1, "s_per_batch", [c.get("s_per_batch") if isinstance(c, dict) else None for c in costs])
    return table
