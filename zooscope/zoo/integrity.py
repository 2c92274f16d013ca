r"""Integrity of a zoo: names that are data, files that carry their sha256, a catalog that cannot be mistaken.

* **Names** (`validate_name`, defined in `zooscope._validation`): every model / dataset name is checked where
  the library records it (`zooscope.zoo.catalog.Catalog`): 1–200 bytes of UTF-8, no control characters or NUL,
  no ``/`` or ``\\``, not ``.`` or ``..``, no leading/trailing blanks. Unicode letters are fine. Names never
  become file names: vector files are named by uuid keys, probe files by a hash of the probe set's id.
* **Checksums** (`verified_bytes`): the catalog records the sha256 of every vector file (``embeddings.sha256``)
  and of every probe file (the probe-set record's ``file_sha256``); readers verify it and a mismatch raises
  `CorruptFileError` naming the file and ``zooscope check --fix``.
* **The marker** (``<zoo>/zoo.json``: format, zoo id, schema version, created), written by `Zoo.create`. With a
  marker, a missing, empty, truncated or garbage ``catalog.sqlite`` is refused by `Zoo.open` and `Zoo.create`
  (`check_folder`): such a zoo is never re-initialised and never cleaned. The zoo id is also stored in the
  catalog's settings (``zoo_id``), so a catalog copied from another zoo is refused too.
* **Unusable models** (`model_problem`): a checkpoint that is missing or whose sha256 changed since ``add_model``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import struct
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zooscope._io import file_sha256
from zooscope._validation import MAX_NAME_BYTES, ZooscopeInputError, validate_name

if TYPE_CHECKING:  # the catalog imports this module (names): records only for annotations
    from zooscope.zoo.catalog.records import EmbeddingRecord, ModelRecord

__all__ = ["MARKER", "MAX_NAME_BYTES", "CorruptFileError", "check_catalog_file", "check_folder", "file_sha256",
           "model_problem", "read_marker", "validate_name", "verified_bytes", "write_marker"]

MARKER = "zoo.json"
MARKER_FORMAT = "zooscope-zoo"
_SQLITE_HEADER = b"SQLite format 3\x00"


class CorruptFileError(ZooscopeInputError):
    """A zoo file whose content does not match the sha256 the catalog recorded (or that cannot be read)."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


# -- checksums ------------------------------------------------------------------------------------------------
def check_labels(y: Any, name: str, source: str) -> None:
    """Return a labelled dataset needs labels of at least two classes (``y`` None: a probe set without labels)."""
    if y is None:
        return
    import numpy as np

    present = len(np.unique(np.asarray(y)))
    if present < 2:
        raise ZooscopeInputError(f"dataset {name!r}: its labels hold {present} class{'es' * (present != 1)} "
                                 f"({source}); a labelled dataset needs at least 2 (a probe set without labels "
                                 "is a .npy file of inputs only).")


def verified_bytes(path: str | os.PathLike[str], sha256: str | None, what: str) -> bytes:
    """Return the bytes of ``path``, after checking them against ``sha256`` (None: not recorded, not checked).

    Raises
    ------
    CorruptFileError
        The content differs from the recorded sha256 (names the file and the fix).
    """
    path = Path(path)
    data = path.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptFileError(
            f"The {what} file {path} is corrupt: its sha256 differs from the one the catalog recorded "
            f"({sha256[:12]}…). Run `zooscope check --fix` (then `zooscope embed`) to drop and recompute it.", path)
    return data


def verify_file(path: str | os.PathLike[str], sha256: str | None, what: str) -> None:
    """Like `verified_bytes` without keeping the bytes (memoised: a file unchanged since is not re-hashed)."""
    if sha256 and file_sha256(path, memo=True) != sha256:
        raise CorruptFileError(
            f"The {what} file {path} is corrupt: its sha256 differs from the one the catalog recorded "
            f"({sha256[:12]}…). Run `zooscope check --fix` (then `zooscope embed`) to drop and recompute it.", path)


