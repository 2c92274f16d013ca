"""Terminal tables fit the terminal (issue 18 item 2): one line per row, long text cut with an ellipsis, numbers
never cut, and the full text kept by ``--format csv|json``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import make_zoo

from zooscope.cli import _output, app

WHY = ("history: above average (z +1.20) on 3 past task(s); most similar: mnist (sim 0.91), fashion (sim 0.40); "
       "rank logme 2/7, leep 3/7, nce 1/7; recorded on this dataset: 0.97 (shown, not used to rank)")
PATH = "/a/rather/long/folder/name/that/goes/on/and/on/weights-with-a-long-name.safetensors"


@pytest.fixture
def width(monkeypatch):
    """Print stdout tables into a buffer at a given terminal width."""
    buf = io.StringIO()

    def set_width(w: int) -> io.StringIO:
        monkeypatch.setattr(_output, "out", Console(width=w, file=buf, highlight=False))
        return buf
    return set_width


def assert_fits(text: str, width: int, n_rows: int) -> None:
    lines = text.rstrip("\n").splitlines()
    assert lines and max(map(len, lines)) <= width, "\n" + text
    boxed = any(ln.startswith("┏") for ln in lines)
    body = [ln for ln in lines if ln.startswith("│")] if boxed else lines[-n_rows:]
    assert len(body) == n_rows, f"rows wrapped onto several lines:\n{text}"  # one line per row, never wrapped
    if not boxed:  # a table without box lines: title, header, then exactly one line per row
        assert len([ln for ln in lines if ln.strip()]) == n_rows + 2, f"rows wrapped:\n{text}"


@pytest.mark.parametrize("w", [100, 80, 60])
def test_long_why_arch_and_paths_are_cut_numbers_are_not(width, w):
    df = pd.DataFrame({"model": ["cnn-trained-on-mnist-with-a-long-name", "b"],
                       "arch": ["zooscope.nets.models:small_cnn_with_a_long_factory_name", "timm:resnet10t"],
                       "score": [0.123456, -12.5], "logme": [1.0, 2.0], "why": [WHY, "x"],
                       "checkpoint": [PATH, "/a"]})
    buf = width(w)
    _output.print_table(df, title="select")
    text = buf.getvalue()
    assert_fits(text, w, 2)
    assert "…" in text and "0.1235" in text and "-12.5" in text


def test_csv_and_json_keep_the_full_text(capsys):
    df = pd.DataFrame({"model": ["m"], "why": [WHY], "checkpoint": [PATH]})
    _output.emit(df, "csv")
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).loc[0, "why"] == WHY
    _output.emit(df, "json")
    assert json.loads(capsys.readouterr().out)[0]["checkpoint"] == PATH


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("width") / "zoo"
    make_zoo(root, n=3, copy=True, embed=True)
    return root


@pytest.mark.parametrize("verb", [["similar", "cnn0"], ["select", "digits"], ["ls"], ["ls", "datasets"]])
def test_cli_tables_fit_100_columns(zoo, width, verb):
    buf = width(100)
    result = CliRunner().invoke(app, [*verb, "--zoo", str(zoo)])
    assert result.exit_code == 0, result.output
    text = buf.getvalue()
    n_rows = len(pd.read_csv(io.StringIO(CliRunner().invoke(app, [*verb, "--zoo", str(zoo), "--format", "csv"])
                                         .stdout)))
    assert_fits(text, 100, n_rows)


def test_the_demo_prints_its_tables_in_100_columns_on_a_wide_terminal(zoo, monkeypatch):
    """`make demo`'s tables (similar, select, a layers × layers CKA table) fit 100 columns, one line per row."""
    from zooscope import Zoo, demo

    z = Zoo.open(zoo)
    tables = {"similar": z.similar("cnn0", k=3, by="cka"), "select": z.select("digits", k=3)}
    layers = [f"layer{i}.conv_with_a_long_name" for i in range(6)]
    tables["compare"] = pd.DataFrame([[0.123456] * 6] * 6, index=pd.Index(layers, name="A \\ B"), columns=layers)
    for name, df in tables.items():
        buf = io.StringIO()
        monkeypatch.setattr(demo, "console", Console(width=240, file=buf, highlight=False))
        demo.print_table(df, title=name, index=name == "compare")
        assert_fits(buf.getvalue(), demo.TABLE_WIDTH, len(df))
