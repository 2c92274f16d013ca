"""Shared pieces of the CLI verbs: the error boundary, option validators, output of tables, the --zoo option.

Error policy (every verb, see `boundary`):

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

import contextvars
import functools
import inspect
import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from zooscope._validation import ZooscopeInputError

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

try:  # typer >= 0.20 vendors click: its usage errors are typer._click's, not click's
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException, UsageError  # noqa: F401 - re-exported

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

Format = Literal["table", "csv", "json"]
FORMATS = ("table", "csv", "json")
TABLE_SUFFIXES = (".csv", ".json", ".parquet")
EXIT_BAD_INPUT, EXIT_FOUND, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 3, 130
_MAX_MESSAGE = 2000
INTERRUPT_REPORTED = [False]  # set once "interrupted…" is printed, so the root group does not print it twice


def default_zoo() -> str:
    """`$ZOOSCOPE_ZOO`, else ./zoo."""
    return os.environ.get("ZOOSCOPE_ZOO", "zoo")


ZooOpt = Annotated[
    str,
    typer.Option(
        "--zoo",
        help="Zoo folder (or a catalog URL). Default: $ZOOSCOPE_ZOO, else ./zoo.",
        default_factory=default_zoo,
        show_default=False,
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: table, csv or json.")]


def default_storage() -> str | None:
    """`$ZOOSCOPE_STORAGE`, else None."""
    return os.environ.get("ZOOSCOPE_STORAGE") or None


# Every verb with --zoo also gets --storage (added to its signature by `guard`): the folder holding vectors,
# indices and probes when --zoo is a catalog URL (postgresql://…); a folder zoo is its own storage.
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="With a catalog URL in --zoo (postgresql://…): the zoo's storage folder (vectors, indices, probes; "
             "on shared disk for several machines). Default: $ZOOSCOPE_STORAGE.",
        default_factory=default_storage,
        show_default=False,
    ),
]
_STORAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("zooscope_storage", default=None)


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
    """The user-facing text of an exception: its message, without SQL, reprs or source paths."""
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


@contextmanager
def user_errors(verb: str = "") -> Iterator[None]:
    """Kept for verbs written before `guard`: a no-op, since every verb's callback is guarded.

    The guard (applied to every registered command in `zooscope.cli`) sees the verb's options, so it can name
    the file a low-level read error came from; catching here would hide them.
    """
    yield


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
    """The options (among ``options``, or verbs) that change a warning of this text, as a short phrase."""
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


# -- option validators (run before any work) -------------------------------------------------------------------
def check_device(device: str | None, option: str = "--device") -> str | None:
    """``cpu``, ``cuda[:i]`` (a visible GPU), ``mps`` (when available); else a one-line error naming ``option``."""
    if device is None or device == "cpu":
        return device
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ZooscopeInputError(f"{option} must be a torch device such as cpu, cuda, cuda:1 or mps; "
                                 f"got {device!r}.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ZooscopeInputError(f"{option} {device!r}: torch sees no CUDA GPU on this machine "
                                     "(torch.cuda.is_available() is False); use --device cpu.")
        if dev.index is not None and dev.index >= count:
            raise ZooscopeInputError(f"{option} {device!r}: only {count} CUDA device(s) (cuda:0…cuda:{count - 1}).")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ZooscopeInputError(f"{option} {device!r}: MPS is not available here; use --device cpu.")
    elif dev.type != "cpu":
        raise ZooscopeInputError(f"{option} {device!r}: zooscope runs on cpu, cuda or mps; use --device cpu.")
    return device


@functools.cache
def image_suffixes() -> tuple[str, ...]:
    """The image formats matplotlib can write here (``.png``, ``.pdf``, ``.svg``, …)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return tuple(sorted("." + s for s in FigureCanvasAgg(Figure()).get_supported_filetypes()))


