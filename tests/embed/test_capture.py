import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from zooscope import ZooscopeInputError
from zooscope.embed.capture import (
    capture,
    default_layers,
    iter_activations,
    iter_batches,
    resolve_layers,
)
from zooscope.nets.models import mlp, small_cnn

ATOL = 1e-6  # float32 forward passes of the same inputs in different batch groupings


@pytest.fixture
def x():
    return torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


class _Boom(nn.Module):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc


class _ModeSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.lin(x)


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.lin(self.act(x)))


class _ListDataset(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0


def test_default_layers_follow_feature_info_plus_head():
    assert default_layers(small_cnn()) == ["conv1", "conv2", "conv3", "fc"]
    assert default_layers(mlp(hidden=(8, 8, 8))) == ["fc1", "fc2", "fc3", "head"]


def test_default_layers_without_feature_info_are_leaf_conv_linear_norm():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2),
                        nn.LayerNorm(2))
    assert default_layers(net) == ["0", "1", "4", "5"]
    with pytest.raises(ZooscopeInputError, match="pass layers explicitly"):
        default_layers(nn.Sequential(nn.ReLU(), nn.Flatten()))


@pytest.mark.slow
def test_default_layers_of_a_timm_resnet():
    import timm

    net = timm.create_model("resnet10t", in_chans=1, num_classes=10)
    assert default_layers(net) == ["act1", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ZooscopeInputError) as e:
        resolve_layers(small_cnn(), ["conv1", "conv5"])
    msg = str(e.value)
    assert "Unknown layer 'conv5'" in msg
    assert "Valid: conv1, conv1.0, conv1.1, conv2" in msg


def test_resolve_layers_accepts_comma_string_and_drops_duplicates():
    assert resolve_layers(small_cnn(), "fc, conv2,fc") == ["fc", "conv2"]
    assert resolve_layers(small_cnn(), None) == ["conv1", "conv2", "conv3", "fc"]


def test_capture_matches_submodule_outputs(x):
    net = small_cnn(seed=0)
    acts = capture(net, x, batch_size=7)
    h1 = net.conv1(x)
    h2 = net.conv2(h1)
    h3 = net.conv3(h2)
    expected = {"conv1": h1, "conv2": h2, "conv3": h3, "fc": net(x)}
    assert list(acts) == list(expected)
    for name, want in expected.items():
        assert acts[name].shape == (20, want[0].numel())
        torch.testing.assert_close(acts[name], want.reshape(20, -1), atol=ATOL, rtol=0)
        assert not acts[name].requires_grad


def test_flatten_options(x):
    net = small_cnn(seed=0)
    h1 = net.conv1(x).detach()
    mean = capture(net, x, ["conv1", "fc"], flatten="spatial_mean")
    raw = capture(net, x, ["conv1"], flatten="none")
    torch.testing.assert_close(mean["conv1"], h1.mean(dim=(2, 3)), atol=ATOL, rtol=0)
    assert mean["fc"].shape == (20, 10)  # 2-D outputs unchanged
    assert raw["conv1"].shape == (20, 16, 28, 28)
    with pytest.raises(ZooscopeInputError, match="'flatten' of capture must be one of"):
        capture(net, x, flatten="mean")


def test_spatial_mean_averages_tokens_of_3d_outputs():
    net = nn.Sequential(nn.Linear(6, 5))  # applied to (B, T, D) token sequences
    tokens = torch.randn(4, 3, 6)
    got = capture(net, tokens, ["0"], flatten="spatial_mean")["0"]
    torch.testing.assert_close(got, net(tokens).detach().mean(dim=1))


def test_every_data_container_gives_the_same_activations(x):
    net = small_cnn(seed=0)
    want = capture(net, x, ["conv3"], batch_size=64)["conv3"]
    y = torch.zeros(20, dtype=torch.long)
    for data in (x.numpy(), DataLoader(TensorDataset(x, y), batch_size=6), DataLoader(x, batch_size=5),
                 _ListDataset(x)):
        got = capture(net, data, ["conv3"], batch_size=3)["conv3"]
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_iter_batches_slices_in_order_and_rejects_bad_input(x):
    sizes = [len(b) for b in iter_batches(x, 8)]
    assert sizes == [8, 8, 4]
    assert torch.equal(torch.cat(list(iter_batches(x, 8))), x)
    with pytest.raises(ZooscopeInputError, match="batch_size"):
        list(iter_batches(x, 0))
    with pytest.raises(ZooscopeInputError, match="must be a DataLoader"):
        list(iter_batches(42, 8))


def test_train_mode_restored_and_forward_runs_in_eval_without_grad():
    spy = _ModeSpy()
    net = nn.Sequential(spy, nn.BatchNorm1d(3))
    net.train()
    net[1].eval()  # a frozen BN must stay frozen: restore per module, not model.train(True)
    capture(net, torch.randn(5, 4), ["0.lin", "1"], batch_size=2)
    assert spy.seen == [(False, False)] * 3
    assert net.training and spy.training and not net[1].training


@pytest.mark.parametrize(("exc", "expected"), [
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ZooscopeInputError),  # reported as bad input
    (KeyError("boom"), KeyError),
])
def test_hooks_removed_and_modes_restored_even_when_forward_raises(exc, expected):
    net = nn.Sequential(nn.Linear(4, 4), _Boom(exc))
    net.train()
    with pytest.raises(expected) as e:
        capture(net, torch.randn(3, 4), ["0"])
    if expected is ZooscopeInputError:
        assert "failed on a batch of shape (3, 4): mat1 and mat2" in str(e.value)
        assert "Check that the data fits the model" in str(e.value)
    assert _hooks(net) == 0
    assert all(m.training for m in net.modules())


def test_hooks_removed_after_success_and_after_early_close(x):
    net = small_cnn(seed=0)
    capture(net, x, batch_size=8)
    assert _hooks(net) == 0
    gen = iter_activations(net, iter_batches(x, 4), ["conv1", "fc"])
    next(gen)
    assert _hooks(net) == 2
    gen.close()
    assert _hooks(net) == 0


def test_activations_are_copies_safe_from_later_inplace_ops():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True))
    acts = capture(net, torch.randn(50, 4), ["0"])
    assert (acts["0"] < 0).any()  # the in-place ReLU ran after the hook and must not have changed the copy


def test_layer_that_runs_twice_or_never_is_an_error():
    with pytest.raises(ZooscopeInputError, match="'act' ran 2 times"):
        capture(_Twice(), torch.randn(3, 4), ["act"])
    net = _Twice()
    net.unused = nn.Linear(2, 2)  # registered, but forward() never calls it
    with pytest.raises(ZooscopeInputError, match="'unused' never ran"):
        capture(net, torch.randn(3, 4), ["lin", "unused"])
    assert _hooks(net) == 0
