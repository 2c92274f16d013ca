"""The vector store: one ``.npy`` file per stored vector (or stack) under ``<root>/<kind>/<key>.npy``.

Files are written with `zooscope._io.atomic_write` (temp name in the same folder, fsync, `os.replace`, fsync of
the folder), so a reader (or a crash) sees either the whole old state or the whole new file, never half a vector.
Keys are uuid4 hex strings; the catalog maps (kind, model, dataset, layer, params) to a key.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from zooscope._io import TMP_PREFIX, atomic_write
from zooscope._validation import ZooscopeInputError, _to_numpy

__all__ = ["VectorStore"]

log = logging.getLogger(__name__)

_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^[0-9a-f]{32}$")


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ZooscopeInputError(
            f"Embedding kind {kind!r} cannot name a store folder: use letters, digits, '_', '-' or '.'."
        )
    return kind


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ZooscopeInputError(f"{key!r} is not a vector key (32 lower-case hex digits from VectorStore.put).")
    return key


class VectorStore:
    """Vectors on disk, addressed by uuid4-hex keys.

    Parameters
    ----------
    root : path
        The folder (``<zoo>/vectors``); created on first write.

    Examples
    --------
    >>> import tempfile
    >>> store = VectorStore(tempfile.mkdtemp())
    >>> key = store.put(np.arange(3, dtype=np.float32), kind="cka")
    >>> store.get(key).tolist(), store.keys("cka") == [key]
    ([0.0, 1.0, 2.0], True)
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        """Return the store as ``VectorStore(root)``."""
        return f"VectorStore({str(self.root)!r})"

    def kinds(self) -> list[str]:
        """Return the kinds with a folder in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _KIND.match(p.name))

    def put(self, v: npt.ArrayLike, *, kind: str) -> str:
        """Store an array atomically and return its new key (`put_hashed` also returns the file's sha256)."""
        return self.put_hashed(v, kind=kind)[0]

    def put_hashed(self, v: npt.ArrayLike, *, kind: str) -> tuple[str, str]:
        """Store an array atomically; return (its new key, the sha256 of the file's bytes).

        Parameters
        ----------
        v : array-like of shape (dim,) or (m, dim)
            A finite numeric vector (or a stack of them); integer input is stored as float32, floats keep
            their dtype.
        kind : str
            The embedding kind: the sub-folder it goes to.

        Returns
        -------
        (str, str)
            The key (32 hex digits) and the file's sha256, both to record in the catalog.
        """
        folder = self.root / _check_kind(kind)
        arr = _to_numpy(v)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.ndim == 0 or arr.size == 0:
            raise ZooscopeInputError(
                f"A stored vector must be a non-empty numeric array; got dtype {arr.dtype}, shape {arr.shape}."
            )
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ZooscopeInputError(
                "The vector contains NaN or Inf; it would poison the index. Fix the embedding (check the "
                "model's activations) before storing it."
            )
        key = uuid.uuid4().hex
        sha = atomic_write(folder / f"{key}.npy", lambda f: np.save(f, np.ascontiguousarray(arr), allow_pickle=False))
        return key, sha

    def path(self, key: str) -> Path:
        """Return the file holding ``key``; raises `KeyError` (with the fix) when it is not stored."""
        _check_key(key)
        for kind in self.kinds():
            p = self.root / kind / f"{key}.npy"
            if p.is_file():
                return p
        raise KeyError(
            f"Vector {key} is not in the store at {self.root}. The catalog names a missing file: "
            "run `zooscope check` and re-embed."
        )

    def get(self, key: str) -> np.ndarray:
        """Return the array stored under ``key`` (never unpickles)."""
        return np.load(self.path(key), allow_pickle=False)

    def get_many(self, keys: Iterable[str]) -> np.ndarray:
        """Stack the arrays of ``keys`` in order: shape (len(keys), *shape of each)."""
        keys = list(keys)
        if not keys:
            raise ZooscopeInputError("get_many needs at least one key.")
        arrays = [self.get(k) for k in keys]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ZooscopeInputError(
                f"The vectors have different shapes {sorted(shapes)}; they cannot be stacked. Fetch one kind "
                "(and one parameter setting) at a time."
            )
        return np.stack(arrays)

    def delete(self, keys: str | Iterable[str]) -> int:
        """Delete the files of ``keys``; keys not stored are skipped. Returns how many files were removed."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        removed = 0
        for k in keys:
            try:
                self.path(k).unlink()
                removed += 1
            except (KeyError, FileNotFoundError):
                log.debug("vector %s was already gone", k)
        return removed

    def keys(self, kind: str | None = None) -> list[str]:
        """Return the stored keys, sorted (of one kind, or all); temp files of interrupted writes are not listed."""
        kinds = self.kinds() if kind is None else [_check_kind(kind)]
        out: list[str] = []
        for k in kinds:
            folder = self.root / k
            if folder.is_dir():
                out.extend(p.stem for p in folder.glob("*.npy") if _KEY.match(p.stem))
        return sorted(out)

    def stale_temp_files(self) -> list[Path]:
        """Temp files left by writes that were killed before their rename (safe to delete when idle)."""
        return sorted(p for k in self.kinds() for p in (self.root / k).glob(f"{TMP_PREFIX}*"))
