import hashlib
import pickle

import pytest
import torch
from torch import nn

from zooscope import ZooscopeInputError
from zooscope._io import file_sha256 as sha256_file
from zooscope.nets.arch import ArchRef, parse_spec
from zooscope.nets.models import (
    build_model,
    load_checkpoint,
    mlp,
    save_checkpoint,
    small_cnn,
)

CNN = "zooscope.zoo.models:small_cnn"


class _CreatesFile:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def not_a_module():
    return 42


@pytest.mark.parametrize(("spec", "expected"), [
    ("timm:resnet18", ArchRef("timm", "timm", "resnet18")),
    ("zooscope.zoo.models:small_cnn", ArchRef("python", "zooscope.zoo.models", "small_cnn")),
    ("pkg.mod:Factory.build", ArchRef("python", "pkg.mod", "Factory.build")),
])
def test_parse_spec_splits_source_module_and_name(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["resnet18", "timm:", "a:b:c", "my-pkg.mod:fn", "pkg.mod:", ":fn"])
def test_parse_spec_rejects_malformed_specs_with_both_forms_shown(spec):
    with pytest.raises(ZooscopeInputError, match=r"timm:<name>.*package\.module:factory"):
        parse_spec(spec)


def test_small_cnn_layer_sizes_match_the_benchmark_workload():
    net = small_cnn(seed=0)
    x = torch.randn(3, 1, 28, 28)
    h1 = net.conv1(x)
    h2 = net.conv2(h1)
    h3 = net.conv3(h2)
    assert (h1[0].numel(), h2[0].numel(), h3[0].numel()) == (12544, 6272, 1568)
    assert net(x).shape == (3, 10)
    assert (h1 >= 0).all()  # post-ReLU block outputs


def test_small_cnn_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = small_cnn(seed=3), small_cnn(seed=3), small_cnn(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_small_cnn_other_image_sizes_and_mlp_forward():
    assert small_cnn(in_chans=3, img_size=8, width=4)(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert small_cnn(img_size=7)(torch.randn(2, 1, 7, 7)).shape == (2, 10)
    net = mlp(in_features=40, hidden=(32, 16), num_classes=5, seed=0)
    assert net(torch.randn(4, 40)).shape == (4, 5)


def test_build_model_python_factory_passes_kwargs():
    net = build_model(CNN, {"width": 4, "num_classes": 3})
    assert isinstance(net, nn.Module)
    assert net.fc.out_features == 3 and net.conv1[0].out_channels == 4


def test_build_model_python_errors_are_specific():
    with pytest.raises(ZooscopeInputError, match=r"Cannot import 'no_such_pkg_xyz\.mod'"):
        build_model("no_such_pkg_xyz.mod:fn")
    with pytest.raises(ZooscopeInputError, match="Did you mean small_cnn"):
        build_model("zooscope.zoo.models:smal_cnn")
    with pytest.raises(ZooscopeInputError, match="does not accept the kwargs"):
        build_model(CNN, {"widht": 4})
    with pytest.raises(ZooscopeInputError, match=r"not a torch\.nn\.Module"):
        build_model(f"{__name__}:not_a_module")
    with pytest.raises(ZooscopeInputError, match="only for timm"):
        build_model(CNN, pretrained=True)


def test_unknown_timm_name_suggests_close_matches():
    with pytest.raises(ZooscopeInputError, match=r"Unknown timm model 'resnet10x'.*Did you mean .*resnet10t"):
        build_model("timm:resnet10x")


@pytest.mark.slow
def test_build_timm_model_with_kwargs():
    net = build_model("timm:resnet10t", {"num_classes": 3, "in_chans": 1})
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_safetensors_round_trip_restores_weights_and_outputs(tmp_path):
    src = small_cnn(width=4, seed=1)
    path = save_checkpoint(src, tmp_path / "w.safetensors")
    dst = build_model(CNN, {"width": 4, "seed": 2}, path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(src(x), dst(x))


def test_torch_save_state_dict_loads_with_weights_only_and_common_wrappers(tmp_path):
    src = small_cnn(width=4, seed=1)
    plain, wrapped = tmp_path / "w.pt", tmp_path / "wrapped.pth"
    torch.save(src.state_dict(), plain)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, wrapped)
    for path in (plain, wrapped):
        dst = load_checkpoint(small_cnn(width=4, seed=2), path)
        assert torch.equal(dst.fc.weight, src.fc.weight)


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, how):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    payload = {"fc.weight": _CreatesFile(marker)}
    if how == "torch_save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()  # saving did not run it
    with pytest.raises(ZooscopeInputError, match=r"Refused to load .*safetensors"):
        build_model(CNN, {"width": 4}, path)
    assert not marker.exists()


def test_state_dict_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    path = save_checkpoint(mlp(in_features=12, hidden=(8,)), tmp_path / "mlp.safetensors")
    with pytest.raises(ZooscopeInputError) as e:
        load_checkpoint(small_cnn(width=4), path)
    msg = str(e.value)
    assert "missing keys: conv1.0.bias, conv1.0.weight" in msg
    assert "unexpected keys: fc1.0.bias, fc1.0.weight, head.bias, head.weight" in msg
    wide = save_checkpoint(small_cnn(width=8), tmp_path / "wide.safetensors")
    with pytest.raises(ZooscopeInputError, match=r"shape mismatches: conv1\.0\.bias \(8,\) vs model \(4,\)"):
        load_checkpoint(small_cnn(width=4), wide)


def test_checkpoint_errors_for_missing_and_non_state_dict_files(tmp_path):
    with pytest.raises(ZooscopeInputError, match="does not exist"):
        load_checkpoint(small_cnn(), tmp_path / "nope.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ZooscopeInputError, match="does not hold a state dict"):
        load_checkpoint(small_cnn(), tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ZooscopeInputError, match="Cannot read"):
        load_checkpoint(small_cnn(), tmp_path / "junk.safetensors")


def test_sha256_file_matches_hashlib_across_chunks(tmp_path, rng):
    path = tmp_path / "blob.bin"
    data = rng.integers(0, 256, size=70_000, dtype="uint8").tobytes()
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=4096) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert sha256_file(path) != hashlib.sha256(data).hexdigest()