def model_problem(rec: ModelRecord) -> str | None:
    """Why a model cannot be trusted for a query (its checkpoint is missing or changed since add_model), or None."""
    ckpt = rec.checkpoint
    if not ckpt:
        return None
    path = Path(ckpt)
    if not path.is_file():
        return f"checkpoint missing ({path})"
    want = rec.checkpoint_sha256
    if want and file_sha256(path, memo=True) != want:
        return (f"checkpoint changed since add_model ({path}: sha256 differs; run `zooscope check --fix`, then "
                "`zooscope embed`)")
    return None


# -- the catalog file and the marker --------------------------------------------------------------------------
def check_catalog_file(path: str | os.PathLike[str]) -> None:
    """Refuse an SQLite catalog file that is empty, too short, not SQLite, or shorter than its header says.

    A catalog with a ``-wal`` file next to it is only checked for its header (pages may live in the WAL).
    """
    path = Path(path)
    fix = ("Nothing was changed. Restore catalog.sqlite from a backup, or rebuild the zoo from an export "
           "(`zooscope import EXPORT_DIR --zoo NEW`).")
    size = path.stat().st_size
    if size == 0:
        raise ZooscopeInputError(f"The zoo catalog {path} is empty (0 bytes): the zoo cannot be read. {fix}")
    head = _read_head(path)
    if len(head) < 100 or not head.startswith(_SQLITE_HEADER):
        raise ZooscopeInputError(f"The zoo catalog {path} is not an SQLite database (damaged or overwritten). {fix}")
    page = struct.unpack(">H", head[16:18])[0]
    page = 65536 if page == 1 else page
    n_pages = struct.unpack(">I", head[28:32])[0]
    wal = path.with_name(path.name + "-wal")
    if (not wal.exists() or wal.stat().st_size == 0) and n_pages and size < page * n_pages:
        raise ZooscopeInputError(f"The zoo catalog {path} is truncated ({size} bytes; its header says "
                                 f"{page * n_pages}). {fix}")


_HEAD_FDS: dict[tuple[int, int], int] = {}


