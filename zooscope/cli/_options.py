"""The options every zoo verb shares (``--zoo``, ``--storage``, ``--format``) and `guard`.

`guard` gives each verb the error boundary, the common option checks and ``--storage``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from zooscope.cli._errors import FILE_OPTIONS, handle_exception, say, warnings_as_lines
from zooscope.cli._interrupt import run_interruptible
from zooscope.cli._validators import check_device, check_format, check_image_path, check_table_path


def default_zoo() -> str:
    """`$ZOOSCOPE_ZOO`, else ./zoo."""
    return os.environ.get("ZOOSCOPE_ZOO", "zoo")


ZooOpt = Annotated[
    str,
    typer.Option(
        "--zoo",
        help="Zoo folder (or a catalog URL). Default: $ZOOSCOPE_ZOO, else ./zoo.",
        default_factory=default_zoo,
        show_default=False,
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: table, csv or json.")]


def default_storage() -> str | None:
    """`$ZOOSCOPE_STORAGE`, else None."""
    return os.environ.get("ZOOSCOPE_STORAGE") or None


# Every verb with --zoo also gets --storage (added to its signature by `guard`): the folder holding vectors,
# indices and probes when --zoo is a catalog URL (postgresql://…); a folder zoo is its own storage.
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="With a catalog URL in --zoo (postgresql://…): the zoo's storage folder (vectors, indices, probes; "
             "on shared disk for several machines). Default: $ZOOSCOPE_STORAGE.",
        default_factory=default_storage,
        show_default=False,
    ),
]
_STORAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("zooscope_storage", default=None)


def _auto_validate(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Check what every verb gets by parameter name: --device, --plot, --out, --format."""
    if "device" in kwargs:
        check_device(kwargs["device"])
    if kwargs.get("plot") is not None:
        check_image_path(kwargs["plot"], "--plot")
    if kwargs.get("out") is not None:
        if getattr(fn, "out_is_image", False):
            check_image_path(kwargs["out"], "--out")
        else:
            check_table_path(kwargs["out"], "--out")
    if isinstance(kwargs.get("fmt"), str):
        check_format(kwargs["fmt"])


def guard(fn: Callable[..., Any], verb: str) -> Callable[..., Any]:
    """Wrap a verb's callback in the error boundary, the common option checks and the warning printer."""
    if getattr(fn, "_zooscope_guarded", False):
        return fn

    sig = inspect.signature(fn, eval_str=True)
    add_storage = "zoo" in sig.parameters and "storage" not in sig.parameters

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        token = _STORAGE.set(kwargs.pop("storage", None)) if add_storage else None
        options = ["--" + k.replace("_", "-") for k in kwargs]
        try:
            with warnings_as_lines(options, verb):
                _auto_validate(fn, kwargs)
                # in a worker thread, so that Ctrl-C answers even inside a long C call (`zooscope.cli._interrupt`)
                return run_interruptible(lambda: fn(**kwargs), say=say)
        except BaseException as e:
            handle_exception(e, verb, {k: kwargs[k] for k in FILE_OPTIONS if kwargs.get(k) is not None})
        finally:
            if token is not None:
                _STORAGE.reset(token)

    if add_storage:  # --storage next to --zoo on every zoo verb, without touching each verb
        extra = inspect.Parameter("storage", inspect.Parameter.KEYWORD_ONLY, annotation=StorageOpt)
        params = list(sig.parameters.values())
        kinds_ok = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        wrapper.__signature__ = sig.replace(parameters=[*kinds_ok, extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "storage": StorageOpt}
    wrapper._zooscope_guarded = True  # type: ignore[attr-defined]
    return wrapper

