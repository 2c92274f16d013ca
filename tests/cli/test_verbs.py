"""Repair and maintenance verbs, the error policy, warnings and Ctrl-C, through the command line."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import KW, SPEC, checkpoints, make_zoo

from zooscope.cli import app

runner = CliRunner()
KW_JSON = json.dumps(KW)


def run(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def base_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("verbs") / "zoo"
    make_zoo(root, n=2, copy=False, embed=True)
    return root


@pytest.fixture
def zoo(base_zoo, tmp_path):
    dst = tmp_path / "zoo"
    shutil.copytree(base_zoo, dst)
    return dst


def test_remove_model_and_dataset(zoo):
    run("remove", "model", "cnn1", "--zoo", zoo)
    assert "cnn1" not in run("ls", "models", "--format", "csv", "--zoo", zoo).stdout
    run("check", "--zoo", zoo)  # its vectors and index entries went with it
    run("remove", "dataset", "digits", "--zoo", zoo)
    assert json.loads(run("ls", "datasets", "--format", "json", "--zoo", zoo).stdout) == []
    result = run("remove", "model", "cnn9", "--zoo", zoo, code=2)
    assert "cnn9" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Did you mean 'model'" in run("remove", "modle", "cnn0", "--zoo", zoo, code=2).stderr


def test_add_model_replace_and_input_shape(zoo):
    ckpt = checkpoints(2)[1]
    result = run("add-model", "cnn0", "--arch", SPEC, "--checkpoint", ckpt, "--kwargs", KW_JSON, "--zoo", zoo, code=2)
    assert "--replace" in result.stderr
    result = run("add-model", "cnn0", "--arch", SPEC, "--checkpoint", ckpt, "--kwargs", KW_JSON, "--replace",
                 "--input-shape", "1,8,8", "--zoo", zoo)
    assert "replaced model 'cnn0'" in result.stderr and "1×8×8 (given)" in result.stderr
    models = pd.read_csv(io.StringIO(run("ls", "models", "--format", "csv", "--zoo", zoo).stdout))
    assert models.set_index("name").loc["cnn0", "checkpoint"] == str(ckpt.resolve())
    for bad in ("3,x,8", "0,8,8", "1,2,3,4", ""):
        result = run("add-model", "m2", "--arch", SPEC, "--input-shape", bad, "--zoo", zoo, code=2)
        assert "--input-shape" in result.stderr


def test_trained_on_a_dataset_not_registered_yet_is_accepted_with_a_warning(zoo):
    # story 2 registers the models before their datasets: one warning line, the model is added
    result = run("add-model", "m2", "--arch", SPEC, "--kwargs", KW_JSON, "--trained-on", "digitz", "--zoo", zoo)
    warning = [line for line in result.stderr.splitlines() if "digitz" in line]
    assert len(warning) == 1 and "not registered" in warning[0] and "add-dataset digitz" in warning[0]
    models = pd.read_csv(io.StringIO(run("ls", "models", "--format", "csv", "--zoo", zoo).stdout))
    assert models.set_index("name").loc["m2", "trained_on"] == "digitz"
    result = run("add-model", "m3", "--arch", SPEC, "--kwargs", KW_JSON, "--trained-on", "../x", "--zoo", zoo, code=2)
    assert "'../x'" in result.stderr


def test_configure_sets_and_prints_the_zoo_settings(zoo):
    rows = json.loads(run("configure", "--probe-n", "128", "--jl-dim", "64", "--format", "json", "--zoo", zoo).stdout)
    settings = {r["setting"]: json.loads(r["value"]) for r in rows}
    assert settings["probe"]["n"] == 128 and settings["jl"]["dim"] == 64
    rows = json.loads(run("configure", "--probe-dataset", "digits", "--format", "json", "--zoo", zoo).stdout)
    probe = json.loads(next(r["value"] for r in rows if r["setting"] == "probe"))
    assert probe["datasets"] == {"1x8x8": "digits"}
    assert "--kind-params" in run("configure", "--kind-params", '{"cka": 1}', "--zoo", zoo, code=2).stderr
    assert "--input-shape" in run("configure", "--task2vec-probe", SPEC, "--zoo", zoo, code=2).stderr
    assert "digitz" in run("configure", "--probe-dataset", "digitz", "--zoo", zoo, code=2).stderr


def test_check_fix_then_embed_restores_a_consistent_zoo(zoo):
    vectors = sorted((zoo / "vectors").rglob("*.npy"))
    vectors[0].unlink()
    result = run("check", "--format", "csv", "--zoo", zoo, code=1)
    problems = pd.read_csv(io.StringIO(result.stdout))
    assert "missing vector" in set(problems["problem"])
    result = run("check", "--fix", "--zoo", zoo)
    assert "fixed" in result.stderr and "zoo is consistent" in result.stderr
    run("embed", "--kinds", "cka", "--zoo", zoo)
    run("check", "--zoo", zoo)
    assert len(list((zoo / "vectors").rglob("*.npy"))) == len(vectors)


def test_check_detail_is_kept_whole_in_csv(zoo, tmp_path):
    ckpt = tmp_path / ("a-rather-long-folder-name-" * 3) / "weights-with-a-long-name.safetensors"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(checkpoints(2)[0], ckpt)
    run("add-model", "moved", "--arch", SPEC, "--checkpoint", ckpt, "--kwargs", KW_JSON, "--zoo", zoo)
    ckpt.unlink()
    result = run("check", "--format", "csv", "--zoo", zoo, code=1)
    detail = pd.read_csv(io.StringIO(result.stdout)).set_index("subject").loc["moved", "detail"]
    assert detail == str(ckpt)
    table = run("check", "--zoo", zoo, code=1).stdout  # the terminal table cuts it to fit (issue 18), csv not
    assert "…" in table and str(ckpt) not in table


def test_embed_retry_failed_retries_only_the_failed_pairs(zoo, tmp_path):
    ckpt = tmp_path / "w.safetensors"
    shutil.copy(checkpoints(2)[0], ckpt)
    run("add-model", "fragile", "--arch", SPEC, "--checkpoint", ckpt, "--kwargs", KW_JSON, "--zoo", zoo)
    ckpt.write_bytes(b"not a checkpoint")
    result = run("embed", "--kinds", "cka", "--zoo", zoo, code=1)
    assert "1 of 1 pairs failed" in result.stderr and "--retry-failed" in result.stderr
    assert "fragile" in run("ls", "--failed", "--format", "csv", "--zoo", zoo).stdout
    shutil.copy(checkpoints(2)[0], ckpt)
    result = run("embed", "--kinds", "cka", "--retry-failed", "--format", "csv", "--zoo", zoo)
    report = pd.read_csv(io.StringIO(result.stdout))
    assert report["model"].tolist() == ["fragile"] and report["status"].tolist() == ["embedded"]
    assert json.loads(run("ls", "--failed", "--format", "json", "--zoo", zoo).stdout) == []
    assert "no failed pairs" in run("embed", "--kinds", "cka", "--retry-failed", "--zoo", zoo).stderr


def test_measures_lists_the_streaming_comparers():
    rows = json.loads(run("measures", "--format", "json").stdout)
    kinds = {r["measure"]: r["kind"] for r in rows}
    for name in ("minibatch_cka", "grad_cka", "grad_nbs"):
        assert kinds.get(name) == "streaming"
    assert kinds["procrustes"] == "layer-wise"
    assert {r["measure"] for r in json.loads(run("measures", "*nbs*", "--format", "json").stdout)} >= {"grad_nbs"}


def test_add_dataset_help_documents_the_npz_keys():
    text = run("add-dataset", "--help").stdout
    for key in ("x_train", "y_train", "x_test", "classes", "(n, C, H, W)"):
        assert key in text


def test_query_verbs_refuse_a_folder_without_a_zoo(tmp_path):
    for verb in (["ls"], ["similar", "m"], ["select", "d"], ["check"], ["embed"], ["curate", "dupes"]):
        result = run(*verb, "--zoo", tmp_path / "nothing", code=2)
        assert "zooscope init" in result.stderr
    assert not (tmp_path / "nothing").exists()  # nothing was created


def test_markup_in_messages_prints_as_text(zoo):
    result = run("similar", "zooscope[ray]", "--zoo", zoo, code=2)
    assert "'zooscope[ray]'" in result.stderr


@pytest.mark.skipif(not hasattr(__import__("zooscope.zoo.zoo", fromlist=["Zoo"]).Zoo, "record_result"),
                    reason="Zoo.record_result/results/remove_result are not in this tree yet (selection work)")
def test_record_and_results(zoo):
    run("record", "cnn0", "digits", "--value", "0.914", "--zoo", zoo)
    rows = json.loads(run("results", "--format", "json", "--zoo", zoo).stdout)
    assert any(r.get("model") == "cnn0" and abs(r.get("value") - 0.914) < 1e-12 for r in rows)
    run("record", "cnn0", "digits", "--remove", "--zoo", zoo)
    assert json.loads(run("results", "--format", "json", "--zoo", zoo).stdout) == []
    assert "--value" in run("record", "cnn0", "digits", "--value", "nan", "--zoo", zoo, code=2).stderr


def test_library_warnings_are_one_line_naming_the_option():
    result = run("compare", SPEC, SPEC, "--kwargs-a", KW_JSON, "--data", "builtin:digits", "--n", "20",
                 "--measure", "cca", "--layers-a", "conv2", "--layers-b", "conv3", "--format", "csv")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings and all(".py" not in w and "UserWarning" not in w for w in warnings)
    assert any("canonical correlations" in w and "--n" in w for w in warnings)


def _env():
    root = str(Path(__file__).parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def test_ctrl_c_during_embed_says_how_many_pairs_were_saved(tmp_path):
    zoo = tmp_path / "zoo"
    z = make_zoo(zoo, n=2, copy=False, embed=False)
    z.configure(probe_n=1024)
    for i in range(12):
        z.add_model(f"extra{i}", SPEC, checkpoints(2)[i % 2], kwargs=KW, trained_on="digits")
    proc = subprocess.Popen([sys.executable, "-m", "zooscope.cli", "embed", "--kinds", "cka", "--zoo", str(zoo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # see default_sigint
    deadline = time.monotonic() + 120
    rows = 0
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{zoo / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1) as con:
                rows = con.execute("select count(*) from embeddings").fetchone()[0]
        except sqlite3.OperationalError:
            rows = 0
        if rows >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "embed finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    m = re.search(r"interrupted: (\d+) pairs saved, rerun to continue", err)
    assert m, err
    with sqlite3.connect(zoo / "catalog.sqlite") as con:
        saved = con.execute("select count(*) from embeddings").fetchone()[0]
    assert int(m.group(1)) == saved >= 1
    run("embed", "--kinds", "cka", "--zoo", zoo)  # rerun continues and completes
    with sqlite3.connect(zoo / "catalog.sqlite") as con:
        assert con.execute("select count(*) from embeddings").fetchone()[0] == 14


def test_an_empty_catalog_is_refused_and_nothing_is_touched(zoo):
    before = sorted(p.relative_to(zoo) for p in zoo.rglob("*"))
    (zoo / "catalog.sqlite").write_bytes(b"")
    for verb in (["init"], ["embed", "--kinds", "cka"], ["check", "--fix"], ["ls"]):
        result = run(*verb, "--zoo", zoo, code=2)
        assert "empty (0 bytes)" in result.stderr
    assert sorted(p.relative_to(zoo) for p in zoo.rglob("*")) == before
    assert (zoo / "catalog.sqlite").stat().st_size == 0


def test_compare_plot_names_both_checkpoints_and_the_direction(tmp_path):
    a, b = checkpoints(2)
    png = tmp_path / "p.png"
    run("compare", SPEC, SPEC, "--kwargs-a", KW_JSON, "--weights-a", a, "--weights-b", b, "--data",
        "builtin:digits", "--n", "32", "--measure", "procrustes", "--plot", png, "--format", "csv")
    assert png.read_bytes()[:4] == b"\x89PNG"
    from zooscope.embed.compare import compare
    from zooscope.nets.models import build_model
    from zooscope.plot import heatmap_figure

    table = compare(build_model(SPEC, KW, a), build_model(SPEC, KW, b), __import__("torch").rand(32, 1, 8, 8),
                    measure="procrustes")
    table.attrs.update(model_a=SPEC, model_b=SPEC, weights_a=a.name, weights_b=b.name)
    ax = heatmap_figure(table).axes[0]
    assert a.name in ax.get_ylabel() and b.name in ax.get_xlabel()
    assert "lower = more similar" in ax.get_title()


# Ctrl-C inside compare's procrustes (8,192 features) and inside a C call that never returns:
# tests/cli/test_interrupt_progress.py (they wait for a progress line, not for CPU seconds).
