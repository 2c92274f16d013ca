"""Opening the zoo named by ``--zoo`` (and ``--storage``) for the CLI verbs.

The CLI's other shared pieces live one job per module: `zooscope.cli._errors` (the error boundary, exit codes,
warning lines), `zooscope.cli._validators` (option checks), `zooscope.cli._options` (``--zoo``, ``--storage``,
``--format`` and `guard`) and `zooscope.cli._output` (tables, csv/json, table files, the spinner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zooscope.cli._options import _STORAGE, default_storage

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo


def open_zoo(zoo: str, *, create: bool = False, storage: str | None = None) -> Zoo:
    """Open the zoo named by --zoo (a folder, or a catalog URL with --storage / $ZOOSCOPE_STORAGE).

    Only ``init`` creates one: `Zoo.open` refuses a folder with no catalog, and says what to type.
    """
    from zooscope.zoo.zoo import Zoo

    explicit = storage or _STORAGE.get()
    if "://" in zoo:
        storage = explicit or default_storage() or None
    else:  # $ZOOSCOPE_STORAGE is for catalog URLs: a zoo folder is its own storage
        storage = explicit if explicit and explicit != default_storage() else None
    return Zoo.open(zoo, storage=storage, create=create)
