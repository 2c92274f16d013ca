"""`zooscope add-dataset`: register a dataset (probe data or a task) in the zoo."""

from __future__ import annotations

from typing import Annotated

import typer

from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import ZooOpt
from zooscope.cli._validators import check_name

app = typer.Typer()


@app.command("add-dataset")
def add_dataset_cmd(
    name: Annotated[str, typer.Argument(help="A unique name for the dataset, e.g. my-task.")],
    source: Annotated[
        str,
        typer.Option(
            help="builtin:digits | builtin:mnist5k | builtin:mnist1d | file.npz | "
            "file.npy | an ImageFolder dir | a saved HF dataset dir; options may follow, e.g. "
            "'builtin:digits?classes=0,1,2&size=28'."
        ),
    ],
    zoo: ZooOpt,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a dataset of the same name.")] = False,
) -> None:
    r"""Add a dataset to the zoo (materialised, checksummed, its size and classes recorded).

    \b
    What a --source file must hold:
      .npz  x and y (one split), or x_train, y_train (+ x_test, y_test):
            x  (n, C, H, W) or (n, H, W, C) images, (n, H, W) uint8 grey
               images, or (n, F) vectors; float or uint8 (scaled to [0, 1])
            y  (n,) integer or string labels
            classes (optional) one name per label value
            Numeric arrays only: object arrays are refused (no unpickling).
      .npy  inputs x only, no labels (a probe set; not for select).
      dir/  ImageFolder dir/<class>/<image>.png|jpg, or a Hugging Face
            save_to_disk folder.

    Example: zooscope add-dataset my-task --source ./my_task.npz
    """
    check_name(name, "dataset")
    z = open_zoo(zoo)
    z.add_dataset(name, source=source, replace=replace)
    row = z.datasets().set_index("name").loc[name]
    shape = row.get("input_shape")
    shown = "×".join(str(s) for s in shape) if shape is not None and len(shape) else "?"
    say(f"added dataset {name!r}: {row.get('size', '?')} examples of shape {shown}, "
        f"{row.get('num_classes', '?')} classes")
