"""Target-side scores.

Each candidate's transferability scores on the target's labelled data, computed on its pre-logits features
(`zooscope.embed.prelogits`); features and scores cached per (model, dataset, subset) under the zoo's
``cache/select_features``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope._io import cached_array, write_cache
from zooscope._progress import track
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import params_hash
from zooscope.zoo.select.context import DEFAULT_COLUMNS, SCORES, SelectContext

__all__ = ["default_table", "features", "load_labelled", "score_table"]

log = logging.getLogger(__name__)


def load_labelled(rec: dict[str, Any]) -> Any:
    """Return the registered dataset ``rec``'s labelled examples (at least two classes)."""
    from zooscope.nets.datasets import check_labelled, load_dataset

    return check_labelled(load_dataset(rec.source, split=rec.meta.get("split", "train"),
                                       seed=int(rec.meta.get("seed", 0))))


def _cache_path(ctx: SelectContext, m: dict[str, Any], rec: dict[str, Any], key: dict[str, Any]) -> Path:
    """``cache/select_features/<hash>.npz`` for (model, dataset, subset).

    Its scores sit next to it in ``<hash>.scores-<zooscope version>.json``.
    """
    h = params_hash({**key, "model": m.name, "spec": m.spec, "kwargs": m.kwargs,
                     "checkpoint": m.checkpoint, "sha": m.checkpoint_sha256,
                     "dataset": rec.name, "source": rec.source, "meta": rec.meta, "rule": "prelogits"})
    return ctx.probes.paths.cache / "select_features" / f"{h[:32]}.npz"


def features(m: dict[str, Any], sub: Any, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(pre-logits features (n, p), softmax of the source head (n, C) or None), cached at ``path``."""

    def compute() -> dict[str, np.ndarray]:
        from zooscope.embed.prelogits import prelogits_features
        from zooscope.nets.models import ModelSpec

        feats, logits = prelogits_features(ModelSpec.from_row(m).build(), sub.x)
        if logits is None:
            return {"features": feats, "probs": np.zeros(0)}
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        return {"features": feats, "probs": probs}

    z = cached_array(path, compute, keys=("features", "probs"))
    return z["features"], (z["probs"] if z["probs"].size else None)


def score_table(ctx: SelectContext, rec: dict[str, Any], models: list[dict[str, Any]], columns: Sequence[str],
                max_examples: int, seed: int, show_progress: bool = False,
                skipped: list[tuple[str, str]] | None = None) -> tuple[pd.DataFrame, Any]:
    """One row per model: the transferability ``columns`` on ``rec``'s labelled data (pre-logits features).

    Features and scores cached per (model, dataset, subset). Returns (table, the labelled dataset).
    """
    from zooscope._version import __version__
    from zooscope.nets.datasets import probe_subset

    ds = load_labelled(rec)
    sub = probe_subset(ds, min(max_examples, len(ds)), seed=seed)
    y = sub.y.numpy()
    key = {"n": len(sub), "seed": seed}
    rows = []
    for m in track(models, description=f"features and scores of {len(models)} candidates", enabled=show_progress,
                   transient=True):
        row: dict[str, Any] = {"model": m.name}
        if columns:
            path = _cache_path(ctx, m, rec, key)
            spath = path.with_name(f"{path.stem}.scores-{__version__}.json")
            try:
                cached = json.loads(spath.read_text()) if spath.is_file() else {}
            except (OSError, ValueError):
                cached = {}
            todo = [c for c in columns if c not in cached]
            if todo:
                feats, probs = features(m, sub, path)
                dead = feature_problem(feats)
                if dead:  # NaN/Inf or constant features: skipped with one line, never fatal for the zoo
                    if skipped is not None:
                        skipped.append((m.name, dead))
                    continue
                for c in todo:
                    cached[c] = _one_score(c, feats, probs, y, m.name, rec.name)
                write_cache(spath, json.dumps(cached).encode())
            row.update({c: float(cached[c]) for c in columns})
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", *columns]), ds


def feature_problem(feats: np.ndarray) -> str | None:
    """Why a model's features on a dataset cannot be scored (non-finite, or the same for every example.

    All-zero or dead weights), or None.
    """
    if not np.isfinite(feats).all():
        return "non-finite features (NaN or Inf weights or activations)"
    if len(feats) > 1 and np.array_equal(np.broadcast_to(feats[:1], feats.shape), feats):
        return "constant features (the same for every example: all-zero or dead weights?)"
    return None


def _one_score(c: str, feats: np.ndarray, probs: np.ndarray | None, y: np.ndarray, model: str,
               dataset: str) -> float:
    """Score ``c`` (a `SCORES` method) of one model on what its registry entry says it reads."""
    score = SCORES[c]
    source = score.transfer.source
    try:
        if source == "features":
            return float(score(feats, y))
        return np.nan if probs is None else float(score(probs if source == "probs" else probs.argmax(1), y))
    except ZooscopeInputError:
        raise
    except (ValueError, np.linalg.LinAlgError) as e:  # a degenerate feature matrix: no score
        log.warning("%s of %s on %s failed: %s", c, model, dataset, e)
        return np.nan


def default_table(ctx: SelectContext, rec: dict[str, Any], fits: list[dict[str, Any]], max_examples: int,
                  seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Return the default ranker's score columns of ``fits`` on ``rec`` (table, `DEFAULT_COLUMNS`)."""
    t, _ = score_table(ctx, rec, fits, DEFAULT_COLUMNS, max_examples, seed)
    return t, list(DEFAULT_COLUMNS)
