"""`zooscope compare A B [C …] --data SPEC`: a layer × layer table of two model specs, or every pair of N."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._options import FormatOpt
from zooscope.cli._output import emit, err, write_table
from zooscope.cli._validators import parse_json_object

app = typer.Typer()


def check_layers_early(models: list[str], kw_list: list[dict[str, Any]], layer_lists: list[str | None]) -> None:
    """Timm names and layer names checked on meta-device skeletons (no weights, no data) before anything loads."""
    from zooscope._validation import unknown_name_error
    from zooscope.nets.models import module_names

    seen: dict[tuple[str, str], list[str] | None] = {}
    for spec, kw, layers in zip(models, kw_list, layer_lists, strict=True):
        key = (spec, repr(sorted(kw.items())))
        if key not in seen:
            seen[key] = module_names(spec, kw)
        valid = seen[key]
        if layers is None or valid is None:
            continue
        for name in (s.strip() for s in layers.split(",") if s.strip()):
            if name not in valid:
                raise unknown_name_error("layer", name, valid)


def _model_names(specs: list[str], weights: list[Path | None]) -> list[str]:
    """Readable, unique names for the long table: the spec, plus the checkpoint's stem when specs repeat."""
    names = [spec if specs.count(spec) == 1 or w is None else f"{spec}[{Path(w).stem}]"
             for spec, w in zip(specs, weights, strict=True)]
    return [name if names.count(name) == 1 else f"{name}#{i}" for i, name in enumerate(names)]