def _check_output_path(path: Path, option: str, suffixes: Sequence[str], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ZooscopeInputError(f"{option} must be a {what} file ending in {', '.join(suffixes)}; "
                                 f"got {str(path)!r}.")
    if path.is_dir():
        raise ZooscopeInputError(f"{option} {str(path)!r} is a folder; give a file name.")
    return path


def check_image_path(path: Path | str | None, option: str = "--plot") -> Path | None:
    """``None`` or a path whose suffix matplotlib can write; else an error naming ``option``."""
    return None if path is None else _check_output_path(Path(path), option, image_suffixes(), "image")


def check_table_path(path: Path | str | None, option: str = "--out") -> Path | None:
    """``None`` or a .csv/.json/.parquet path; else an error naming ``option``."""
    return None if path is None else _check_output_path(Path(path), option, TABLE_SUFFIXES, "table")


def check_format(fmt: str) -> str:
    """``--format`` is table, csv or json."""
    if fmt not in FORMATS:
        from zooscope._validation import check_choice

        check_choice(fmt, FORMATS, "--format", "zooscope")
    return fmt


def parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given on the command line (``{}`` when empty); a clear error naming ``option``."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooscopeInputError(f"{option} must be a JSON object such as '{{\"num_classes\": 10}}'; got "
                                 f"{text!r} ({e.msg} at character {e.pos}).") from None
    if not isinstance(value, dict):
        raise ZooscopeInputError(f"{option} must be a JSON object such as '{{\"num_classes\": 10}}'; got {text!r}.")
    return value


def parse_shape(text: str | None, option: str = "--input-shape") -> tuple[int, ...] | None:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``: one to three positive ints."""
    if text is None:
        return None
    parts = [p.strip() for p in re.split(r"[,x×]", text.strip())] if text.strip() else []
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not 1 <= len(shape) <= 3 or any(s < 1 or s > 1_000_000 for s in shape):
        raise ZooscopeInputError(f"{option} must be C,H,W (or F for vector inputs), positive integers such as "
                                 f"3,224,224; got {text!r}.")
    return shape


def check_name(name: str, what: str) -> str:
    """A zoo name: 1–200 characters, no control characters, no path separators (names are data, never paths)."""
    bad = [c for c in name if ord(c) < 32 or ord(c) == 127]
    if not name.strip() or len(name) > 200 or bad or "/" in name or "\\" in name or name in (".", ".."):
        raise ZooscopeInputError(
            f"{what} name {name[:80]!r}{'…' if len(name) > 80 else ''} is not allowed: use 1–200 characters "
            "without '/', '\\' or control characters (e.g. ckpt-0412).")
    return name


def _auto_validate(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Checks every verb gets by parameter name: --device, --plot, --out, --format."""
    if "device" in kwargs:
        check_device(kwargs["device"])
    if kwargs.get("plot") is not None:
        check_image_path(kwargs["plot"], "--plot")
    if kwargs.get("out") is not None:
        if getattr(fn, "out_is_image", False):
            check_image_path(kwargs["out"], "--out")
        else:
            check_table_path(kwargs["out"], "--out")
    if isinstance(kwargs.get("fmt"), str):
        check_format(kwargs["fmt"])


