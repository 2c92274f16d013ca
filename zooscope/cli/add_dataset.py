"""`zooscope add-dataset`: register a dataset (probe data or a task) in the zoo."""

from __future__ import annotations

from typing import Annotated

import typer

from zooscope.cli._common import ZooOpt, err, user_errors

app = typer.Typer()


@app.command("add-dataset")
def add_dataset_cmd(
    name: Annotated[str, typer.Argument(help="A unique name for the dataset, e.g. my-task.")],
    source: Annotated[
        str,
        typer.Option(
            help="builtin:digits | builtin:mnist5k | builtin:mnist1d | file.npz | "
            "file.npy | an ImageFolder dir | a saved HF dataset dir."
        ),
    ],
    zoo: ZooOpt,
) -> None:
    """Add a dataset to the zoo (materialised, checksummed, its size and classes recorded).

    Example: zooscope add-dataset my-task --source ./my_task.npz
    """
    from zooscope.zoo.zoo import Zoo

    with user_errors():
        z = Zoo.open(zoo)
        z.add_dataset(name, source=source)
        row = z.datasets().set_index("name").loc[name]
        err.print(f"added dataset {name!r}: {row.get('size', '?')} examples, {row.get('num_classes', '?')} classes")
