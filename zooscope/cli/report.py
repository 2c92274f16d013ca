"""`zooscope report`: the zoo as one self-contained HTML page (reads only; writes the page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import ZooOpt

app = typer.Typer()


@app.command("report")
def report_cmd(
    zoo: ZooOpt,
    page: Annotated[Path, typer.Option("--out", help="The HTML page to write.")] = Path("zoo.html"),
    by: Annotated[str, typer.Option(help="Embedding kind of the zoo map and the model × model heat map "
                                    "(cka, task2vec, gradsketch).")] = "cka",
) -> None:
    """Write one static HTML page: summary, models, zoo map, near-duplicates, datasets, results, benchmark.

    No server and no network: figures and the table-sorting script are inside the file.
    Example: zooscope report --zoo ./zoo --out zoo.html
    """
    from zooscope.report import _check_by, write_report

    _check_by(by)  # a bad --by is named before the zoo is opened
    if page.suffix.lower() not in (".html", ".htm"):  # (named `page`: the verbs' --out table check is not ours)
        from zooscope._validation import ZooscopeInputError

        raise ZooscopeInputError(f"--out {page}: the report is an HTML page; give a .html path.")
    z = open_zoo(zoo)
    write_report(z, page, by=by)
    say(f"wrote {page}")
