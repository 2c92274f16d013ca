"""The CLI's option validators: each checks one option before any work and names it in its error."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from zooscope._validation import ZooscopeInputError, validate_name

Format = Literal["table", "csv", "json"]
FORMATS = ("table", "csv", "json")
TABLE_SUFFIXES = (".csv", ".json", ".parquet")


def check_device(device: str | None, option: str = "--device") -> str | None:
    """``cpu``, ``cuda[:i]`` (a visible GPU), ``mps`` (when available); else a one-line error naming ``option``."""
    if device is None or device == "cpu":
        return device
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ZooscopeInputError(f"{option} must be a torch device such as cpu, cuda, cuda:1 or mps; "
                                 f"got {device!r}.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ZooscopeInputError(f"{option} {device!r}: torch sees no CUDA GPU on this machine "
                                     "(torch.cuda.is_available() is False); use --device cpu.")
        if dev.index is not None and dev.index >= count:
            raise ZooscopeInputError(f"{option} {device!r}: only {count} CUDA device(s) (cuda:0…cuda:{count - 1}).")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ZooscopeInputError(f"{option} {device!r}: MPS is not available here; use --device cpu.")
    elif dev.type != "cpu":
        raise ZooscopeInputError(f"{option} {device!r}: zooscope runs on cpu, cuda or mps; use --device cpu.")
    return device


@functools.cache
def image_suffixes() -> tuple[str, ...]:
    """Return the image formats matplotlib can write here (``.png``, ``.pdf``, ``.svg``, …)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return tuple(sorted("." + s for s in FigureCanvasAgg(Figure()).get_supported_filetypes()))


def _check_output_path(path: Path, option: str, suffixes: Sequence[str], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ZooscopeInputError(f"{option} must be a {what} file ending in {', '.join(suffixes)}; "
                                 f"got {str(path)!r}.")
    if path.is_dir():
        raise ZooscopeInputError(f"{option} {str(path)!r} is a folder; give a file name.")
    return path


def check_image_path(path: Path | str | None, option: str = "--plot") -> Path | None:
    """``None`` or a path whose suffix matplotlib can write; else an error naming ``option``."""
    return None if path is None else _check_output_path(Path(path), option, image_suffixes(), "image")


def check_table_path(path: Path | str | None, option: str = "--out") -> Path | None:
    """``None`` or a .csv/.json/.parquet path; else an error naming ``option``."""
    return None if path is None else _check_output_path(Path(path), option, TABLE_SUFFIXES, "table")


def check_format(fmt: str) -> str:
    """``--format`` is table, csv or json."""
    if fmt not in FORMATS:
        from zooscope._validation import check_choice

        check_choice(fmt, FORMATS, "--format", "zooscope")
    return fmt


def parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    """Return a JSON object given on the command line (``{}`` when empty); a clear error naming ``option``."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooscopeInputError(f"{option} must be a JSON object such as '{{\"num_classes\": 10}}'; got "
                                 f"{text!r} ({e.msg} at character {e.pos}).") from None
    if not isinstance(value, dict):
        raise ZooscopeInputError(f"{option} must be a JSON object such as '{{\"num_classes\": 10}}'; got {text!r}.")
    return value


def parse_shape(text: str | None, option: str = "--input-shape") -> tuple[int, ...] | None:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``: one to three positive ints."""
    if text is None:
        return None
    parts = [p.strip() for p in re.split(r"[,x×]", text.strip())] if text.strip() else []
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not 1 <= len(shape) <= 3 or any(s < 1 or s > 1_000_000 for s in shape):
        raise ZooscopeInputError(f"{option} must be C,H,W (or F for vector inputs), positive integers such as "
                                 f"3,224,224; got {text!r}.")
    return shape


def check_name(name: str, what: str) -> str:
    """Return a zoo name, checked by the library's one rule (`zooscope._validation.validate_name`).

    Names are data, never paths.
    """
    try:
        return validate_name(name, what)
    except ZooscopeInputError as e:
        raise ZooscopeInputError(f"{what} name {name[:80]!r}{'…' if len(name) > 80 else ''} is not allowed: "
                                 f"{e}") from None
