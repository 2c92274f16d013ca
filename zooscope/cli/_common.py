"""Opening the zoo named by ``--zoo`` (and ``--storage``) for the CLI verbs.

The CLI's other shared pieces live one job per module: `zooscope.cli._errors` (the error boundary, exit codes,
warning lines), `zooscope.cli._validators` (option checks), `zooscope.cli._options` (``--zoo``, ``--storage``,
``--format`` and `guard`) and `zooscope.cli._output` (tables, csv/json, table files, the spinner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zooscope._validation import ZooscopeInputError
from zooscope.cli._options import _STORAGE, default_storage


def open_zoo(zoo: str, *, create: bool = False, storage: str | None = None) -> Any:
    """Open the zoo named by --zoo (a folder, or a catalog URL with --storage / $ZOOSCOPE_STORAGE). Only ``init``
    creates one: other verbs refuse a folder with no catalog."""
    from zooscope.zoo.zoo import Zoo

    storage = storage or _STORAGE.get() or default_storage()
    if "://" in zoo:
        if not storage:
            raise ZooscopeInputError(f"--zoo {zoo.split('://')[0]}://…: a catalog URL needs the zoo's storage folder "
                                     "(vectors, indices, probes): add --storage DIR or set $ZOOSCOPE_STORAGE.")
        if not create and not Path(storage).expanduser().is_dir():
            raise ZooscopeInputError(f"--storage {storage!r}: no such folder. Create the zoo with `zooscope init "
                                     f"--zoo URL --storage {storage}` first.")
        return Zoo.open(zoo, storage=storage, create=create)
    if (storage and storage != default_storage()
            and Path(storage).expanduser().resolve() != Path(zoo).expanduser().resolve()):
        raise ZooscopeInputError(f"--storage {storage!r} goes with a catalog URL in --zoo; a zoo folder ({zoo!r}) "
                                 "is its own storage. Drop --storage (or unset $ZOOSCOPE_STORAGE).")

    if "://" not in zoo:
        root = Path(zoo).expanduser()
        catalog = root / "catalog.sqlite"
        if catalog.is_file() and catalog.stat().st_size == 0:  # never taken for a new zoo: that would wipe it
            raise ZooscopeInputError(f"--zoo {zoo!r}: its catalog.sqlite is empty (0 bytes), so the zoo cannot be "
                                     "read; restore the catalog from a backup. Nothing was changed.")
    if "://" not in zoo and not create:
        if root.is_dir():  # a marker without its catalog: the library's message says how to recover
            from zooscope.zoo.integrity import check_folder

            check_folder(root.resolve(), create=False)
        if not (root / "catalog.sqlite").is_file():
            raise ZooscopeInputError(f"--zoo {zoo!r}: no zoo there (no catalog.sqlite). Create one with "
                                     f"`zooscope init --zoo {zoo}`, or point --zoo (or $ZOOSCOPE_ZOO) at an "
                                     "existing zoo.")
    return Zoo.open(zoo, create=create)