def _read_head(path: Path) -> bytes:
    """Return the first 100 bytes of an SQLite file, read through one descriptor kept open for the process's life.

    SQLite's POSIX locks belong to the process and the inode: closing *any* descriptor of the database drops the
    locks of every connection this process holds on it (sqlite.org/howtocorrupt.html, 2.2). Another process
    could then take itself for the last user, delete the WAL under our connections and leave them failing with
    "disk I/O error". So the header check never closes a descriptor of a live database.
    """
    st = path.stat()
    key = (st.st_dev, st.st_ino)
    fd = _HEAD_FDS.get(key)
    if fd is not None and os.fstat(fd).st_nlink == 0:  # that file was deleted (and its inode reused)
        os.close(fd)
        fd = None
    if fd is None:
        fd = _HEAD_FDS[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return os.pread(fd, 100, 0)


def read_marker(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the zoo's marker (``zoo.json``), or None when the folder has none (a zoo made before markers existed)."""
    p = Path(root) / MARKER
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError) as e:
        raise ZooscopeInputError(f"The zoo marker {p} cannot be read ({e}). Nothing was changed; restore it from "
                                 "a backup or an export.") from None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or not data.get("zoo_id"):
        raise ZooscopeInputError(f"{p} is not a zooscope zoo marker. Nothing was changed; is --zoo the right "
                                 "folder?")
    return data


def write_marker(root: str | os.PathLike[str], zoo_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Write ``<root>/zoo.json`` (atomically) and return it: format, zoo_id, schema_version, created."""
    from zooscope._io import atomic_write
    from zooscope.zoo.catalog.schema import SCHEMA_VERSION

    data = {"format": MARKER_FORMAT, "zoo_id": zoo_id or uuid.uuid4().hex, "schema_version": SCHEMA_VERSION,
            "created": dt.datetime.now(dt.UTC).isoformat(), **extra}
    atomic_write(Path(root) / MARKER, (json.dumps(data, indent=1) + "\n").encode())
    return data


def check_folder(root: Path, *, create: bool) -> dict[str, Any] | None:
    """Before a zoo folder is opened (or created): refuse anything that could be a damaged zoo; returns the marker.

    A folder with a marker must have a usable ``catalog.sqlite`` (even with ``create``: a zoo is never
    re-initialised); an existing catalog file must look like SQLite and not be truncated.
    """
    marker = read_marker(root) if root.is_dir() else None
    cat = root / "catalog.sqlite"
    if marker is not None and not cat.exists():
        raise ZooscopeInputError(
            f"The zoo at {root} has lost its catalog (zoo.json is there, catalog.sqlite is not). Nothing was "
            "changed. Restore catalog.sqlite from a backup, or rebuild the zoo from an export "
            "(`zooscope import EXPORT_DIR --zoo NEW`).")
    if cat.exists():
        if not cat.is_file():
            raise ZooscopeInputError(f"{cat} is not a file. Nothing was changed.")
        check_catalog_file(cat)
    return marker


def catalog_unusable(root: Path, e: BaseException) -> ZooscopeInputError:
    """Return the error for a catalog that failed to open.

    A full disk or I/O error says so (the catalog is intact and must not be "restored"); anything else is a
    catalog that cannot be read.
    """
    text = str(getattr(e, "orig", e)).splitlines()[0]
    path = root / "catalog.sqlite"
    if any(s in text.lower() for s in ("database or disk is full", "disk i/o error", "no space left")):
        return ZooscopeInputError(f"The zoo catalog {path} cannot be opened for writing ({text}): is the disk of "
                                  f"{root} full? Nothing was changed and the catalog is not damaged; free space and "
                                  "run the command again.")
    return ZooscopeInputError(f"The zoo catalog {path} cannot be read ({text}). Nothing was changed. Restore it "
                              "from a backup, or rebuild the zoo from an export (`zooscope import`).")


def check_catalog_matches(root: Path, marker: dict[str, Any] | None, catalog: Any) -> None:
    """Refuse a catalog that cannot be read, or whose zoo id differs from the marker's (a catalog of another zoo)."""
    import sqlalchemy as sa

    try:
        stored = catalog.get_setting("zoo_id")
        catalog.count_models()
    except sa.exc.SQLAlchemyError as e:
        raise catalog_unusable(root, e) from None
    if marker is not None and stored is not None and stored != marker["zoo_id"]:
        raise ZooscopeInputError(
            f"The catalog in {root} belongs to another zoo (its zoo id {stored[:8]}… is not the marker's "
            f"{marker['zoo_id'][:8]}…). Nothing was changed; put the zoo's own catalog.sqlite back.")


# -- queries: one bad model never blocks a query ----------------------------------------------------------------
def screen_rows(catalog: Any, vectors: Any, rows: dict[int, EmbeddingRecord]
                ) -> tuple[dict[int, EmbeddingRecord], list[tuple[str, str]]]:
    """Split candidate embedding rows into (usable rows, skipped [(model, reason)]).

    A row is skipped when its model's checkpoint is missing or changed (`model_problem`) or its vector file is
    missing, corrupt or non-finite (`zooscope.zoo.vectors.VectorRepo.problem`).
    """
    keep: dict[int, dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    recs = {m.name: m for m in catalog.models()}
    for rid, row in rows.items():
        name = row.model or row.dataset
        reason = model_problem(recs[row.model]) if row.model in recs else None
        reason = reason or vectors.problem(row)
        if reason:
            skipped.append((name, reason))
        else:
            keep[rid] = row
    return keep, sorted(set(skipped))


def nonfinite_model(net: Any) -> str | None:
    """"non-finite weights (N of M parameters)" when a network holds NaN/Inf parameters or buffers, else None."""
    import torch

    bad = total = 0
    for t in [*net.parameters(), *net.buffers()]:
        if t.is_floating_point():
            total += t.numel()
            bad += int((~torch.isfinite(t)).sum())
    return f"non-finite weights ({bad} of {total} values are NaN or Inf)" if bad else None


def skipped_note(skipped: list[tuple[str, str]]) -> list[str]:
    """One line per skipped model: ``skipped MODEL: reason``."""
    return [f"skipped {name}: {reason}" for name, reason in skipped]
