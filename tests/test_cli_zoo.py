"""The CLI round trip of the user stories: init → add-model → add-dataset → embed → similar → select (3 models)."""

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "zoo"))
from zoo_helpers import KW, SPEC, checkpoints

from zooscope.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout  # data only: progress, notes and warnings go to stderr


@pytest.mark.slow
def test_cli_round_trip_on_a_three_model_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_ZOO", str(tmp_path / "zoo"))  # the default --zoo
    ckpts = checkpoints(3)
    run("init")
    run("add-dataset", "digits", "--source", "builtin:digits")
    run("add-dataset", "digits-0to4", "--source", "builtin:digits?classes=0,1,2,3,4")
    for i, path in enumerate(ckpts):
        run("add-model", f"cnn{i}", "--arch", SPEC, "--checkpoint", path, "--kwargs", json.dumps(KW),
            "--trained-on", "digits")
    run("embed", "--kinds", "cka,task2vec")
    rows = json.loads(run("similar", "cnn0", "--k", "2", "--format", "json"))
    assert [r["model"] for r in rows] and "cnn0" not in [r["model"] for r in rows]
    assert len(rows) == 2 and rows[0]["score"] >= rows[1]["score"]
    rows = json.loads(run("select", "digits-0to4", "--k", "3", "--format", "json"))
    assert sorted(r["model"] for r in rows) == ["cnn0", "cnn1", "cnn2"]
    assert "why" in rows[0]
    assert "cnn1" in run("ls", "models", "--format", "csv")
    run("check")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    zoo = tmp_path / "zoo"
    run("init", "--zoo", zoo)
    result = runner.invoke(app, ["similar", "nope", "--zoo", str(zoo)])
    assert result.exit_code == 2
    assert "error" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["add-dataset", "x", "--source", "builtin:digitz", "--zoo", str(zoo)])
    assert result.exit_code == 2 and "Traceback" not in result.output
