"""`Zoo.check`: consistency of catalog ↔ vector files ↔ FAISS indices, and of the recorded checkpoints.

``check`` reads only. It verifies the catalog itself (SQLite ``quick_check``), every vector file against the
sha256 the catalog recorded (and that it holds finite numbers), every materialised probe file against its
recorded sha256, the indices, and the checkpoints.

``check(fix=True)`` (the one writing variant) acts only on the problems it has just listed: it drops the rows
whose vector file is missing or corrupt (and deletes those files), deletes the orphan files it listed, forgets a
corrupt probe file (renamed ``*.corrupt``, never deleted; the next ``embed`` re-makes the same tensors from the
dataset, under the same probe-set id) and rebuilds the indices. No other file is ever deleted.

Beside a live writer. ``fix`` acts under the index locks of every kind (`zooscope.zoo.embedrun.index_locks`),
like embed's index update and removals, so no index is rebuilt under another writer's feet. A vector file that
appears unnamed may be one an `embed` has just written and not recorded yet: orphans (and temp files) are only
deleted when no other writer holds a live claim, and only those still unnamed when the rows are read again.
Temp files of index saves (``indices/.new-<kind>-<pid>.faiss``) are reported once their process is gone, and
deleted by ``fix``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope.zoo.catalog.claims import _owner_dead
from zooscope.zoo.embedrun import EmbedContext, index_locks
from zooscope.zoo.indices import IndexKey, IndexWriter
from zooscope.zoo.integrity import CorruptFileError
from zooscope.zoo.probes import loadable_net, verified_probe

__all__ = ["COLUMNS", "CheckContext", "check"]

COLUMNS = ["problem", "subject", "detail", "fix"]


@dataclass(frozen=True)
class CheckContext:
    """What `check` reads (and, with ``fix=True``, repairs): the embedding context and its indices."""

    embedding: EmbedContext

    @property
    def indices(self) -> IndexWriter:
        """The indices."""
        return self.embedding.indices


def check(ctx: CheckContext, *, fix: bool = False) -> pd.DataFrame:
    """See `Zoo.check`."""
    from zooscope._io import file_sha256
    from zooscope.embed._kinds import EMBEDDINGS

    cat, store, vectors = ctx.embedding.catalog, ctx.embedding.store, ctx.embedding.vectors
    out: list[dict[str, Any]] = []
    changed: list[tuple[str, Path]] = []
    # what fix=True acts on
    listed: dict[str, list[Any]] = {"rows": [], "orphans": [], "probes": [], "t2v": [], "temps": []}

    def add(problem: str, subject: str, detail: str, how: str) -> None:
        out.append({"problem": problem, "subject": subject, "detail": detail, "fix": how})

    bad = _catalog_problem(cat)
    if bad:  # a damaged catalog: report it alone (nothing below could be trusted), never fix it
        add("damaged catalog", "catalog.sqlite", bad, "restore it from a backup or `zooscope import` an export")
        return pd.DataFrame(out, columns=COLUMNS)
    for shape, rec in sorted(ctx.embedding.settings.probe_sets.items()):
        try:
            path = _probe_path(ctx, rec)
            if path.is_file():
                verified_probe(ctx.embedding.probes, rec)
        except (ValueError, OSError) as e:
            add("corrupt probe set", f"{rec.get('dataset')} ({shape})", str(e).splitlines()[0],
                "`zooscope check --fix` sets it aside, then `zooscope embed` re-makes it")
            listed["probes"].append(shape)
    for shape, net in sorted(ctx.embedding.settings.task2vec_probes.items()):
        try:
            loadable_net(ctx.embedding.probes, net)
        except (ValueError, OSError) as e:
            add("bad Task2Vec probe network", shape, str(e).splitlines()[0],
                "`zooscope check --fix` sets it aside, then `zooscope embed` trains a new one")
            listed["t2v"].append(shape)

    for m in cat.models():
        if not m.checkpoint:
            continue
        path = Path(m.checkpoint)
        if not path.is_file():
            add("missing checkpoint", m.name, str(path),
                "restore the file, or `zooscope remove model` it and `zooscope add-model` it again")
        elif m.checkpoint_sha256 and file_sha256(path) != m.checkpoint_sha256:
            add("checkpoint changed", m.name, f"{path}: sha256 differs from the recorded "
                f"{m.checkpoint_sha256[:12]}…", "`zooscope check --fix` re-queues it, then `zooscope embed`")
            changed.append((m.name, path))
    rows = cat.embeddings()
    used: dict[str, set[str]] = {}
    shas = {m.name: m.checkpoint_sha256 for m in cat.models()}
    for r in rows:
        used.setdefault(r.kind, set()).add(r.vector_key)
        who = f"{r.model}:{r.dataset}" if r.model and r.dataset else r.model or r.dataset  # pairs: both
        req = (r.params or {}).get("request") or {}
        if r.model and "checkpoint_sha256" in req and req["checkpoint_sha256"] != shas.get(r.model):
            add("stale vector", who, f"{r.kind} vector of an earlier checkpoint", "`zooscope embed` re-embeds it")
        try:
            arr = vectors.read(r)
            if arr.shape[-1] != r.dim:
                add("vector shape", who, f"{r.kind} vector {r.vector_key} has dim {arr.shape[-1]}, "
                    f"catalog says {r.dim}", "`zooscope check --fix` drops it, then `zooscope embed`")
                listed["rows"].append(r)
        except CorruptFileError as e:
            add("corrupt vector", who, f"{r.kind} row {r.id}: {str(e).splitlines()[0]}",
                "`zooscope check --fix` drops it, then `zooscope embed` recomputes it")
            listed["rows"].append(r)
        except (KeyError, OSError, ValueError) as e:
            add("missing vector", who, f"{r.kind} row {r.id}: {str(e).splitlines()[0]}",
                "`zooscope check --fix` drops it, then `zooscope embed` recomputes it")
            listed["rows"].append(r)
    for kind in store.kinds():
        for key in store.keys(kind):
            if key not in used.get(kind, set()):
                add("orphan vector", kind, f"{key}.npy is named by no catalog row", "`zooscope check --fix` deletes it")
                listed["orphans"].append(key)
    for path in stray_index_files(ctx):
        add("stray index file", path.name, "left by an index save that was killed", "check(fix=True) deletes it")
        listed["temps"].append(path)
    kinds = sorted({r.kind for r in rows} | {i.kind for i in cat.indices()})
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
            cat.update_model(name, checkpoint_sha256=file_sha256(path))
        with index_locks(cat, sorted(set(kinds) | set(store.kinds()))):
            _fix(ctx, listed, [k for k in kinds if k in EMBEDDINGS])
        return check(_fresh(ctx), fix=False)
    return table


def stray_index_files(ctx: CheckContext) -> list[Path]:
    """``indices/.new-<kind>-<pid>.faiss`` files whose process (on this host) is gone."""
    import socket

    folder = Path(ctx.embedding.paths.root) / "indices"
    out = []
    for p in sorted(folder.glob(".new-*.faiss")) if folder.is_dir() else []:
        pid = p.stem.rpartition("-")[2]
        if pid.isdigit() and _owner_dead(f"{socket.gethostname()}:{pid}:"):
            out.append(p)
    return out


def _catalog_problem(cat: Any) -> str | None:
    """Return the catalog's own damage (SQLite ``PRAGMA quick_check``), or None."""
    import sqlalchemy as sa

    if cat.engine.dialect.name != "sqlite":
        return None
    try:
        with cat.engine.connect() as conn:
            res = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    except sa.exc.SQLAlchemyError as e:
        return str(getattr(e, "orig", e)).splitlines()[0]
    return None if res == ["ok"] else "; ".join(map(str, res))[:300]