def guard(fn: Callable[..., Any], verb: str) -> Callable[..., Any]:
    """Wrap a verb's callback in the error boundary, the common option checks and the warning printer."""
    if getattr(fn, "_zooscope_guarded", False):
        return fn

    sig = inspect.signature(fn, eval_str=True)
    add_storage = "zoo" in sig.parameters and "storage" not in sig.parameters

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        token = _STORAGE.set(kwargs.pop("storage", None)) if add_storage else None
        options = ["--" + k.replace("_", "-") for k in kwargs]
        try:
            with warnings_as_lines(options, verb):
                _auto_validate(fn, kwargs)
                return fn(**kwargs)
        except BaseException as e:
            handle_exception(e, verb, {k: kwargs[k] for k in FILE_OPTIONS if kwargs.get(k) is not None})
        finally:
            if token is not None:
                _STORAGE.reset(token)

    if add_storage:  # --storage next to --zoo on every zoo verb, without touching each verb
        extra = inspect.Parameter("storage", inspect.Parameter.KEYWORD_ONLY, annotation=StorageOpt)
        params = list(sig.parameters.values())
        kinds_ok = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        wrapper.__signature__ = sig.replace(parameters=[*kinds_ok, extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "storage": StorageOpt}
    wrapper._zooscope_guarded = True  # type: ignore[attr-defined]
    return wrapper


# -- the zoo ----------------------------------------------------------------------------------------------------
def open_zoo(zoo: str, *, create: bool = False, storage: str | None = None) -> Zoo:
    """Open the zoo named by --zoo (a folder, or a catalog URL with --storage / $ZOOSCOPE_STORAGE). Only ``init``
    creates one: `Zoo.open` refuses a folder with no catalog, and says what to type."""
    from zooscope.zoo.zoo import Zoo

    explicit = storage or _STORAGE.get()
    if "://" in zoo:
        storage = explicit or default_storage() or None
    else:  # $ZOOSCOPE_STORAGE is for catalog URLs: a zoo folder is its own storage
        storage = explicit if explicit and explicit != default_storage() else None
    return Zoo.open(zoo, storage=storage, create=create)


@contextmanager
def status(text: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr, for library calls that do not report progress themselves."""
    if not err.is_terminal:
        yield
        return
    with err.status(Text(text), spinner="dots"):
        yield


# -- tables -----------------------------------------------------------------------------------------------------
def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return ""
    return str(v)


def print_table(df: pd.DataFrame, *, title: str | None = None, index: bool = False) -> None:
    """Rich table of a DataFrame on stdout; long cells wrap at word boundaries (never cut), no markup."""
    t = Table(title=Text(title) if title else None, show_lines=False)
    if index:
        t.add_column(Text(str(df.index.name or "")), style="bold", no_wrap=True)
    for i, c in enumerate(df.columns):
        cells = [_fmt(v) for v in df[c].tolist()]
        longest = max([len(str(c)), *map(len, cells)])
        word = max([len(w) for s in [str(c), *cells] for w in s.split()] or [1])
        # the first column and short ones never wrap; long text wraps at word boundaries (a word longer than
        # the column, such as a path, is folded onto the next line, never cut off)
        keep = (i == 0 and not index) or longest <= 8
        t.add_column(Text(str(c)), overflow="fold", no_wrap=keep,
                     min_width=min(longest if keep else word, 24))
    for idx, row in df.iterrows():
        cells = [Text(_fmt(v)) for v in row.tolist()]
        t.add_row(*([Text(str(idx))] if index else []), *cells)
    out.print(t, crop=False)  # a table wider than the terminal overflows rather than losing columns


def emit(
    df: pd.DataFrame, fmt: str = "table", path: Path | None = None, *, index: bool = False, title: str | None = None
) -> None:
    """Write ``df`` to ``path`` (.csv/.json/.parquet by suffix) or print it in ``fmt`` on stdout.

    Models a query skipped (``df.attrs["skipped"]``: [(model, reason)], see `zooscope.zoo.integrity`) are said
    on stderr, one line each.
    """
    for name, reason in df.attrs.get("skipped") or []:
        say(f"skipped {name}: {reason}")
    if path is not None:
        write_table(df, path, index=index)
        say(f"wrote {path} ({df.shape[0]}×{df.shape[1]})")
        return
    check_format(fmt)
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=index))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="split" if index else "records", indent=1, default_handler=str) + "\n")
    else:
        print_table(df, title=title, index=index)


def write_table(df: pd.DataFrame, path: Path, *, index: bool = False) -> None:
    """Write a DataFrame by file suffix, atomically (`zooscope._io.atomic_write`)."""
    from zooscope._io import atomic_write

    path = check_table_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = df.to_csv(index=index).encode()
    elif suffix == ".json":
        text = df.to_json(orient="split" if index else "records", default_handler=str)
        data = json.dumps(json.loads(text), indent=1).encode()
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=index)
        data = buf.getvalue()
    atomic_write(path, data)