@app.command("compare")
def compare_cmd(
    models: Annotated[list[str], typer.Argument(help="Two or more model specs: timm:<name> or "
                                                "package.module:factory (may repeat, with other weights).")],
    data: Annotated[str, typer.Option("--data", help="Dataset spec: builtin:digits, builtin:mnist5k, "
                                      "builtin:mnist1d, a .npz/.npy file, an ImageFolder dir, a saved HF "
                                      "dataset folder.")],
    weights_a: Annotated[Path | None, typer.Option("--weights-a", help="Checkpoint for A "
                                                   "(.safetensors, or a weights-only torch file).")] = None,
    weights_b: Annotated[Path | None, typer.Option("--weights-b", help="Checkpoint for B.")] = None,
    weights: Annotated[list[Path] | None, typer.Option("--weights", help="Checkpoint of each model, in order "
                                                       "(repeat once per model; instead of --weights-a/-b).")] = None,
    kwargs_a: Annotated[str | None, typer.Option("--kwargs-a", help="JSON kwargs for A's factory, e.g. "
                                                 "'{\"num_classes\": 10, \"in_chans\": 1}'.")] = None,
    kwargs_b: Annotated[str | None, typer.Option("--kwargs-b", help="JSON kwargs for B (default: A's).")] = None,
    kwargs: Annotated[list[str] | None, typer.Option("--kwargs", help="JSON kwargs of the factories: once for "
                                                     "every model, or once per model in order.")] = None,
    layers_a: Annotated[str | None, typer.Option("--layers-a", help="Comma-separated module names of A "
                                                 "(default: its feature stages and head).")] = None,
    layers_b: Annotated[str | None, typer.Option("--layers-b", help="Comma-separated module names of B.")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Comma-separated module names for every model "
                                               "(with three or more models).")] = None,
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
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a heat-map image (.png/.pdf/.svg); "
                                              "two models only.")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Compare networks layer by layer: one similarity value per (layer of A, layer of B).

    Two models give a layer × layer table. Three or more give a long table (model_a, layer_a, model_b, layer_b,
    value) over every pair, with each model run forward once (zs.compare_many).

    Example: zooscope compare timm:resnet18 timm:resnet18 --weights-a base.safetensors
    --weights-b tuned.safetensors --data ./val_images --n 2000 --out cka.csv --plot cka.png
    """
    from zooscope.embed.capture import load_inputs
    from zooscope.embed.compare import check_measure, compare
    from zooscope.embed.compare_many import compare_many
    from zooscope.nets.models import build_model

    if len(models) < 2:
        raise ZooscopeInputError(f"compare needs at least two model specs; got {len(models)}.")
    check_measure(measure)  # fail before building models
    if fmt not in ("table", "csv", "json"):
        raise ZooscopeInputError(f"--format must be table, csv or json; got {fmt!r}.")
    many = len(models) > 2
    per_model_ab = [("--weights-a", weights_a), ("--weights-b", weights_b), ("--kwargs-a", kwargs_a),
                    ("--kwargs-b", kwargs_b), ("--layers-a", layers_a), ("--layers-b", layers_b)]
    if many and any(v is not None for _, v in per_model_ab):
        used = [k for k, v in per_model_ab if v is not None]
        raise ZooscopeInputError(f"{', '.join(used)} are for two models; with {len(models)} use --weights "
                                 "(once per model), --kwargs and --layers.")
    if weights and (weights_a is not None or weights_b is not None):
        raise ZooscopeInputError("Give checkpoints either with --weights or with --weights-a/--weights-b.")
    if weights and len(weights) != len(models):
        raise ZooscopeInputError(f"--weights was given {len(weights)} times for {len(models)} models; give "
                                 "one checkpoint per model, in order.")
    if kwargs and len(kwargs) not in (1, len(models)):
        raise ZooscopeInputError(f"--kwargs was given {len(kwargs)} times for {len(models)} models; give it "
                                 "once (for every model) or once per model.")
    if kwargs and (kwargs_a is not None or kwargs_b is not None):
        raise ZooscopeInputError("Give factory kwargs either with --kwargs or with --kwargs-a/--kwargs-b.")
    if plot is not None and many:
        raise ZooscopeInputError("--plot draws one layer × layer heat-map: give two models.")
    if not many and layers is not None:
        layers_a = layers_a if layers_a is not None else layers
        layers_b = layers_b if layers_b is not None else layers
    w_list: list[Path | None] = (list(weights) if weights else [None] * len(models) if many
                                 else [weights_a, weights_b])
    if kwargs:
        kw_list = [parse_json_object(k, "--kwargs") for k in kwargs]
        kw_list = kw_list * len(models) if len(kw_list) == 1 else kw_list
    else:
        kw_a = parse_json_object(kwargs_a, "--kwargs-a")
        kw_b = parse_json_object(kwargs_b, "--kwargs-b") if kwargs_b is not None else dict(kw_a)
        kw_list = [kw_a, kw_b] if not many else [{} for _ in models]
    m_kw = parse_json_object(measure_kwargs, "--measure-kwargs")
    check_layers_early(models, kw_list, [layers] * len(models) if many else [layers_a, layers_b])
    nets: list[Any] = []
    for spec, kw, w in zip(models, kw_list, w_list, strict=True):
        twin = next((k for k, (s2, kw2, w2) in enumerate(zip(models, kw_list, w_list, strict=True))
                     if (s2, kw2, w2) == (spec, kw, w) and k < len(nets)), None)
        nets.append(nets[twin] if twin is not None else build_model(spec, kw, w))
    x = load_inputs(data, n, seed=seed, split=split)
    if many:
        names = _model_names(models, w_list)
        table = compare_many(dict(zip(names, nets, strict=True)), x, layers, measure=measure,
                             batch_size=batch_size, device=device, max_memory_gb=max_memory_gb, progress=True,
                             **m_kw)
        index, shape, title = False, f"{len(table)} rows", f"{measure}, every pair of {len(models)} models"
    else:
        table = compare(nets[0], nets[1], x, layers_a, layers_b, measure=measure, batch_size=batch_size,
                        device=device, max_memory_gb=max_memory_gb, progress=True, **m_kw)
        table.attrs.update(model_a=models[0], model_b=models[1], weights_a=w_list[0] and Path(w_list[0]).name,
                           weights_b=w_list[1] and Path(w_list[1]).name)  # the plot names spec + checkpoint
        index, shape = True, f"{table.shape[0]}×{table.shape[1]}"
        title = f"{measure} (rows: layers of A, columns: layers of B)"
    wrote = []
    if out is not None:
        write_table(table, out, index=index)
        wrote.append(f"{out} ({shape})")
    else:
        emit(table, fmt, index=index, title=title)
    if plot is not None:
        from zooscope.plot import heatmap

        heatmap(table, plot)
        wrote.append(str(plot))
    if wrote:
        err.print(f"wrote {' and '.join(wrote)}", highlight=False, soft_wrap=True)
