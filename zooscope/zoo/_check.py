"""`Zoo.check`: consistency of catalog ↔ vector files ↔ FAISS indices, and of the recorded checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zooscope.zoo import _vectors
from zooscope.zoo.parallel import load_kinds

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

COLUMNS = ["problem", "subject", "detail", "fix"]


def check(zoo: Zoo, *, fix: bool = False) -> pd.DataFrame:
    """See `Zoo.check`."""
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.zoo.models import sha256_file

    load_kinds()
    out: list[dict[str, Any]] = []

    def add(problem: str, subject: str, detail: str, how: str) -> None:
        out.append({"problem": problem, "subject": subject, "detail": detail, "fix": how})

    for m in zoo.catalog.models():
        if not m["checkpoint"]:
            continue
        path = Path(m["checkpoint"])
        if not path.is_file():
            add("missing checkpoint", m["name"], str(path), "restore the file, or remove_model and re-add it")
        elif m["checkpoint_sha256"] and sha256_file(path) != m["checkpoint_sha256"]:
            add("checkpoint changed", m["name"], f"{path}: sha256 differs from the recorded "
                f"{m['checkpoint_sha256'][:12]}…", "re-add the model (add_model(..., replace=True)) and embed")
    rows = zoo.catalog.embeddings()
    used: dict[str, set[str]] = {}
    for r in rows:
        used.setdefault(r["kind"], set()).add(r["vector_key"])
        who = r["model"] or r["dataset"]
        try:
            arr = _vectors.read_stack(zoo, r)
            if arr.shape[-1] != r["dim"]:
                add("vector shape", who, f"{r['kind']} vector {r['vector_key']} has dim {arr.shape[-1]}, "
                    f"catalog says {r['dim']}", "re-embed it")
        except (KeyError, OSError, ValueError) as e:
            add("missing vector", who, f"{r['kind']} row {r['id']}: {str(e).splitlines()[0][:120]}",
                "re-embed (remove the row with check(fix=True), then embed)")
    for kind in zoo.store.kinds():
        for key in zoo.store.keys(kind):
            if key not in used.get(kind, set()):
                add("orphan vector", kind, f"{key}.npy is named by no catalog row", "check(fix=True) deletes it")
    for kind in sorted({r["kind"] for r in rows} | {i["kind"] for i in zoo.catalog.indices()}):
        if kind not in EMBEDDINGS:
            continue
        for policy in _vectors.policies(EMBEDDINGS.get(kind).meta.subject):
            _check_index(zoo, kind, policy, add)
    table = pd.DataFrame(out, columns=COLUMNS)
    if fix and not table.empty:
        _fix(zoo, table, rows)
        return check(zoo, fix=False)
    return table


def _check_index(zoo: Zoo, kind: str, policy: str, add: Any) -> None:
    rec = zoo.catalog.get_index(kind, policy)
    try:
        _, want = _vectors.expected_index(zoo, kind, policy)
    except (KeyError, OSError, ValueError):
        want = None  # a missing vector is reported already
    if rec is None:
        if want is not None and len(want):
            add("missing index", f"{kind}__{policy}", "vectors exist but no index is recorded", "check(fix=True)")
        return
    try:
        index = _vectors.load_index(zoo, kind, policy)
    except Exception as e:  # missing file, sha256 mismatch, unreadable
        add("bad index", f"{kind}__{policy}", str(e).splitlines()[0][:160], "check(fix=True) rebuilds it")
        return
    if want is not None and not np.array_equal(np.sort(index.ids()), np.sort(want)):
        extra = np.setdiff1d(index.ids(), want).size
        missing = np.setdiff1d(want, index.ids()).size
        add("stale index", f"{kind}__{policy}", f"{missing} vectors missing from the index, {extra} ids without "
            "a catalog row", "check(fix=True) rebuilds it")


def _fix(zoo: Zoo, table: pd.DataFrame, rows: list[dict]) -> None:
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.zoo._embedrun import remove_orphans

    bad_rows = []
    for r in rows:
        try:
            zoo.store.path(r["vector_key"])
        except KeyError:
            bad_rows.append(r["id"])
    if bad_rows:
        zoo.catalog.remove_embeddings(bad_rows)
    remove_orphans(zoo, zoo.store.kinds())
    kinds = sorted({r["kind"] for r in rows} | {i["kind"] for i in zoo.catalog.indices()})
    _vectors.rebuild_indices(zoo, [k for k in kinds if k in EMBEDDINGS])
