"""The last `zooscope bench selection` run of a zoo, kept in the zoo's cache for `zooscope report`.

``<cache>/bench_selection/last.json`` (the cache is re-computable and never the zoo itself, so a benchmark, a query,
may write it; a read-only zoo's cache is under ``$ZOOSCOPE_CACHE``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from zooscope._io import atomic_write

__all__ = ["LAST_FILE", "last_selection", "save_last"]

log = logging.getLogger(__name__)

LAST_FILE = "bench_selection/last.json"


def save_last(zoo: Any, summary: pd.DataFrame, per_target: pd.DataFrame, truth: Any, metric: str) -> None:
    """Keep a run's tables in ``zoo.paths.cache``; a full or unwritable cache never fails the benchmark."""
    paths = getattr(zoo, "paths", None)
    if paths is None or per_target.empty:
        return
    doc = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "metric": metric,
           "truth": Path(truth).name if isinstance(truth, str | Path) else "(a DataFrame)",
           "summary": json.loads(summary.to_json(orient="records")),
           "per_target": json.loads(per_target.to_json(orient="records"))}
    try:
        atomic_write(Path(paths.cache) / LAST_FILE, json.dumps(doc, indent=1).encode())
    except OSError as e:
        log.warning("could not keep the selection results for `zooscope report` (%s)", e)


def last_selection(zoo: Any) -> dict[str, Any] | None:
    """Return the last kept run on this zoo, or None.

    Returns
    -------
    dict or None
        ``created`` (UTC, ISO), ``metric``, ``truth`` (file name), ``summary`` and ``per_target`` (DataFrames).
    """
    paths = getattr(zoo, "paths", None)
    f = None if paths is None else Path(paths.cache) / LAST_FILE
    if f is None or not f.is_file():
        return None
    try:
        doc = json.loads(f.read_text())
        doc["summary"], doc["per_target"] = pd.DataFrame(doc["summary"]), pd.DataFrame(doc["per_target"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring the unreadable kept selection results %s (%s)", f, e)
        return None
    return doc
