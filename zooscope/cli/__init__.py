"""The `zooscope` command: one module per verb, joined here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Compare networks; embed, index and rank a model zoo.",
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
    ("embed", None),
    ("similar", None),
    ("select", None),
    ("ls", None),
    ("check", None),
    ("curate", "curate"),
    ("bench", "bench"),
]

for _mod, _group in VERBS:
    try:
        _m = importlib.import_module(f"zooscope.cli.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a verb is being written
        if _e.name != f"zooscope.cli.{_mod}":
            raise
        continue
    if _group:
        app.add_typer(_m.app, name=_group)
    else:
        app.add_typer(_m.app)


def main() -> None:
    """Console-script entry point."""
    app()
