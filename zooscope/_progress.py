"""The one progress bar of zooscope: a Rich bar on stderr around an iterable, drawn only when asked for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["track"]


def track(items: Iterable[Any], *, description: str, enabled: bool, total: int | None = None,
          transient: bool = False) -> Iterator[Any]:
    """Iterate ``items``, with a Rich progress bar on stderr only if ``enabled`` (the opt-in ``progress``).

    Parameters
    ----------
    items : iterable
        What to iterate; yielded unchanged.
    description : str
        The bar's label.
    enabled : bool
        Draw the bar (else plain iteration, nothing printed).
    total : int, optional
        Number of items, when ``items`` has no ``len``.
    transient : bool, default=False
        Clear the bar when done (for bars inside a query whose table follows).
    """
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(items, total=total, description=description, console=Console(stderr=True),
                          transient=transient)
