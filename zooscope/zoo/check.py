"""`Zoo.check`: consistency of catalog ↔ vector files ↔ FAISS indices, and of the recorded checkpoints.

``check`` reads only; ``check(fix=True)`` (the one writing variant) deletes rows whose vector file is gone and
orphan vector files, and rebuilds the indices from the vector store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope.zoo.embedrun import EmbedContext, remove_orphans
from zooscope.zoo.indices import IndexKey, IndexWriter

__all__ = ["COLUMNS", "CheckContext", "check"]

COLUMNS = ["problem", "subject", "detail", "fix"]


@dataclass(frozen=True)
class CheckContext:
    """What `check` reads (and, with ``fix=True``, repairs): the embedding context and its indices."""

    embedding: EmbedContext

    @property
    def indices(self) -> IndexWriter:
        return self.embedding.indices


def check(ctx: CheckContext, *, fix: bool = False) -> pd.DataFrame:
    """See `Zoo.check`."""
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.zoo.models import sha256_file

    cat, store, vectors = ctx.embedding.catalog, ctx.embedding.store, ctx.embedding.vectors
    out: list[dict[str, Any]] = []
    changed: list[tuple[str, Path]] = []

    def add(problem: str, subject: str, detail: str, how: str) -> None:
        out.append({"problem": problem, "subject": subject, "detail": detail, "fix": how})

    for m in cat.models():
        if not m["checkpoint"]:
            continue
        path = Path(m["checkpoint"])
        if not path.is_file():
            add("missing checkpoint", m["name"], str(path), "restore the file, or remove_model and re-add it")
        elif m["checkpoint_sha256"] and sha256_file(path) != m["checkpoint_sha256"]:
            add("checkpoint changed", m["name"], f"{path}: sha256 differs from the recorded "
                f"{m['checkpoint_sha256'][:12]}…", "check --fix re-queues it (check(fix=True)), then embed")
            changed.append((m["name"], path))
    rows = cat.embeddings()
    used: dict[str, set[str]] = {}
    shas = {m["name"]: m["checkpoint_sha256"] for m in cat.models()}
    for r in rows:
        used.setdefault(r["kind"], set()).add(r["vector_key"])
        who = r["model"] or r["dataset"]
        req = (r["params"] or {}).get("request") or {}
        if r["model"] and "checkpoint_sha256" in req and req["checkpoint_sha256"] != shas.get(r["model"]):
            add("stale vector", who, f"{r['kind']} vector of an earlier checkpoint", "embed re-embeds it")
        try:
            arr = vectors.read(r)
            if arr.shape[-1] != r["dim"]:
                add("vector shape", who, f"{r['kind']} vector {r['vector_key']} has dim {arr.shape[-1]}, "
                    f"catalog says {r['dim']}", "re-embed it")
        except (KeyError, OSError, ValueError) as e:
            add("missing vector", who, f"{r['kind']} row {r['id']}: {str(e).splitlines()[0]}",
                "re-embed (remove the row with check(fix=True), then embed)")
    for kind in store.kinds():
        for key in store.keys(kind):
            if key not in used.get(kind, set()):
                add("orphan vector", kind, f"{key}.npy is named by no catalog row", "check(fix=True) deletes it")
    kinds = sorted({r["kind"] for r in rows} | {i["kind"] for i in cat.indices()})
    for kind in kinds:
        if kind not in EMBEDDINGS:
            continue
        try:
            want = set(ctx.indices.expected_keys(kind))
        except (KeyError, OSError, ValueError):
            want = set()
        for key in sorted(want | set(ctx.indices.keys(kind))):
            _check_index(ctx, key, key in want, add)
    table = pd.DataFrame(out, columns=COLUMNS)
    if fix and not table.empty:
        for name, path in changed:  # re-queue: the next embed sees a new request and replaces the stale vectors
            cat.update_model(name, checkpoint_sha256=sha256_file(path))
        _fix(ctx, rows, [k for k in kinds if k in EMBEDDINGS])
        return check(ctx, fix=False)
    return table


def _check_index(ctx: CheckContext, key: IndexKey, wanted: bool, add: Any) -> None:
    name = f"{key.kind}__{key.column}"
    rec = ctx.indices.record(key)
    if not wanted:
        add("stale index", name, "an index is recorded for a group with no vectors", "check(fix=True) drops it")
        return
    try:
        _, want = ctx.indices.expected(key)
    except (KeyError, OSError, ValueError):
        want = None  # a missing vector is reported already
    if rec is None:
        if want is not None and len(want):
            add("missing index", name, "vectors exist but no index is recorded", "check(fix=True)")
        return
    try:
        index = ctx.indices.load(key)
    except Exception as e:  # missing file, sha256 mismatch, unreadable
        add("bad index", name, str(e).splitlines()[0], "check(fix=True) rebuilds it")
        return
    if want is not None and not np.array_equal(np.sort(index.ids()), np.sort(want)):
        extra = np.setdiff1d(index.ids(), want).size
        missing = np.setdiff1d(want, index.ids()).size
        add("stale index", name, f"{missing} vectors missing from the index, {extra} ids without "
            "a catalog row", "check(fix=True) rebuilds it")


def _fix(ctx: CheckContext, rows: list[dict], kinds: list[str]) -> None:
    store = ctx.embedding.store
    bad_rows = []
    for r in rows:
        try:
            store.path(r["vector_key"])
        except KeyError:
            bad_rows.append(r["id"])
    if bad_rows:
        ctx.embedding.catalog.remove_embeddings(bad_rows)
    remove_orphans(ctx.embedding, store.kinds())
    ctx.indices.rebuild(kinds)
