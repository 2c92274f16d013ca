"""The one plugin mechanism of zooscope: a `Registry` of named callables with metadata.

Measures (`zooscope.measures.MEASURES`), embedding kinds (`zooscope.embed._kinds.EMBEDDINGS`) and streaming
comparers use it. A registry may name the modules that fill it (``modules=``): they are imported on the first
lookup, and an import error there propagates -- a plugin module that fails to import is an error, never a
silently missing name.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from zooscope._validation import ZooscopeInputError

M = TypeVar("M")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[M]):
    """A registered callable with its metadata; attribute access falls through to the metadata."""

    name: str
    fn: Callable[..., Any]
    meta: M

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # m.is_metric, m.invariances: DESIGN.md's contract
        if attr == "meta" or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.meta, attr)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.fn.__doc__


class Registry(Generic[M]):
    """Name -> (callable, metadata). Names are the functions' own names; ``aliases`` are other names `get` accepts.

    Parameters
    ----------
    what : str
        What the entries are, for messages ("measure", "embedding kind").
    modules : sequence of str, optional
        Modules that register entries; imported (once) before the first lookup. Import errors propagate.

    Examples
    --------
    >>> reg = Registry("greeting")
    >>> @reg.register("formal")
    ... def hello(name): return f"Good day, {name}"
    >>> reg.get("hello")("Ada"), reg.get("hello").meta
    ('Good day, Ada', 'formal')
    """

    def __init__(self, what: str, modules: Sequence[str] = ()) -> None:
        self.what = what
        self.modules = tuple(modules)
        self._loaded = not self.modules
        self._entries: dict[str, Entry[M]] = {}
        self._aliases: dict[str, str] = {}

    def load(self) -> None:
        """Import the registering modules (idempotent; an import error propagates and is retried next time)."""
        if self._loaded:
            return
        for mod in self.modules:
            importlib.import_module(mod)
        self._loaded = True

    def register(self, meta: M, name: str | None = None, aliases: Sequence[str] = ()) -> Callable[[F], F]:
        """Register the decorated function under its own name (or ``name``) with ``meta``.

        `get` also finds it under each of ``aliases`` (names users type that differ from the function's, e.g.
        ``hscore``).
        """

        def add(fn: F) -> F:
            key = name or fn.__name__
            for k in (key, *aliases):
                if k in self._entries or k in self._aliases:
                    raise RuntimeError(f"{self.what} {k!r} is registered twice")
            self._entries[key] = Entry(key, fn, meta)
            self._aliases.update(dict.fromkeys((a for a in aliases if a != key), key))
            return fn  # stays a plain function: importable, testable, greppable

        return add

    def get(self, name: str) -> Entry[M]:
        """Return the entry called ``name`` (or aliased so); an unknown name lists close matches and every valid one."""
        self.load()
        name = self._aliases.get(name, name)
        if name not in self._entries:
            near = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f" Did you mean {', '.join(near)}?" if near else ""
            raise ZooscopeInputError(
                f"Unknown {self.what} {name!r}.{hint} Valid names: {', '.join(self.available())}."
            )
        return self._entries[name]

    def available(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a glob ``pattern``."""
        self.load()
        return sorted(fnmatch.filter(self._entries, pattern))

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())
