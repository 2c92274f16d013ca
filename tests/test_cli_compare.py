import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zooscope.cli import app
from zooscope.nets.models import save_checkpoint, small_cnn

CNN = "zooscope.zoo.models:small_cnn"
runner = CliRunner()


@pytest.fixture
def npy(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)  # (N, H, W) images
    path = tmp_path / "inputs.npy"
    np.save(path, x)
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_options():
    r = _run("compare", "--help")
    assert r.exit_code == 0
    assert "Usage" in r.output
    for opt in ("--data", "--weights-a", "--kwargs-b", "--layers-a", "--measure", "--plot", "--format"):
        assert opt in r.output


def test_compare_writes_table_and_heatmap(tmp_path, npy):
    out, png = tmp_path / "x.csv", tmp_path / "x.png"
    r = _run("compare", CNN, CNN, "--data", npy, "--kwargs-a", '{"width": 4, "seed": 1}',
             "--kwargs-b", '{"width": 4, "seed": 2}', "--n", 32, "--batch-size", 16, "--out", out, "--plot", png)
    assert r.exit_code == 0, r.output
    assert f"wrote {out} (4×4) and {png}" in r.output.replace("\n", "")
    df = pd.read_csv(out, index_col=0)
    assert list(df.index) == ["conv1", "conv2", "conv3", "fc"] and list(df.columns) == list(df.index)
    assert ((df.to_numpy() > 0) & (df.to_numpy() <= 1 + 1e-9)).all()
    assert df.to_numpy()[0, 0] < 1 - 1e-6  # two different seeds
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_weights_give_unit_diagonal_and_csv_on_stdout(tmp_path, npy):
    w = save_checkpoint(small_cnn(width=4, seed=5), tmp_path / "w.safetensors")
    r = _run("compare", CNN, CNN, "--data", npy, "--kwargs-a", '{"width": 4}', "--weights-a", w,
             "--weights-b", w, "--layers-a", "conv2,fc", "--layers-b", "conv2,fc", "--n", 24,
             "--batch-size", 8, "--format", "csv")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln]
    assert lines[0] == "layer_a,conv2,fc"
    vals = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:]])
    np.testing.assert_allclose(np.diag(vals), 1.0, atol=1e-6)


def test_minibatch_measure_and_json_output(npy):
    r = _run("compare", CNN, CNN, "--data", npy, "--kwargs-a", '{"width": 4, "seed": 1}',
             "--kwargs-b", '{"width": 4, "seed": 2}', "--measure", "minibatch_cka", "--n", 32,
             "--batch-size", 16, "--format", "json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["index"] == ["conv1", "conv2", "conv3", "fc"]
    assert np.array(payload["data"]).shape == (4, 4)


def test_mistyped_measure_exits_2_with_suggestion(npy):
    r = _run("compare", CNN, CNN, "--data", npy, "--measure", "linear_ckaa")
    assert r.exit_code == 2
    assert "Did you mean linear_cka" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("args", "message"), [
    (["--layers-a", "layer5"], "Unknown layer 'layer5'"),
    (["--kwargs-a", "{width: 4}"], "--kwargs-a must be a JSON object"),
    (["--weights-a", "missing.safetensors"], "does not exist"),
    (["--kwargs-a", '{"in_chans": 3}'], "failed on a batch of shape"),
])
def test_user_errors_exit_2_in_one_line(npy, args, message):
    r = _run("compare", CNN, CNN, "--data", npy, "--n", 8, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_bad_model_spec_exits_2(npy):
    r = _run("compare", "resnet18", CNN, "--data", npy)
    assert r.exit_code == 2
    assert "timm:<name>" in r.output


def test_three_models_give_the_long_table_of_every_pair(tmp_path, npy):
    ws = [save_checkpoint(small_cnn(width=4, seed=s), tmp_path / f"net{s}.safetensors") for s in (1, 2, 3)]
    out = tmp_path / "many.csv"
    weights = [arg for w in ws for arg in ("--weights", w)]
    r = _run("compare", CNN, CNN, CNN, "--data", npy, "--kwargs", '{"width": 4}', *weights,
             "--layers", "conv3,fc", "--n", 32, "--batch-size", 16, "--out", out)
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["model_a", "layer_a", "model_b", "layer_b", "value"]
    assert len(df) == 3 * 4  # 3 pairs × 2 × 2 layers
    names = sorted(set(df.model_a) | set(df.model_b))
    assert names == [f"{CNN}[net{s}]" for s in (1, 2, 3)]
    two = _run("compare", CNN, CNN, "--data", npy, "--kwargs", '{"width": 4}', "--weights", ws[0], "--weights", ws[2],
               "--layers", "conv3,fc", "--n", 32, "--batch-size", 16, "--format", "json")
    assert two.exit_code == 0, two.output
    pair = np.array(json.loads(two.stdout)["data"])
    sub = df[(df.model_a == names[0]) & (df.model_b == names[2])]
    np.testing.assert_allclose(sub.value.to_numpy(), pair.ravel(), atol=1e-12)


@pytest.mark.parametrize(("args", "message"), [
    (["--weights-a", "w.safetensors"], "are for two models"),
    (["--weights", "w.safetensors"], "--weights was given 1 times for 3 models"),
    (["--kwargs", "{}", "--kwargs", "{}"], "--kwargs was given 2 times"),
    (["--plot", "x.png"], "give two models"),
])
def test_many_model_option_errors_exit_2(npy, args, message):
    r = _run("compare", CNN, CNN, CNN, "--data", npy, "--n", 8, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_one_model_is_refused(npy):
    r = _run("compare", CNN, "--data", npy)
    assert r.exit_code == 2
    assert "at least two model specs" in r.output
