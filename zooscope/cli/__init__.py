"""The `zooscope` command: one module per verb, joined here.

Every verb's callback is wrapped by `zooscope.cli._common.guard` (one error policy for all: one line on stderr,
exit 2 for bad input, 130 on Ctrl-C, 3 for a bug), and usage errors (a bad option value, a missing argument) are
printed by `_OneLineErrors` as one line too, naming the option.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from zooscope.cli._errors import EXIT_INTERRUPTED, INTERRUPT_REPORTED, ClickException, UsageError, say
from zooscope.cli._options import guard


class _OneLineErrors(TyperGroup):
    """The root group: usage errors on one line (``error: Invalid value for '--k': …``), exit 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        INTERRUPT_REPORTED[0] = False
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `zooscope` or `zooscope curate` alone: the help
                e.show()
                sys.exit(e.exit_code)
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            say(f"error: {e.format_message()}{where}")
            sys.exit(e.exit_code)
        except ClickException as e:
            say(f"error: {e.format_message()}")
            sys.exit(e.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            say("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        if rv == EXIT_INTERRUPTED and not INTERRUPT_REPORTED[0]:  # Ctrl-C while parsing the options
            say("interrupted")
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    help="Compare networks; embed, index and rank a model zoo.",
    epilog="Exit codes: 0 done; 1 a problem found (check) or a pair failed (embed); 2 bad input (one line "
    "on stderr says which); 3 a bug in zooscope (ZOOSCOPE_DEBUG=1 shows the traceback); 130 interrupted.",
    pretty_exceptions_enable=False,
)

# (module, group name or None for a top-level verb)
VERBS: list[tuple[str, str | None]] = [
    ("measures", None),
    ("compare", None),
    ("match", None),
    ("init", None),
    ("add_model", None),
    ("add_dataset", None),
    ("remove", None),
    ("configure", None),
    ("embed", None),
    ("similar", None),
    ("select", None),
    ("ls", None),
    ("check", None),
    ("export", None),  # export and import
    ("results", None),
    ("report", None),
    ("curate", "curate"),
    ("bench", "bench"),
]


def _guard_all(sub: typer.Typer, prefix: str = "") -> None:
    """Wrap every command callback of ``sub`` (and its sub-groups) in the CLI error boundary."""
    for info in sub.registered_commands:
        if info.callback is not None:
            name = info.name or info.callback.__name__.removesuffix("_cmd").replace("_", "-")
            info.callback = guard(info.callback, f"{prefix}{name}")
    for group in sub.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance, f"{prefix}{group.name} " if group.name else prefix)


for _mod, _group in VERBS:
    try:
        _m = importlib.import_module(f"zooscope.cli.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a verb is being written
        if _e.name != f"zooscope.cli.{_mod}":
            raise
        continue
    _guard_all(_m.app, f"{_group} " if _group else "")
    if _group:
        app.add_typer(_m.app, name=_group)
    else:
        app.add_typer(_m.app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C outside a verb (e.g. while importing torch)
        say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
