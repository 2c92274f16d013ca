"""Ctrl-C answers even inside a long C call; progress reaches a log; inputs are checked before anything loads.

Ctrl-C tests send real signals to real subprocesses. They wait for a state (a line on stderr), never for a time,
and their only limits are generous timeouts for a loaded machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import KW, SPEC, make_zoo

from zooscope.cli import app

runner = CliRunner()
KW_JSON = json.dumps(KW)
ROOT = Path(__file__).parents[2]
LOG_LINE = re.compile(r"^(?P<what>[^:]+): (?P<done>[\d,]+)(/(?P<total>[\d,]+) \((?P<pct>\d+)%\))?(, [\d,]+ \w+)*, "
                      r"\d+:\d\d:\d\d elapsed$")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


def default_sigint() -> None:
    """In the child: Ctrl-C's default disposition. A test run started in the background (``cmd &``, nohup, some CI)
    ignores SIGINT, and an ignored signal stays ignored in its children: Python then installs no handler and the
    child never sees the Ctrl-C this test sends (what failed `make test` here)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watched:
    """A subprocess whose stderr lines are collected as they come (a reader thread), to wait for a state."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                     cwd=cwd, preexec_fn=default_sigint)
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self.lines.append("<eof>")
            self._seen.notify_all()

    def wait_for(self, text: str, timeout: float = 900.0) -> None:
        """Until a stderr line contains ``text`` (fails if the process ends first)."""
        with self._seen:
            ok = self._seen.wait_for(lambda: any(text in ln for ln in self.lines) or "<eof>" in self.lines,
                                     timeout=timeout)
        assert ok and any(text in ln for ln in self.lines), "\n".join(self.lines)

    def interrupt(self, timeout: float = 180.0) -> tuple[int, list[str]]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=60)
        return self.proc.returncode, [ln for ln in self.lines if ln != "<eof>"]


def test_ctrl_c_inside_procrustes_on_8192_features_exits_130(tmp_path):
    kw32 = json.dumps({**KW, "img_size": 32})  # 32x32 inputs: conv1 has 8,192 features, each SVD takes a while
    w = Watched([sys.executable, "-m", "zooscope.cli", "compare", SPEC, SPEC, "--kwargs-a", kw32,
                 "--data", "builtin:digits?size=32", "--n", "1797", "--batch-size", "8",
                 "--measure", "procrustes", "--measure-kwargs", '{"form": "features"}', "--format", "csv"], tmp_path)
    w.wait_for("procrustes per layer pair: 0/16")  # the pairs' SVDs of 1,438 × 8,192 (the feature form) have started
    code, lines = w.interrupt()
    assert code == 130, lines
    assert lines[-1] == "interrupted" and not any("Traceback" in ln for ln in lines)


STUCK = textwrap.dedent("""
    import ctypes, signal, sys
    import typer
    from zooscope.cli._interrupt import on_abandon
    from zooscope.cli._options import guard

    app = typer.Typer()

    def stuck(mode: str) -> None:
        on_abandon(lambda: "interrupted: 7 pairs saved, rerun to continue")
        if mode == "c":  # one C call that never returns (as an SVD that does not look at signals for minutes):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # no EINTR here, Python never runs again
        sys.stderr.write("working\\n")
        sys.stderr.flush()
        if mode == "c":
            ctypes.CDLL(None).sleep(10**6)
        while True:  # Python code: the interrupt unwinds it
            pass

    app.command()(guard(stuck, "stuck"))
    app()
