"""`zooscope match A B --data SPEC --layer NAME`: one-to-one unit matching of two layers (Li, Yosinski et al.)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.cli._errors import say
from zooscope.cli._options import FormatOpt
from zooscope.cli._output import emit, write_table
from zooscope.cli._validators import parse_json_object

app = typer.Typer()


def _inputs(spec: str, n: int | None, seed: int) -> Any:
    """Input tensor (n, ...) of a dataset spec; a seeded subset kept in the original order."""
    import numpy as np
    import torch

    from zooscope.nets.datasets import load_dataset

    x = load_dataset(spec, seed=seed).x
    if n is not None and x.shape[0] > n:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=n, replace=False))
        x = x[torch.from_numpy(keep)]
    return x


def _correlations(net_a: Any, net_b: Any, x: Any, layer_a: str, layer_b: str, *, batch_size: int,
                  device: str, flatten: str) -> Any:
    """Stream both layers' activations over ``x`` into a UnitCorrelation."""
    from zooscope.embed.capture import iter_activations, iter_batches, on_device, resolve_layers
    from zooscope.measures.matching import UnitCorrelation

    (la,), (lb,) = resolve_layers(net_a, [layer_a]), resolve_layers(net_b, [layer_b])
    acc = UnitCorrelation()
    with on_device(net_a, device) as ma:
        if net_b is net_a:  # one forward pass gives both layers
            for acts in iter_activations(ma, iter_batches(x, batch_size), list(dict.fromkeys([la, lb])),
                                         device=device, flatten=flatten):
                acc.update(acts[la].cpu(), acts[lb].cpu())
            return acc
        with on_device(net_b, device) as mb:
            gen_a = iter_activations(ma, iter_batches(x, batch_size), [la], device=device, flatten=flatten)
            gen_b = iter_activations(mb, iter_batches(x, batch_size), [lb], device=device, flatten=flatten)
            for acts_a, acts_b in zip(gen_a, gen_b, strict=True):
                acc.update(acts_a[la].cpu(), acts_b[lb].cpu())
    return acc


@app.command("match")
def match_cmd(
    model_a: Annotated[str, typer.Argument(help="Model spec A: timm:<name> or package.module:factory.")],
    model_b: Annotated[str, typer.Argument(help="Model spec B (may equal A, with other weights).")],
    data: Annotated[str, typer.Option("--data", help="Inputs: builtin:digits, a .npz file, an ImageFolder dir, …")],
    layer: Annotated[str, typer.Option("--layer", help="Module name of the layer in A (and in B unless "
                                       "--layer-b is given), e.g. conv1.")],
    layer_b: Annotated[str | None, typer.Option("--layer-b", help="Module name of the layer in B.")] = None,
    weights_a: Annotated[Path | None, typer.Option("--weights-a", help="Checkpoint for A (.safetensors, or a "
                                                   "weights-only torch file).")] = None,
    weights_b: Annotated[Path | None, typer.Option("--weights-b", help="Checkpoint for B.")] = None,
    kwargs_a: Annotated[str | None, typer.Option("--kwargs-a", help="JSON kwargs for A's factory.")] = None,
    kwargs_b: Annotated[str | None, typer.Option("--kwargs-b", help="JSON kwargs for B (default: A's).")] = None,
    n: Annotated[int | None, typer.Option("--n", min=3, help="Use a seeded subset of this many inputs.")] = 2000,
    method: Annotated[str, typer.Option("--method", help="bipartite (one-to-one, maximum total correlation) or "
                                        "semi (each A unit takes its best B unit).")] = "bipartite",
    spatial: Annotated[str, typer.Option("--spatial", help="Conv maps: 'positions' (every position is a "
                                         "sample, as the paper) or 'mean' (spatial mean per input).")] = "positions",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Inputs per forward pass.")] = 256,
    device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of the input subset.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the table to .csv/.json/.parquet.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the matched correlations as an image "
                                              "(.png/.pdf/.svg).")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Match the units of one layer of A to the units of a layer of B by activation correlation.

    Writes one row per unit of A: unit_a, unit_b, correlation. Conv layers use every spatial position as a
    sample (both layers need the same spatial size, else use --spatial mean).

    Example: zooscope match timm:resnet18 timm:resnet18 --weights-a run1.safetensors
    --weights-b run2.safetensors --data ./val_images --layer conv1 --out matched.csv --plot matched.png
    """
    check_choice(method, ("bipartite", "semi"), "--method", "match")
    check_choice(spatial, ("positions", "mean"), "--spatial", "match")
    if fmt not in ("table", "csv", "json"):
        raise ZooscopeInputError(f"--format must be table, csv or json; got {fmt!r}.")
    import pandas as pd

    from zooscope.measures.matching import bipartite_match, semi_match
    from zooscope.nets.models import ModelSpec

    kw_a = parse_json_object(kwargs_a, "--kwargs-a")
    kw_b = parse_json_object(kwargs_b, "--kwargs-b") if kwargs_b is not None else dict(kw_a)
    spec_a, spec_b = ModelSpec(model_a, kw_a, weights_a), ModelSpec(model_b, kw_b, weights_b)
    net_a = spec_a.build()
    net_b = net_a if spec_b == spec_a else spec_b.build()
    x = _inputs(data, n, seed)
    acc = _correlations(net_a, net_b, x, layer, layer_b or layer, batch_size=batch_size, device=device,
                        flatten="none" if spatial == "positions" else "spatial_mean")
    C = acc.correlation()
    bip = bipartite_match(C)
    if method == "bipartite":
        rows, cols, values = bip.rows, bip.cols, bip.values
        summary = f"bipartite: mean matched correlation {bip.mean:.4f} over {values.size} pairs"
    else:
        s = semi_match(C)
        rows, cols, values = range(C.shape[0]), s.argmax_rows, s.max_rows
        summary = (f"semi: row-max mean {s.mean_max_rows:.4f}, column-max mean {s.mean_max_cols:.4f}, "
                   f"{s.n_distinct_targets} distinct B units, overlap with bipartite {s.overlap_ratio:.3f} "
                   f"(bipartite mean {bip.mean:.4f})")
    table = pd.DataFrame({"unit_a": list(rows), "unit_b": [int(c) for c in cols],
                          "correlation": [float(v) for v in values]})
    say(f"{summary}; {acc.n_} samples")
    if out is not None:
        write_table(table, out)
        say(f"wrote {out} ({table.shape[0]} rows)")
    else:
        emit(table, fmt, title=f"{method} matching: {model_a}:{layer} → {model_b}:{layer_b or layer}")
    if plot is not None:
        from zooscope.plot import match_plot, model_label

        match_plot(C, table.unit_a.to_numpy(), table.unit_b.to_numpy(), table.correlation.to_numpy(), plot,
                   model_a=model_label(model_a, weights_a), model_b=model_label(model_b, weights_b),
                   layer_a=layer, layer_b=layer_b or layer, method=method)
        say(f"wrote {plot}")
