"""Bulk registration: many models from one manifest file (``zooscope add-model --from manifest.csv``).

A manifest is a CSV file with a header row and one model per row. Columns: ``name`` and ``arch`` (required),
``checkpoint``, ``trained-on``, ``kwargs`` (a JSON object), ``input-shape`` (``C,H,W``), ``metrics`` (a JSON
object) and ``tags`` (``;``-separated), all optional; ``_`` may replace ``-`` in column names. A relative
checkpoint path is read against the manifest's folder.

Every row is registered by `Zoo.add_model` in this one process (torch and the model code load once), one catalog
transaction per model, so an interrupted run keeps the models before it and a rerun with ``replace=False`` skips
nothing silently: a name already in the zoo is a row error. A row that fails is reported with its row number
(counted as a spreadsheet shows them: the header is row 1) and the other rows go on.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zooscope._validation import ZooscopeInputError, validate_name

COLUMNS = ("name", "arch", "checkpoint", "trained-on", "kwargs", "input-shape", "metrics", "tags")
REQUIRED = ("name", "arch")


@dataclass(frozen=True)
class ManifestRow:
    """One model of a manifest, checked (names, JSON, shape, the checkpoint file) but not loaded."""

    row: int
    name: str
    arch: str
    checkpoint: Path | None = None
    trained_on: str | None = None
    kwargs: dict | None = None
    input_shape: tuple[int, ...] | None = None
    metrics: dict | None = None
    tags: list[str] | None = None


@dataclass(frozen=True)
class RowOutcome:
    """What became of one manifest row: ``error`` is None when the model was registered."""

    row: int
    name: str
    error: str | None = None


def _json_object(text: str, column: str) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooscopeInputError(f"{column} is not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise ZooscopeInputError(f"{column} must be a JSON object such as {{\"num_classes\": 10}}; got {text!r}")
    return value


def _shape(text: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("×", ",").replace("x", ",").split(","))
    except ValueError:
        raise ZooscopeInputError(f"input-shape must be C,H,W (integers); got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ZooscopeInputError(f"input-shape must be positive integers; got {text!r}")
    return shape


def _parse(row: int, cells: dict[str, str], base: Path) -> ManifestRow:
    """One row's cells (keys normalised to `COLUMNS`) → a checked `ManifestRow`; ZooscopeInputError if bad."""
    missing = [c for c in REQUIRED if not cells.get(c)]
    if missing:
        raise ZooscopeInputError(f"empty {' and '.join(missing)}")
    name = validate_name(cells["name"], "model")
    trained_on = cells.get("trained-on") or None
    if trained_on is not None:
        validate_name(trained_on, "trained-on dataset")
    ckpt = None
    if cells.get("checkpoint"):
        ckpt = Path(os.path.expanduser(cells["checkpoint"]))
        ckpt = (ckpt if ckpt.is_absolute() else base / ckpt).resolve()
        if not ckpt.is_file():
            raise ZooscopeInputError(f"checkpoint {cells['checkpoint']!r}: no such file ({ckpt})")
    tags = [t.strip() for t in (cells.get("tags") or "").split(";") if t.strip()] or None
    return ManifestRow(row, name, cells["arch"], ckpt, trained_on, _json_object(cells.get("kwargs", ""), "kwargs"),
                       _shape(cells.get("input-shape", "")), _json_object(cells.get("metrics", ""), "metrics"),
                       tags)


def read_manifest(path: str | os.PathLike[str]) -> Iterator[ManifestRow | RowOutcome]:
    """Yield each row of a manifest as a checked `ManifestRow`, or as a `RowOutcome` naming its error.

    Raises
    ------
    ZooscopeInputError
        The file is missing, not UTF-8 CSV, or its header lacks ``name``/``arch`` or has unknown columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooscopeInputError(f"--from {str(path)!r}: no such file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooscopeInputError(f"--from {str(path)!r}: cannot read it as UTF-8 text ({e}).") from None
    reader = csv.DictReader(text.splitlines())
    header = [(h or "").strip().lower().replace("_", "-") for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown or any(c not in header for c in REQUIRED):
        raise ZooscopeInputError(
            f"--from {str(path)!r}: the header must name the columns {', '.join(REQUIRED)} and may add "
            f"{', '.join(COLUMNS[2:])}; got {', '.join(header) or 'no header'}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "") + ".")
    seen: dict[str, int] = {}
    for i, raw in enumerate(reader, start=2):
        cells = {h: (v or "").strip() for h, v in zip(header, raw.values(), strict=False)}
        if not any(cells.values()):
            continue  # a blank line
        if None in raw:  # more cells than the header names
            yield RowOutcome(i, cells.get("name", ""), f"{len(header) + len(raw[None])} cells for "
                             f"{len(header)} columns (quote a cell that holds a comma, e.g. JSON kwargs)")
            continue
        name = cells.get("name", "")
        if name in seen:
            yield RowOutcome(i, name, f"name {name!r} already used by row {seen[name]}")
            continue
        try:
            parsed = _parse(i, cells, path.parent.resolve())
        except ZooscopeInputError as e:
            yield RowOutcome(i, name, str(e).rstrip("."))
            continue
        seen[name] = i
        yield parsed


def add_models(zoo: Any, path: str | os.PathLike[str], *, replace: bool = False,
               on_row: Callable[[RowOutcome], None] | None = None) -> list[RowOutcome]:
    """Register every model of the manifest at ``path`` in ``zoo`` (a `zooscope.Zoo`), one transaction each.

    A row that fails (bad cell, missing file, a spec that does not build, a checkpoint that does not fit, a name
    already in the zoo without ``replace``) is recorded in its `RowOutcome` and the next row goes on.
    ``on_row`` is called after each row (for progress lines).
    """
    existing = set(zoo.models()["name"])
    outcomes: list[RowOutcome] = []
    for item in read_manifest(path):
        if isinstance(item, RowOutcome):
            outcome = item
        elif item.name in existing and not replace:
            outcome = RowOutcome(item.row, item.name, f"a model named {item.name!r} is already in the zoo "
                                 "(pass --replace to replace it)")
        else:
            extra = {"input_shape": item.input_shape} if item.input_shape is not None else {}
            try:
                zoo.add_model(item.name, arch=item.arch, checkpoint=item.checkpoint, kwargs=item.kwargs,
                              trained_on=item.trained_on, metrics=item.metrics, tags=item.tags, replace=replace,
                              **extra)
                outcome = RowOutcome(item.row, item.name)
                existing.add(item.name)
            except (ZooscopeInputError, ValueError, OSError, RuntimeError) as e:
                outcome = RowOutcome(item.row, item.name, str(e).strip().splitlines()[0].rstrip("."))
        outcomes.append(outcome)
        if on_row is not None:
            on_row(outcome)
    return outcomes
