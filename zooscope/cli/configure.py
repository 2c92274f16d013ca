"""`zooscope configure`: the zoo's settings (probe sets per input shape, probe size, JL dimension, …)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._common import open_zoo
from zooscope.cli._errors import say
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit
from zooscope.cli._validators import parse_json_object, parse_shape

app = typer.Typer()


@app.command("configure")
def configure_cmd(
    zoo: ZooOpt,
    probe_dataset: Annotated[str | None, typer.Option(
        help="Use this registered dataset as the probe set of its input shape (one probe set per shape; the "
        "models of that shape are re-embedded on the next `embed`).")] = None,
    probe_n: Annotated[int | None, typer.Option(min=4, help="Size of new probe sets (default 512).")] = None,
    probe_seed: Annotated[int | None, typer.Option(min=0, help="Seed of new probe sets (default 0).")] = None,
    jl_dim: Annotated[int | None, typer.Option(min=1, help="JL projection dimension of the indices "
                                               "(default 256).")] = None,
    jl_seed: Annotated[int | None, typer.Option(min=0, help="Seed of the JL projection (default 0).")] = None,
    kind_params: Annotated[str | None, typer.Option(help="JSON per-kind parameters, e.g. "
                                                    "'{\"cka\": {\"debiased\": true}}' (re-embeds that kind).")] = None,
    task2vec_probe: Annotated[str | None, typer.Option(help="Spec of the Task2Vec probe network for "
                                                       "--input-shape, e.g. timm:resnet18; or 'trained': (re)train "
                                                       "it now on the registered data of --input-shape (default: "
                                                       "every shape). Without it, the first `embed` trains one.")
                              ] = None,
    task2vec_probe_kwargs: Annotated[str | None, typer.Option(help="JSON kwargs of the Task2Vec probe "
                                                              "network.")] = None,
    task2vec_probe_checkpoint: Annotated[Path | None, typer.Option(help="Trained weights of the Task2Vec probe "
                                                                   "network (.safetensors).")] = None,
    task2vec_probe_pretrained: Annotated[bool, typer.Option(
        "--task2vec-probe-pretrained", help="timm only: the published weights of --task2vec-probe (downloads them; "
        "fails where there is no network).")] = False,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W the --task2vec-probe applies to, e.g. "
                                                    "3,224,224.")] = None,
    cka_dtype: Annotated[str | None, typer.Option(help="dtype of CKA vectors stored from now on: float16 halves "
                                                  "them (CKA within 0.001), float32 (default) is exact.")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Change the zoo's settings, then print them all (with no option: only print them).

    Example: zooscope configure --probe-dataset probe-224 --probe-n 1000 --zoo ./zoo
    """
    from zooscope.zoo.zoo import Zoo

    changes: dict[str, Any] = {"probe_dataset": probe_dataset, "probe_n": probe_n, "probe_seed": probe_seed,
                               "jl_dim": jl_dim, "jl_seed": jl_seed, "cka_dtype": cka_dtype}
    if kind_params is not None:
        parsed = parse_json_object(kind_params, "--kind-params")
        bad = [k for k, v in parsed.items() if not isinstance(v, dict)]
        if bad:
            raise ZooscopeInputError(f"--kind-params maps each kind to a JSON object, e.g. "
                                     f"'{{\"cka\": {{\"debiased\": true}}}}'; {bad[0]!r} maps to "
                                     f"{parsed[bad[0]]!r}.")
        changes["kind_params"] = parsed
    shape = parse_shape(input_shape)
    if task2vec_probe == "trained":
        if task2vec_probe_kwargs is not None or task2vec_probe_checkpoint is not None or task2vec_probe_pretrained:
            raise ZooscopeInputError("--task2vec-probe trained takes no kwargs, checkpoint or --pretrained.")
        changes.update(task2vec_probe="trained", input_shape=shape)
    elif task2vec_probe is not None:
        if shape is None:
            raise ZooscopeInputError("--task2vec-probe needs --input-shape C,H,W (the inputs it is for).")
        probe: dict[str, Any] = {"arch": task2vec_probe,
                                 "kwargs": parse_json_object(task2vec_probe_kwargs, "--task2vec-probe-kwargs")}
        if task2vec_probe_checkpoint is not None:
            probe["checkpoint"] = str(task2vec_probe_checkpoint.expanduser().resolve())
        if task2vec_probe_pretrained:
            probe["pretrained"] = True
        changes.update(task2vec_probe=probe, input_shape=shape)
    elif shape is not None or task2vec_probe_kwargs is not None or task2vec_probe_checkpoint is not None or \
            task2vec_probe_pretrained:
        raise ZooscopeInputError("--input-shape, --task2vec-probe-kwargs, --task2vec-probe-checkpoint and "
                                 "--task2vec-probe-pretrained go with --task2vec-probe.")
    accepted = inspect.signature(Zoo.configure).parameters
    changes = {k: v for k, v in changes.items() if v is not None}
    unsupported = [k for k in changes if k not in accepted]
    if unsupported:
        names = ", ".join("--" + k.replace("_", "-") for k in unsupported)
        raise ZooscopeInputError(f"this zoo version cannot set {names}.")
    z = open_zoo(zoo)
    settings = z.configure(**changes) if changes else z.settings()
    if changes:
        say(f"updated {', '.join(sorted(changes))}")
    settings = dict(settings or {})
    if settings.get("jl") is None and hasattr(z, "jl_settings"):  # show the effective defaults, not null
        dim, seed = z.jl_settings()
        settings["jl"] = {"dim": dim, "seed": seed, "default": True}
    rows = [{"setting": k, "value": json.dumps(v, default=str)} for k, v in settings.items()]
    emit(pd.DataFrame(rows, columns=["setting", "value"]), fmt, title="zoo settings")
