"""Opening a zoo: where its catalog and storage are, and refusals that keep a healthy zoo safe.

`Zoo.open` and `Zoo.create` (zooscope.zoo.zoo) call these before anything reads or writes the zoo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zooscope._validation import ZooscopeInputError
from zooscope.zoo import integrity
from zooscope.zoo.catalog import Catalog

__all__ = ["folder_of_zoo", "open_catalog", "storage_of_url", "writable"]


def writable(root: Path) -> bool:
    """Whether to open the zoo for writing.

    The folder and its catalog are writable, and their permission bits say so (``chmod -R a-w zoo`` makes a
    zoo read-only even for root, whom `os.access` always lets write).
    """

    def ok(p: Path) -> bool:
        return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)

    cat = root / "catalog.sqlite"
    return ok(root) and (not cat.exists() or ok(cat))


def open_catalog(root: Path, open_: Any) -> Catalog:
    """``open_()``, with an unreadable catalog (garbage, damaged pages) turned into a one-line refusal."""
    import sqlalchemy as sa

    try:
        return open_()
    except sa.exc.SQLAlchemyError as e:
        raise integrity.catalog_unusable(root, e) from None


def storage_of_url(url: str, storage: str | os.PathLike[str] | None, create: bool) -> Path:
    """Return the storage folder of a zoo whose catalog is at ``url``; it must exist unless the zoo is being created."""
    if storage is None:
        raise ZooscopeInputError(
            f"--zoo {url.split('://')[0]}://…: a catalog URL needs the zoo's storage folder (vectors, indices, "
            "probes): add --storage DIR or set $ZOOSCOPE_STORAGE (Zoo.open(url, storage=DIR) in Python).")
    root = Path(storage).expanduser().resolve()
    if not create and not root.is_dir():
        raise ZooscopeInputError(f"--storage {str(storage)!r}: no such folder. Create the zoo with `zooscope init "
                                 f"--zoo URL --storage {storage}` (Zoo.create(url, storage=…)) first.")
    return root


def folder_of_zoo(path: str, storage: str | os.PathLike[str] | None, create: bool) -> Path:
    """Return the folder of a zoo at ``path``: not a file, its own storage, and never a catalog that lost its bytes."""
    root = Path(path).expanduser().resolve()
    if storage is not None and Path(storage).expanduser().resolve() != root:
        raise ZooscopeInputError(f"--storage {str(storage)!r} goes with a catalog URL in --zoo; a zoo folder "
                                 f"({path!r}) is its own storage. Drop --storage (or unset $ZOOSCOPE_STORAGE).")
    if root.exists() and not root.is_dir():
        raise ZooscopeInputError(f"{root} is a file; a zoo is a folder. Choose another path.")
    catalog = root / "catalog.sqlite"
    if catalog.is_file() and catalog.stat().st_size == 0:  # never taken for a new zoo: that would wipe it
        raise ZooscopeInputError(f"--zoo {path!r}: its catalog.sqlite is empty (0 bytes), so the zoo cannot be "
                                 "read; restore the catalog from a backup. Nothing was changed.")
    return root
