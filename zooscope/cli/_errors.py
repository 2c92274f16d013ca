"""The CLI's error boundary, exit codes and warning lines (the policy is `zooscope.cli._common`'s docstring).

* bad input (a `ZooscopeInputError`, any other ``ValueError``, a missing or unreadable file, a corrupt
  archive, image or checkpoint, an unusable catalog, a bad ``--device``/``--plot``/``--out``, a usage error):
  one line ``error: …`` on stderr, exit 2;
* a problem found by ``check``: the table on stdout, exit 1;
* Ctrl-C: ``interrupted`` (``embed``: ``interrupted: N pairs saved, rerun to continue``), exit 130;
* a bug in zooscope (any other exception): one line naming the exception type, exit 3
  (``ZOOSCOPE_DEBUG=1`` re-raises it with its traceback).

Messages are printed as plain text (no Rich markup), so ``'zooscope[ray]'`` prints intact. Library warnings
(``warnings.warn`` and ``logging`` warnings of ``zooscope.*``) reach the user as one line each, with the CLI
option that changes them when there is one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from zooscope._validation import ZooscopeInputError

try:  # typer >= 0.20 vendors click: its usage errors are typer._click's, not click's
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException, UsageError  # noqa: F401 - re-exported


EXIT_BAD_INPUT, EXIT_FOUND, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 3, 130
_MAX_MESSAGE = 2000
INTERRUPT_REPORTED = [False]  # set once "interrupted…" is printed, so the root group does not print it twice


class Interrupted(Exception):
    """Ctrl-C, with the message to print (e.g. how much work was saved)."""


# -- printing ---------------------------------------------------------------------------------------------------
def one_line(text: object) -> str:
    """``text`` on one line (newlines and runs of blanks around them become one space), at most 2,000 chars."""
    s = re.sub(r"\s*\n\s*", " ", str(text)).strip()
    return s if len(s) <= _MAX_MESSAGE else s[: _MAX_MESSAGE - 1] + "…"


def say(text: str) -> None:
    """One plain line on stderr (no Rich markup: brackets print as they are)."""
    typer.echo(one_line(text), err=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` on one line and exit with ``code`` (2: bad input)."""
    say(f"error: {message}")
    raise typer.Exit(code=code)


# -- the error boundary -----------------------------------------------------------------------------------------
@functools.cache
def _input_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the input (a file, a name, an option, the zoo) is bad", not a bug."""
    import pickle
    import sqlite3
    import zipfile

    types: list[type[BaseException]] = [ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile,
                                        pickle.UnpicklingError, sqlite3.Error]
    try:
        from sqlalchemy.exc import DBAPIError

        types.append(DBAPIError)
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        pass
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from PIL import Image

        types.append(Image.DecompressionBombError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _message(e: BaseException) -> str:
    """Return the user-facing text of an exception: its message, without SQL, reprs or source paths."""
    orig = getattr(e, "orig", None)
    if orig is not None and type(e).__module__.startswith("sqlalchemy"):
        return f"the zoo's catalog cannot be used ({one_line(orig)})"
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        return f"{e.strerror}: {e.filename}"
    if isinstance(e, ZooscopeInputError):
        return str(e)
    text = str(e)
    if isinstance(e, json.JSONDecodeError | UnicodeError) or not text:
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text


# options that name files the verb reads: a low-level read error (a corrupt archive, a bad .npy header) is
# reported with them, since the library's message may not say which file it was reading
FILE_OPTIONS = ("data", "source", "checkpoint", "weights_a", "weights_b", "task2vec_probe_checkpoint")


def _reading(e: BaseException, text: str, files: dict[str, Any]) -> str:
    if isinstance(e, ZooscopeInputError) or not files:
        return text
    given = [(k, str(v)) for k, v in files.items() if v is not None and str(v) not in text]
    if not given or len(given) < len([v for v in files.values() if v is not None]):
        return text  # the message names its file already
    return text + " (while reading " + ", ".join(f"--{k.replace('_', '-')} {v!r}" for k, v in given) + ")"


def handle_exception(e: BaseException, verb: str, files: dict[str, Any] | None = None) -> NoReturn:
    """Turn any exception raised by a verb into the policy above (exits; re-raises click's own exits).

    ``files``: the verb's file options and their values, named in the message of a low-level read error.
    """
    if isinstance(e, typer.Exit | typer.Abort | ClickException):
        raise e
    if isinstance(e, Interrupted | KeyboardInterrupt):
        say((str(e) if isinstance(e, Interrupted) else "") or "interrupted")
        INTERRUPT_REPORTED[0] = True
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    if isinstance(e, _input_error_types()):
        fail(_reading(e, _message(e), files or {}))
    if os.environ.get("ZOOSCOPE_DEBUG"):
        raise e
    if not isinstance(e, Exception):  # SystemExit, GeneratorExit: not ours to translate
        raise e
    fail(f"internal error in `zooscope {verb}` ({type(e).__name__}: {_message(e)}); please report it, "
         "with ZOOSCOPE_DEBUG=1 set to see the traceback", EXIT_BUG)



# -- warnings and log records: one line each, with the option that changes them ---------------------------------
# (pattern in the warning text, options that change it): the first whose options the verb has wins
_WARNING_HINTS: list[tuple[str, tuple[str, ...]]] = [
    (r"batch", ("--batch-size",)),
    (r"sketch_dim|debiased|kwargs|threshold|sigma|alpha", ("--measure-kwargs", "--kwargs")),
    (r"layer", ("--layers-a", "--layers-b", "--layer", "--layer-b")),
    (r"example|sample|features", ("--n", "--measure")),
    (r"constant|unit", ("--n", "--layer", "--spatial", "--layers-a", "--layers-b")),
    (r"CCA|canonical|CKA|measure|R²", ("--measure",)),
    (r"probe|input shape", ("zooscope configure", "--input-shape")),
    (r"embed", ("zooscope ls --failed",)),
]


def warning_hint(text: str, options: Sequence[str], verb: str = "") -> str:
    """Return the options (among ``options``, or verbs) that change a warning of this text, as a short phrase."""
    if re.search(r"(^|\s)--[a-z]", text):  # the warning names its option (its fix) already
        return ""
    for pattern, opts in _WARNING_HINTS:
        if re.search(pattern, text, flags=re.IGNORECASE):
            usable = [o for o in opts if o in options or (o.startswith("zooscope ") and "--zoo" in options)]
            if usable:
                return "change it with " + " or ".join(usable)
    return f"options: `zooscope {verb} --help`" if verb else ""


class _OneLineHandler(logging.Handler):
    def __init__(self, options: Sequence[str], verb: str) -> None:
        super().__init__(level=logging.WARNING)
        self.options, self.verb = options, verb

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        hint = warning_hint(text, self.options, self.verb)
        say(f"warning: {text}" + (f" ({hint})" if hint else ""))


@contextmanager
def warnings_as_lines(options: Sequence[str], verb: str = "") -> Iterator[None]:
    """While a verb runs: each distinct warning once, as ``warning: text (change it with --option)``."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        text = one_line(message)
        if text in seen:
            return
        seen.add(text)
        hint = warning_hint(text, options, verb)
        say(f"warning: {text}" + (f" ({hint})" if hint else ""))

    logger = logging.getLogger("zooscope")
    handler = _OneLineHandler(options, verb)
    old_propagate = logger.propagate
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for cat in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=cat)  # about our dependencies, not the user's data
        warnings.showwarning = show
        logger.addHandler(handler)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = old_propagate

