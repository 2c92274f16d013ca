"""The checked index file: a zooscope container around the faiss serialisation, and the exact vectors beside it.

`write_index` writes a small container -- a magic line, a JSON header (dim, metric, normalized, factory) and the
faiss serialisation -- to a temp name, fsyncs it and renames it into place; it returns the file's sha256.
`read_index` reads the file into memory, checks that sha256 and only then hands the same bytes to faiss
(``read_index`` on a crafted file can run code, so nothing unverified reaches it, and the file cannot change
between the check and the read). Exact vectors go beside the index under a content-addressed name
(``<index>.<sha[:16]>.exact.npy``); their sha256 is in the checked header.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError
from zooscope.index.factory import ADD_CHUNK, ram_budget

__all__ = ["index_files", "read_index", "write_index"]

_MAGIC = b"ZOOSCOPE-FAISS\n"
_FORMAT = 1
_EXACT_SUFFIX = ".exact.npy"
_EXACT_NAME = re.compile(r"\.[0-9a-f]{16}\.exact\.npy")


def write_index(path: Path, index: faiss.Index, meta: dict[str, Any], exact: np.ndarray | None) -> str:
    """Write ``index`` with its header ``meta`` (and ``exact`` beside it) atomically; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": _FORMAT, **meta}
    if exact is not None:
        side, digest = _write_exact(path, exact)
        meta["exact"] = {"file": side.name, "sha256": digest, "rows": int(exact.shape[0])}
    header = json.dumps(meta).encode()
    payload = faiss.serialize_index(index)
    parts = (_MAGIC, len(header).to_bytes(8, "little"), header, payload.tobytes())
    digest = atomic_write(path, lambda f: [f.write(part) for part in parts])
    if exact is not None:  # older exact files of this index (content-addressed names)
        for old in path.parent.glob(path.name + ".*" + _EXACT_SUFFIX):
            if old.name != meta["exact"]["file"] and _EXACT_NAME.fullmatch(old.name[len(path.name):]):
                old.unlink(missing_ok=True)
    return digest


def index_files(path: Path) -> list[Path]:
    """Return the files an index saved at ``path`` occupies: ``path`` and its exact-vector files, if any."""
    side = [p for p in path.parent.glob(path.name + ".*" + _EXACT_SUFFIX)
            if _EXACT_NAME.fullmatch(p.name[len(path.name):])]
    return ([path] if path.exists() else []) + sorted(side)


def read_index(path: Path, sha256: str | None, *, allow_unverified: bool,
               mmap: bool | None) -> tuple[faiss.Index, dict[str, Any], np.ndarray | None]:
    """Return the faiss index, header and exact vectors (or None) of a file written by `write_index`, checked first.

    See `zooscope.index.VectorIndex.load` for the parameters and errors.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No index file at {path}. Rebuild the index (zooscope embed rebuilds it).")
    if sha256 is None and not allow_unverified:
        raise ZooscopeInputError(
            f"Refusing to read {path} without its sha256: faiss deserialisation of a crafted file can run "
            "code. Pass the checksum recorded in the catalog (Catalog.get_index)."
        )
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != str(sha256).lower():
        raise ZooscopeInputError(
            f"The index file {path} does not match its recorded sha256 (it was changed or truncated after "
            "it was saved); it was not read. Delete it and rebuild the index from the vector store."
        )
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        raise ZooscopeInputError(f"{path} is not a zooscope index file (written by VectorIndex.save).")
    start = len(_MAGIC) + 8
    hlen = int.from_bytes(data[len(_MAGIC):start], "little")
    meta = json.loads(data[start:start + hlen])
    if meta.get("format") != _FORMAT:
        raise ZooscopeInputError(f"{path} has index format {meta.get('format')}; this zooscope reads {_FORMAT}.")
    exact = _load_exact(path, meta, mmap) if meta.get("exact") else None
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=start + hlen))
    del data
    if exact is not None and exact.shape != (int(index.ntotal), int(index.d)):
        raise ZooscopeInputError(f"{path}: the exact vectors have shape {exact.shape}, the index "
                                 f"({index.ntotal}, {index.d}); rebuild the index.")
    return index, meta, exact


def _write_exact(index_path: Path, arr: np.ndarray) -> tuple[Path, str]:
    """Write ``arr`` as .npy beside the index under a content-addressed name; return (path, sha256).

    The name is ``<index>.<sha[:16]>.exact.npy``, written through `zooscope._io.atomic_write` in chunks. A reader
    of the previous index file still finds its own exact file until the next save removes it.
    """
    header = _npy_header(arr.shape, arr.dtype)

    def chunks() -> Iterator[bytes]:
        yield header
        for s in range(0, arr.shape[0], ADD_CHUNK):
            yield np.ascontiguousarray(arr[s:s + ADD_CHUNK]).tobytes()

    h = hashlib.sha256()  # the name carries the content hash, so hash first, then write under that name
    for block in chunks():
        h.update(block)
    digest = h.hexdigest()
    path = index_path.with_name(f"{index_path.name}.{digest[:16]}{_EXACT_SUFFIX}")
    atomic_write(path, lambda f: [f.write(block) for block in chunks()])
    return path, digest


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                              "fortran_order": False, "shape": tuple(int(s) for s in shape)})
    return buf.getvalue()  # magic string included


def _load_exact(path: Path, meta: dict[str, Any], mmap: bool | None) -> np.ndarray:
    info = meta["exact"]
    name = str(info.get("file", ""))
    if not (name.startswith(path.name) and _EXACT_NAME.fullmatch(name[len(path.name):])):  # data, never a path
        raise ZooscopeInputError(f"{path}: unexpected exact-vector file name {name!r}; rebuild the index.")
    side = path.with_name(name)
    if not side.is_file():
        raise ZooscopeInputError(f"{path}: its exact vectors {side.name} are missing; rebuild the index.")
    h = hashlib.sha256()
    with open(side, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    if h.hexdigest() != info.get("sha256"):
        raise ZooscopeInputError(f"{side} does not match the sha256 recorded in {path.name}; it was changed "
                                 "after it was saved. Rebuild the index from the vector store.")
    if mmap is None:
        mmap = side.stat().st_size > ram_budget() // 4
    arr = np.load(side, mmap_mode="r" if mmap else None, allow_pickle=False)
    if arr.dtype != np.float32 or arr.ndim != 2:
        raise ZooscopeInputError(f"{side} holds {arr.dtype} {arr.shape}, not float32 vectors; rebuild the index.")
    return arr
