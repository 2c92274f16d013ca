"""`zooscope embed`: embed every (model | dataset, kind) pair not yet embedded; resumable."""

from __future__ import annotations

from typing import Annotated

import typer

from zooscope.cli._common import FormatOpt, ZooOpt, emit, err, user_errors

app = typer.Typer()


@app.command("embed")
def embed_cmd(
    zoo: ZooOpt,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated embedding kinds: cka, task2vec, gradsketch.")
    ] = "task2vec,cka",
    backend: Annotated[str, typer.Option(help="local (one process) or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --backend ray), e.g. auto.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only this model; repeat for several.")] = None,
    dataset: Annotated[list[str] | None, typer.Option(help="Only this dataset; repeat for several.")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Embed the zoo's models and datasets and rebuild the FAISS indices.

    Finished pairs are recorded as they complete: Ctrl-C (or a crash) and rerun continues where it stopped.
    Failures are recorded and listed by `zooscope ls --failed`.

    Example: zooscope embed --kinds cka,task2vec --zoo ./zoo
    """
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        z = Zoo.open(zoo)
        summary = z.embed(
            kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
            backend=backend,
            models=model or None,
            datasets=dataset or None,
            progress=True,
            address=address,
        )
        if summary is not None and len(summary):
            emit(summary, fmt, title="embedding run")
        failed = z.failures()
        if len(failed):
            err.print(f"[yellow]{len(failed)} failed[/yellow], see `zooscope ls --failed`")
