"""The one progress helper of zooscope, on stderr and only when asked for.

A Rich bar on a terminal, plain lines in a log.

When stderr is not a terminal (``nohup``, CI, ``2> log``) a bar would print nothing useful, so `Progress` writes
one plain line per few percent (``PCT_STEP``) or per ``EVERY_S`` seconds, whichever comes first, with the counts
and the elapsed time::

    embedding: 12/240 (5%), 1 failed, 0 skipped, 0:03:10 elapsed

`track` wraps an iterable in it; ``zooscope.zoo.embedrun`` drives one by hand (done, failed, skipped).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["EVERY_S", "PCT_STEP", "Progress", "stderr_is_terminal", "track"]

PCT_STEP = 5  # a log line each time this many more percent are done
EVERY_S = 30.0  # and at least this often (also when the total is unknown)


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (Rich's view, so FORCE_TERMINAL / TTY_COMPATIBLE are honoured)."""
    from rich.console import Console

    return bool(Console(stderr=True).is_terminal)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of ``total`` steps (None: unknown) labelled ``description``, on stderr if ``enabled``.

    Use as a context manager; call `advance` per step. Named counters (e.g. ``failed=1``) are shown after the
    count: as Rich fields on a terminal, in the text of each log line otherwise.
    """

    def __init__(self, description: str, total: int | None, *, enabled: bool, transient: bool = False,
                 counters: tuple[str, ...] = ()) -> None:
        self.description, self.total, self.enabled, self.transient = description, total, enabled, transient
        self.done = 0
        self.counts = dict.fromkeys(counters, 0)
        self._bar: Any = None
        self._task: Any = None
        self._log = False
        self._start = self._last_t = 0.0
        self._last_pct = -PCT_STEP
        self._last_done = -1

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        self._start = self._last_t = time.monotonic()
        if stderr_is_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            fields = [TextColumn(f"{{task.fields[{k}]}} {k}") for k in self.counts]
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *fields,
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                     transient=self.transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, **self.counts)
        else:
            self._log = True
            self._line()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        elif self._log and exc[0] is None and self._last_done != self.done:
            self._line()
        self._log = False

    def _line(self) -> None:
        now = time.monotonic()
        parts = [f"{self.done:,}/{self.total:,}" if self.total else f"{self.done:,}"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        parts += [f"{v:,} {k}" for k, v in self.counts.items()]
        parts.append(f"{_clock(now - self._start)} elapsed")
        sys.stderr.write(f"{self.description}: {', '.join(parts)}\n")
        sys.stderr.flush()
        self._last_t, self._last_done = now, self.done
        if self.total:
            self._last_pct = 100 * self.done // self.total

    def advance(self, n: int = 1, **counts: int) -> None:
        """``n`` more steps done; ``counts`` adds to the named counters."""
        self.done += n
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        if self._bar is not None:
            self._bar.update(self._task, advance=n, **self.counts)
        elif self._log:
            pct = 100 * self.done // self.total if self.total else None
            due = time.monotonic() - self._last_t >= EVERY_S
            if due or (pct is not None and (pct >= self._last_pct + PCT_STEP or self.done == self.total)):
                self._line()


def track(items: Iterable[Any], *, description: str, enabled: bool, total: int | None = None,
          transient: bool = False) -> Iterator[Any]:
    """Iterate ``items``, with progress on stderr only if ``enabled`` (the opt-in ``progress``).

    Parameters
    ----------
    items : iterable
        What to iterate; yielded unchanged.
    description : str
        The label (of the bar, or at the start of each log line).
    enabled : bool
        Show progress (else plain iteration, nothing printed).
    total : int, optional
        Number of items, when ``items`` has no ``len``.
    transient : bool, default=False
        Clear the bar when done (for bars inside a query whose table follows); log lines stay.
    """
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(description, total, enabled=True, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()
