"""`zooscope match`: unit matching of two layers from the command line."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zooscope.cli import app

torch = pytest.importorskip("torch")
runner = CliRunner()
SPEC = "zooscope.zoo.models:small_cnn"
KW = json.dumps({"seed": 1, "img_size": 8})
DATA = "builtin:digits"


@pytest.fixture(scope="module")
def permuted_checkpoints(tmp_path_factory):
    """A's weights, and B = A with conv1's output channels permuted (conv2's inputs permuted to match)."""
    from zooscope.nets.models import build_model, save_checkpoint

    d = tmp_path_factory.mktemp("match")
    net = build_model(SPEC, json.loads(KW))
    save_checkpoint(net, d / "a.safetensors")
    perm = np.random.default_rng(0).permutation(16)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    p = torch.from_numpy(perm)
    sd["conv1.0.weight"], sd["conv1.0.bias"] = sd["conv1.0.weight"][p], sd["conv1.0.bias"][p]
    sd["conv2.0.weight"] = sd["conv2.0.weight"][:, p]
    net.load_state_dict(sd)
    save_checkpoint(net, d / "b.safetensors")
    return d, perm


def test_help():
    result = runner.invoke(app, ["match", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_permuted_copy_is_recovered_with_correlation_one(permuted_checkpoints, tmp_path):
    d, perm = permuted_checkpoints
    out, png = tmp_path / "matched.csv", tmp_path / "matched.png"
    result = runner.invoke(app, ["match", SPEC, SPEC, "--kwargs-a", KW, "--weights-a", str(d / "a.safetensors"),
                                 "--weights-b", str(d / "b.safetensors"), "--data", DATA, "--n", "64",
                                 "--layer", "conv1.0", "--out", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["unit_a", "unit_b", "correlation"]
    assert table.unit_b.tolist() == np.argsort(perm).tolist()  # B's channel k is A's channel perm[k]
    np.testing.assert_allclose(table.correlation, 1.0, atol=1e-5)  # float32 forward passes
    assert png.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"
    # the network downstream of the permuted channels is unchanged: conv2 matches itself
    result = runner.invoke(app, ["match", SPEC, SPEC, "--kwargs-a", KW, "--weights-a", str(d / "a.safetensors"),
                                 "--weights-b", str(d / "b.safetensors"), "--data", DATA, "--n", "64",
                                 "--layer", "conv2.0", "--format", "csv"])
    assert result.exit_code == 0, result.output
    csv = result.stdout[result.stdout.index("unit_a"):]
    assert pd.read_csv(io.StringIO(csv)).eval("unit_a == unit_b").all()


def test_semi_method_between_two_layers_of_one_model():
    result = runner.invoke(app, ["match", SPEC, SPEC, "--kwargs-a", KW, "--data", DATA, "--n", "48",
                                 "--layer", "conv2", "--layer-b", "conv3", "--spatial", "mean", "--method", "semi",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("["):])
    assert len(rows) == 32 and {"unit_a", "unit_b", "correlation"} <= set(rows[0])
    assert "distinct B units" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--layer", "conv5"], "Did you mean"),
    (["--layer", "conv1", "--method", "bipartit"], "Did you mean 'bipartite'"),
    (["--layer", "conv1", "--layer-b", "conv2"], "--spatial mean"),
])
def test_bad_input_exits_2_with_the_fix(args, message):
    result = runner.invoke(app, ["match", SPEC, SPEC, "--kwargs-a", KW, "--data", DATA, "--n", "16", *args])
    assert result.exit_code == 2
    assert message in result.output