def _probe_path(ctx: CheckContext, rec: dict[str, Any]) -> Path:
    return Path(ctx.embedding.paths.root) / rec["file"]


def _fresh(ctx: CheckContext) -> CheckContext:
    """Return the context with settings re-read (a fix may have changed the probe sets)."""
    from zooscope.zoo.settings import ZooSettings

    e = ctx.embedding
    return CheckContext(EmbedContext(e.catalog, e.store, e.paths, ZooSettings.load(e.catalog)))


def _check_index(ctx: CheckContext, key: IndexKey, wanted: bool, add: Any) -> None:
    name = f"{key.kind}__{key.column}"
    rec = ctx.indices.record(key)
    if not wanted:
        add("stale index", name, "an index is recorded for a group with no vectors", "`zooscope check --fix` drops it")
        return
    try:
        _, want = ctx.indices.expected(key)
    except (KeyError, OSError, ValueError):
        want = None  # a missing vector is reported already
    if rec is None:
        if want is not None and len(want):
            add("missing index", name, "vectors exist but no index is recorded", "`zooscope check --fix` builds it")
        return
    try:
        index = ctx.indices.load(key)
    except Exception as e:  # missing file, sha256 mismatch, unreadable
        add("bad index", name, str(e).splitlines()[0], "`zooscope check --fix` rebuilds it")
        return
    if want is not None and not np.array_equal(np.sort(index.ids()), np.sort(want)):
        extra = np.setdiff1d(index.ids(), want).size
        missing = np.setdiff1d(want, index.ids()).size
        add("stale index", name, f"{missing} vectors missing from the index, {extra} ids without "
            "a catalog row", "`zooscope check --fix` rebuilds it")


def _fix(ctx: CheckContext, listed: dict[str, list[Any]], kinds: list[str]) -> None:
    """Repair exactly what `check` listed: its rows (and their files), its orphan files, its probe sets."""
    store, cat = ctx.embedding.store, ctx.embedding.catalog
    if listed["rows"]:  # the row first: a kill between the two leaves an orphan file, never a dangling row
        cat.remove_embeddings([r.id for r in listed["rows"]])
        store.delete([r.vector_key for r in listed["rows"]])
    busy = [c for c in cat.claims(live_only=True)]  # check holds none: any live claim is another writer's
    if listed["orphans"] and not busy:
        named = {r.vector_key for r in cat.embeddings()}  # read again: a row committed since still protects
        store.delete([k for k in listed["orphans"] if k not in named])
    if listed["probes"]:
        sets = dict(cat.get_setting("probe_sets", {}) or {})
        for shape in listed["probes"]:
            rec = sets.pop(shape, None)
            if rec:  # the damaged file is set aside (never deleted): its name records what it was
                path = Path(ctx.embedding.paths.root) / rec["file"]
                if path.is_file():
                    path.replace(path.with_name(path.name + ".corrupt"))
        cat.set_setting("probe_sets", sets)
    if listed["t2v"]:
        nets = dict(cat.get_setting("task2vec_probes", {}) or {})
        for shape in listed["t2v"]:
            path = Path(ctx.embedding.paths.root) / (nets.pop(shape, None) or {}).get("checkpoint", "")
            if path.is_file() and path.parent == Path(ctx.embedding.paths.probes):
                path.replace(path.with_name(path.name + ".corrupt"))
        cat.set_setting("task2vec_probes", nets)
    for p in [] if busy else store.stale_temp_files():
        p.unlink(missing_ok=True)
    for p in listed["temps"]:
        p.unlink(missing_ok=True)
    ctx.indices.rebuild(kinds)
