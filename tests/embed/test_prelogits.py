"""The pre-logits rule: transferability features are the classifier's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zooscope._validation import ZooscopeInputError
from zooscope.embed.prelogits import (
    classifier_module,
    features,
    prelogits_features,
    replace_classifier,
    spatial_map_features,
)
from zooscope.nets.models import build_model, small_cnn


@pytest.fixture(scope="module")
def timm_net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("timm:resnet10t", {"num_classes": 10, "in_chans": 1})


def _x(n: int = 6, side: int = 32) -> torch.Tensor:
    return torch.randn(n, 1, side, side, generator=torch.Generator().manual_seed(1))


def test_timm_prelogits_equal_forward_head(timm_net: nn.Module) -> None:
    x = _x(6, 64)  # 64 px: the last stage keeps a 2x2 map, so pooling matters
    timm_net.train()  # the function must switch to eval itself (BatchNorm running stats) and restore the mode
    f, logits = prelogits_features(timm_net, x, batch_size=4)
    assert timm_net.training
    timm_net.eval()
    with torch.no_grad():
        ff = timm_net.forward_features(x)
        expected = timm_net.forward_head(ff, pre_logits=True).double().numpy()
        expected_logits = timm_net(x).double().numpy()
    assert f.dtype == np.float64 and f.shape == (6, 512)
    np.testing.assert_allclose(f, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    # the pooled pre-logits are not the spatial map of the last stage
    assert spatial_map_features(timm_net, x).shape[1] == ff[0].numel() != f.shape[1]


def test_timm_hook_path_agrees_with_forward_head(timm_net: nn.Module) -> None:
    """The generic rule (pre-hook on get_classifier()) sees the same vector as timm's pre_logits path."""
    x = _x(5)
    f_timm, _ = prelogits_features(timm_net, x)
    f_hook, _ = prelogits_features(timm_net, x, layer=lambda m, b: m.forward_head(m.forward_features(b),
                                                                                  pre_logits=True))
    assert classifier_module(timm_net)[0] == "fc"
    name = next(n for n, m in timm_net.named_modules() if m is timm_net.global_pool)
    f_pool, _ = prelogits_features(timm_net, x, layer=name)
    np.testing.assert_allclose(f_timm, f_hook, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(f_timm, f_pool, rtol=1e-6, atol=1e-6)


class _PooledCNN(nn.Module):
    """A plain CNN (no timm API, no get_classifier): conv → ReLU → global average pool → linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.body(x)).flatten(1))


def test_plain_cnn_prelogits_equal_hand_wired_head() -> None:
    torch.manual_seed(0)
    net = _PooledCNN()
    x = _x(7, 16)
    f, logits = prelogits_features(net, x, batch_size=3)
    with torch.no_grad():
        pooled = net.pool(net.body(x)).flatten(1)
    np.testing.assert_allclose(f, pooled.double().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits, net.head(pooled).double().detach().numpy(), rtol=1e-5, atol=1e-6)
    assert classifier_module(net)[0] == "head"  # rule: the last nn.Linear in module order
    # spatial map = the last non-head layer's output, before pooling: a different (larger) vector
    assert spatial_map_features(net, x).shape[1] == 12 * 7 * 7


def test_small_cnn_uses_get_classifier() -> None:
    net = small_cnn(width=4, seed=0)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    f, logits = prelogits_features(net, x)
    with torch.no_grad():
        h = net.flatten(net.conv3(net.conv2(net.conv1(x))))
        head = net.fc(h)
    np.testing.assert_allclose(f, h.double().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits, head.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features(net, x, rule="prelogits"), f)


def test_layer_override_by_name_and_no_head() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
    x = _x(3, 8)
    with pytest.raises(ZooscopeInputError, match="layer="):
        prelogits_features(net, x)
    f, logits = prelogits_features(net, x, layer="1")
    assert f.shape == (3, 4 * 6 * 6) and logits is None
    with pytest.raises(ZooscopeInputError, match="not a module"):
        prelogits_features(net, x, layer="nope")
    with pytest.raises(ZooscopeInputError, match="rule"):
        features(net, x, rule="penultimate")


def test_replace_classifier_keeps_prelogits(timm_net: nn.Module) -> None:
    for net, x in ((small_cnn(width=4, seed=0), torch.rand(4, 1, 28, 28)), (_PooledCNN(), _x(4, 16))):
        before, _ = prelogits_features(net, x)
        replace_classifier(net, 2, seed=0)
        after, logits = prelogits_features(net, x)
        np.testing.assert_allclose(before, after)
        assert logits.shape == (4, 2)
    net = build_model("timm:resnet10t", {"num_classes": 10, "in_chans": 1})
    replace_classifier(net, 4, seed=0)
    assert net.get_classifier().out_features == 4
