"""`zooscope measures`: list the registered measures and streaming comparers with their metadata."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

import pandas as pd
import typer

from zooscope.cli._options import FormatOpt
from zooscope.cli._output import emit

app = typer.Typer()


def _inv(flags: Any) -> str:
    """``Inv.TRANSLATION|ORTHOGONAL`` -> ``translation, orthogonal`` (wraps in a table)."""
    if flags is None:
        return ""
    names = [f.name for f in type(flags) if f in flags and f.name]
    short = {"TRANSLATION": "shift", "ISOTROPIC_SCALE": "scale", "ORTHOGONAL": "rotation",
             "PERMUTATION": "permutation", "INVERTIBLE_LINEAR": "linear"}
    return ", ".join(short.get(n, n.lower()) for n in names) or "none"


def comparer_meta(name: str, fn: Any) -> Any:
    """Return a streaming comparer's metadata.

    Its own ``meta``, else that of the measure it estimates (grad_nbs → nbs).
    """
    from zooscope import measures as M

    own = getattr(fn, "meta", None)
    if own is not None:
        return own
    base = name.split("_", 1)[1] if "_" in name else name
    for candidate in (base, f"linear_{base}"):
        if candidate in M.available():
            return M.get(candidate)
    return None


def measure_table(pattern: str = "*") -> pd.DataFrame:
    """One row per registered measure and per streaming comparer matching ``pattern``."""
    from zooscope import measures as M
    from zooscope.embed.compare import COMPARERS, _load_plugins

    _load_plugins()
    rows = []
    for name in M.available(pattern):
        m = M.get(name)
        rows.append({"measure": name, "kind": "layer-wise" if m.layerwise else "model-level",
                     "larger_is_more_similar": m.larger_is_more_similar, "is_metric": m.is_metric,
                     "invariances": _inv(m.invariances), "bounds": m.bounds,
                     "inputs": m.inputs})
    for name in sorted(fnmatch.filter(COMPARERS, pattern)):
        meta = comparer_meta(name, COMPARERS.get(name))
        rows.append({"measure": name, "kind": "streaming",
                     "larger_is_more_similar": getattr(meta, "larger_is_more_similar", None),
                     "is_metric": getattr(meta, "is_metric", None),
                     "invariances": _inv(getattr(meta, "invariances", None)),
                     "bounds": getattr(meta, "bounds", None), "inputs": "models"})
    return pd.DataFrame(rows, columns=["measure", "kind", "larger_is_more_similar", "is_metric", "invariances",
                                       "bounds", "inputs"])


@app.command("measures")
def measures_cmd(
    pattern: Annotated[str, typer.Argument(help="Glob over measure names, e.g. '*cka*'.")] = "*",
    fmt: FormatOpt = "table",
) -> None:
    """List every measure and streaming comparer: direction, bounds, metric flag, invariances.

    Streaming comparers (minibatch_cka, grad_cka, grad_nbs) work only in `compare --measure`; they take the
    direction and bounds of the measure they estimate.

    Example: zooscope measures '*cka*'
    """
    table = measure_table(pattern)
    if fmt == "table":  # compact for a terminal; csv/json keep the raw columns
        table = table.assign(
            similar=table["larger_is_more_similar"].map({True: "higher", False: "lower"}).fillna("?"),
            bounds=[_bounds(b) for b in table["bounds"]],
        )[["measure", "kind", "similar", "bounds", "is_metric", "invariances", "inputs"]]
        table = table.rename(columns={"is_metric": "metric", "invariances": "invariant to"})
    emit(table, fmt, title="measures")


def _bounds(b: Any) -> str:
    if b is None or (isinstance(b, float) and b != b):
        return ""
    return "[" + ", ".join(f"{float(v):.4g}" for v in b) + "]"