""")


@pytest.mark.parametrize("mode", ["c", "python"])
def test_ctrl_c_answers_inside_a_c_call_that_never_returns(tmp_path, mode):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK)
    w = Watched([sys.executable, str(script), mode], tmp_path)
    w.wait_for("working")
    code, lines = w.interrupt()
    assert code == 130, lines
    # abandoned inside C: the verb's own line (registered with on_abandon); unwound in Python: the usual line
    assert lines[-1] == ("interrupted: 7 pairs saved, rerun to continue" if mode == "c" else "interrupted"), lines
    assert not any("Traceback" in ln for ln in lines)


@pytest.fixture(scope="module")
def fresh_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress") / "zoo"
    make_zoo(root, n=2, copy=False, embed=False)
    return root


def test_embed_progress_reaches_a_log_file(fresh_zoo, tmp_path):
    log = tmp_path / "embed.log"
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "zooscope.cli", "embed", "--kinds", "cka", "--zoo",
                               str(fresh_zoo)], stdout=subprocess.PIPE, stderr=f, text=True, env=_env(),
                              timeout=1800)
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = [m for m in map(LOG_LINE.match, text.splitlines()) if m and m["what"] == "embedding"]
    assert [(m["done"], m["total"]) for m in lines] == [("0", "2"), ("1", "2"), ("2", "2")], text
    assert all(", 0 failed, 0 skipped, " in m.group(0) for m in lines)
    assert "\x1b[" not in text  # no colour codes or bar redraws in a log


def test_queries_write_progress_lines_when_stderr_is_not_a_terminal(fresh_zoo, tmp_path):
    runner.invoke(app, ["embed", "--kinds", "cka", "--zoo", str(fresh_zoo)])
    result = runner.invoke(app, ["select", "digits", "--k", "2", "--zoo", str(fresh_zoo), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert any(LOG_LINE.match(ln) and ln.startswith("features and scores of 2 candidates: 2/2 (100%)")
               for ln in result.stderr.splitlines()), result.stderr
    result = runner.invoke(app, ["curate", "dupes", "--zoo", str(fresh_zoo), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert any(ln.startswith("reading 2 cka vectors: 2/2") for ln in result.stderr.splitlines()), result.stderr
    truth = tmp_path / "truth.csv"
    truth.write_text("model,dataset,metric,value\ncnn0,digits,accuracy,0.9\ncnn1,digits,accuracy,0.8\n")
    result = runner.invoke(app, ["bench", "selection", "--zoo", str(fresh_zoo), "--truth", str(truth),
                                 "--methods", "logme", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert any(LOG_LINE.match(ln) and ln.startswith("ranking 1 targets × 2 methods: 2/2 (100%)")
               for ln in result.stderr.splitlines()), result.stderr
    result = runner.invoke(app, ["compare", SPEC, SPEC, "--kwargs-a", KW_JSON, "--data", "builtin:digits",
                                 "--n", "64", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert any(LOG_LINE.match(ln) and "4 × 4 layers on 64 inputs" in ln for ln in result.stderr.splitlines())


@pytest.fixture
def no_model_is_built(monkeypatch):
    """Counts models built or inputs loaded: a check that comes first must leave both at zero."""
    import zooscope.embed.capture as capture
    import zooscope.nets.models as models

    built: list[str] = []
    real_build, real_load = models.build_model, capture.load_inputs
    monkeypatch.setattr(models, "build_model", lambda *a, **k: built.append("model") or real_build(*a, **k))
    monkeypatch.setattr(capture, "load_inputs", lambda *a, **k: built.append("data") or real_load(*a, **k))
    return built


def test_a_misspelt_measure_fails_before_any_model_or_data_loads(no_model_is_built):
    result = runner.invoke(app, ["compare", SPEC, SPEC, "--kwargs-a", KW_JSON, "--data", "builtin:digits",
                                 "--measure", "linear_kca"])
    assert result.exit_code == 2, result.output
    assert "Did you mean linear_cka" in result.stderr and "linear_probe" not in result.stderr
    assert no_model_is_built == []


def test_a_misspelt_layer_or_timm_name_fails_before_any_model_or_data_loads(no_model_is_built):
    result = runner.invoke(app, ["compare", SPEC, SPEC, "--kwargs-a", KW_JSON, "--data", "builtin:digits",
                                 "--layers-a", "conv9"])
    assert result.exit_code == 2, result.output
    assert "Unknown layer 'conv9'" in result.stderr and "conv1" in result.stderr
    result = runner.invoke(app, ["compare", "timm:resnet18", "timm:resnet18", "--data", "builtin:digits",
                                 "--layers", "layer5"])
    assert result.exit_code == 2 and "Unknown layer 'layer5'" in result.stderr, result.output
    result = runner.invoke(app, ["compare", "timm:resnet81", "timm:resnet18", "--data", "builtin:digits"])
    assert result.exit_code == 2 and "Unknown timm model 'resnet81'" in result.stderr, result.output
    assert no_model_is_built == []


def test_a_one_class_dataset_is_refused_at_add_dataset_naming_it(tmp_path):
    zoo = tmp_path / "zoo"
    assert runner.invoke(app, ["init", "--zoo", str(zoo)]).exit_code == 0
    src = tmp_path / "one.npz"
    np.savez(src, x=np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), y=np.zeros(20, int))
    result = runner.invoke(app, ["add-dataset", "only-cats", "--source", str(src), "--zoo", str(zoo)])
    assert result.exit_code == 2, result.output
    assert "only-cats" in result.stderr and "1 class" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "only-cats" not in runner.invoke(app, ["ls", "datasets", "--zoo", str(zoo), "--format", "csv"]).stdout
