"""The one atomic file write of zooscope: temp file in the same folder, fsync, `os.replace`, fsync the folder.

A reader (or a crash at any point) sees the whole old file or the whole new one, never half of either; after
`atomic_write` returns, the new file survives a power cut (file and directory entry are both on disk).

Caches (re-computable files) go through the same write: `write_cache` (a cache that cannot be written only costs
time: a warning, never an error) and `cached_array` (load the cached array, or compute, cache and return it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_PREFIX", "atomic_open", "atomic_write", "cached_array", "file_sha256", "fsync_dir", "user_cache_dir",
           "write_cache"]

log = logging.getLogger(__name__)
_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process

TMP_PREFIX = ".tmp-"  # temp files of unfinished writes start with this (safe to delete when idle)


def user_cache_dir() -> Path:
    """``$ZOOSCOPE_CACHE``, else ``~/.cache/zooscope``: where re-computable files go outside a zoo."""
    return Path(os.environ.get("ZOOSCOPE_CACHE") or Path.home() / ".cache" / "zooscope").expanduser()


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary temp file next to ``path``; on a clean exit it is fsynced and renamed to ``path``.

    On an exception the temp file is deleted and ``path`` is untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> with atomic_open(p) as f:
    ...     _ = f.write(b"hello")
    >>> p.read_bytes()
    b'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno and e.filename is None:  # ENOSPC from write(): say which file
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any] | bytes) -> str:
    """Write ``path`` atomically and durably; returns the sha256 of the bytes written.

    Parameters
    ----------
    path : path
    write : bytes or callable
        The content, or ``write(f)`` that writes it to a binary file object (e.g. ``lambda f: np.save(f, a)``).
    """
    h = hashlib.sha256()
    with atomic_open(path) as f:
        hashing = _HashingWriter(f, h)
        if isinstance(write, bytes | bytearray | memoryview):
            hashing.write(bytes(write))
        else:
            write(hashing)
    return h.hexdigest()


def write_cache(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any] | bytes) -> bool:
    """`atomic_write` for a cache file: an `OSError` (read-only or full disk) is logged as a warning, not raised.

    Returns
    -------
    bool
        Whether the file was written.
    """
    try:
        atomic_write(path, write)
    except OSError as e:  # a cache that cannot be written only costs time
        log.warning("could not cache %s (%s)", path, e)
        return False
    return True


def cached_array(path: str | os.PathLike[str], compute: Callable[[], Any], keys: Sequence[str] = ()) -> Any:
    """Return the array cached at ``path``, or ``compute()``'s, written there atomically (`write_cache`) and returned.

    Parameters
    ----------
    path : path
        ``.npz``: ``compute`` returns a dict of arrays (and a dict is returned); otherwise one array (``.npy``).
    compute : callable
        Builds the value when the cache is missing or unreadable (never unpickled: ``allow_pickle=False``).
    keys : sequence of str, optional
        ``.npz`` only: arrays the cached file must hold; a file without them is recomputed.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> cached_array(p, lambda: np.arange(3)), cached_array(p, lambda: np.zeros(3))  # the second one is read
    (array([0, 1, 2]), array([0, 1, 2]))
    """
    import numpy as np

    path = Path(path)
    npz = path.suffix == ".npz"
    if path.is_file():
        try:
            if not npz:
                return np.load(path, allow_pickle=False)
            with np.load(path, allow_pickle=False) as z:
                if not set(keys) <= set(z.files):
                    raise KeyError(f"missing {sorted(set(keys) - set(z.files))}")
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:  # a damaged cache is recomputed, never trusted
            log.warning("ignoring unreadable cache %s (%s)", path, e)
    value = compute()
    if npz:
        write_cache(path, lambda f: np.savez(f, **value))
    else:
        write_cache(path, lambda f: np.save(f, np.asarray(value), allow_pickle=False))
    return value


class _HashingWriter:
    """A binary file wrapper that hashes what passes through it."""

    def __init__(self, f: IO[bytes], h: Any) -> None:
        self._f, self._h = f, h

    def write(self, data: Any) -> int:
        b = memoryview(data).cast("B")
        self._h.update(b)
        return self._f.write(b)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, seek, tell ... as the real file
        return getattr(self._f, name)


def file_sha256(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20, memo: bool = False) -> str:
    """Hex sha256 of a file's bytes, read in chunks (checkpoints can be large): the one file hash of zooscope.

    Parameters
    ----------
    path : path
        File to hash.
    chunk_size : int, default=1 MiB
        Bytes read at a time.
    memo : bool, default=False
        Memoise per process by (path, size, mtime), so repeated reads of a file that does not change are cheap
        (zoo files written once and verified on every read). Off for files that may be rewritten in place
        (checkpoints): a rewrite of the same size within the clock's resolution would keep the old hash.

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    path = Path(path)
    key = None
    if memo:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key in _HASHED:
            return _HASHED[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    if key is not None:
        _HASHED[key] = h.hexdigest()
    return h.hexdigest()
