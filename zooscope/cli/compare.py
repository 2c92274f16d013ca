"""`zooscope compare A B --data SPEC`: a layer × layer similarity table of two model specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._common import FormatOpt, emit, err, user_errors, write_table

app = typer.Typer()


def _json_option(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooscopeInputError(
            f"{option} must be a JSON object, e.g. '{{\"num_classes\": 10, \"in_chans\": 1}}'; got {text!r} ({e})."
        ) from None
    if not isinstance(value, dict):
        raise ZooscopeInputError(f"{option} must be a JSON object ({{...}}); got {text!r}.")
    return value


def _load_inputs(spec: str, n: int | None, seed: int, split: str):
    """Input tensor (n, ...) from a dataset spec: a seeded, class-stratified subset when n < its size."""
    from zooscope.zoo.datasets import load_dataset, probe_subset

    ds = load_dataset(spec, split=split, seed=seed)
    if n is not None and len(ds) > n:
        ds = probe_subset(ds, n, seed=seed)
    return ds.x


@app.command("compare")
def compare_cmd(
    model_a: Annotated[str, typer.Argument(help="Model spec A: timm:<name> or package.module:factory.")],
    model_b: Annotated[str, typer.Argument(help="Model spec B (may equal A, with other weights).")],
    data: Annotated[str, typer.Option("--data", help="Dataset spec: builtin:digits, builtin:mnist5k, "
                                      "builtin:mnist1d, a .npz/.npy file, an ImageFolder dir, a saved HF "
                                      "dataset folder.")],
    weights_a: Annotated[Path | None, typer.Option("--weights-a", help="Checkpoint for A "
                                                   "(.safetensors, or a weights-only torch file).")] = None,
    weights_b: Annotated[Path | None, typer.Option("--weights-b", help="Checkpoint for B.")] = None,
    kwargs_a: Annotated[str | None, typer.Option("--kwargs-a", help="JSON kwargs for A's factory, e.g. "
                                                 "'{\"num_classes\": 10, \"in_chans\": 1}'.")] = None,
    kwargs_b: Annotated[str | None, typer.Option("--kwargs-b", help="JSON kwargs for B (default: A's).")] = None,
    layers_a: Annotated[str | None, typer.Option("--layers-a", help="Comma-separated module names of A "
                                                 "(default: its feature stages and head).")] = None,
    layers_b: Annotated[str | None, typer.Option("--layers-b", help="Comma-separated module names of B.")] = None,
    n: Annotated[int | None, typer.Option("--n", min=4, help="Use a seeded subset of this many inputs.")] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inputs per forward pass.")] = 256,
    measure: Annotated[str, typer.Option("--measure", help="linear_cka (full batch), minibatch_cka (any n, "
                                         "bounded memory), or any layer-wise measure "
                                         "(see `zooscope measures`).")] = "linear_cka",
    measure_kwargs: Annotated[str | None, typer.Option("--measure-kwargs", help="JSON kwargs for the measure, "
                                                       "e.g. '{\"debiased\": true}'.")] = None,
    device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    split: Annotated[str, typer.Option("--split", help="Dataset split: train, test or all.")] = "train",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the input subset.")] = 0,
    max_memory_gb: Annotated[float, typer.Option("--max-memory-gb", help="Cap on held activations "
                                                 "for full-batch measures.")] = 4.0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the table to .csv/.json/.parquet.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a heat-map image (.png/.pdf/.svg).")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Compare two networks layer by layer: one similarity value per (layer of A, layer of B).

    Example: zooscope compare timm:resnet18 timm:resnet18 --weights-a base.safetensors
    --weights-b tuned.safetensors --data ./val_images --n 2000 --out cka.csv --plot cka.png
    """
    with user_errors():

        from zooscope.embed.compare import COMPARERS, _load_plugins, compare
        from zooscope.measures import MEASURES
        from zooscope.zoo.models import build_model

        _load_plugins()
        if measure not in MEASURES and measure not in COMPARERS:  # fail before building models
            from zooscope.embed.compare import _unknown_measure

            raise _unknown_measure(measure)
        if fmt not in ("table", "csv", "json"):
            raise ZooscopeInputError(f"--format must be table, csv or json; got {fmt!r}.")
        kw_a = _json_option(kwargs_a, "--kwargs-a")
        kw_b = _json_option(kwargs_b, "--kwargs-b") if kwargs_b is not None else dict(kw_a)
        m_kw = _json_option(measure_kwargs, "--measure-kwargs")
        net_a = build_model(model_a, kw_a, weights_a)
        same = model_a == model_b and kw_a == kw_b and weights_a == weights_b
        net_b = net_a if same else build_model(model_b, kw_b, weights_b)
        x = _load_inputs(data, n, seed, split)
        table = compare(net_a, net_b, x, layers_a, layers_b, measure=measure, batch_size=batch_size,
                        device=device, max_memory_gb=max_memory_gb, progress=True, **m_kw)
        table.attrs.update(model_a=model_a, model_b=model_b, weights_a=weights_a and weights_a.name,
                           weights_b=weights_b and weights_b.name)  # the plot names spec + checkpoint file
        wrote = []
        if out is not None:
            write_table(table, out, index=True)
            wrote.append(f"{out} ({table.shape[0]}×{table.shape[1]})")
        else:
            emit(table, fmt, index=True, title=f"{measure} (rows: layers of A, columns: layers of B)")
        if plot is not None:
            from zooscope.plot import heatmap

            heatmap(table, plot)
            wrote.append(str(plot))
        if wrote:
            err.print(f"wrote {' and '.join(wrote)}", highlight=False, soft_wrap=True)
