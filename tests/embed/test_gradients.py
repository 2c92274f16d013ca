"""Label-free activation gradients (Tang et al. 2020) and torch.func per-sample gradients."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from zooscope import ZooscopeInputError
from zooscope.embed.gradients import (
    INPUT,
    features_and_gradients,
    iter_features_and_gradients,
    label_free_weights,
    per_sample_grads,
    xfer_resnet_layers,
)
from zooscope.measures.sketch import gradient_kernel

torch.set_num_threads(1)

TIGHT = 1e-10  # float64 models: agreement to round-off
F32 = 1e-6  # float32 models


def tiny_cnn(seed: int, inplace: bool = False, dtype=torch.float32) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn=nn.BatchNorm2d(4), act1=nn.ReLU(inplace=inplace),
        conv2=nn.Conv2d(4, 8, 3, stride=2, padding=1), act2=nn.ReLU(inplace=inplace),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 5)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        net.bn.running_mean.copy_(torch.randn(4, generator=g) * 0.1)
        net.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return net.to(dtype)


def mlp(seed: int, dtype=torch.float64) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(hidden=nn.Linear(6, 7), act=nn.Tanh(), head=nn.Linear(7, 4)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net.to(dtype)


def test_beta_one_gives_zero_gradients():
    # sum_c p_c d log p_c = d sum_c p_c = 0: the score is flat at beta = 1
    net, x = tiny_cnn(0), torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    layers = ["conv1", "act1", "conv2", "fc", INPUT]
    half = features_and_gradients(net, x, layers, beta=0.5)
    one = features_and_gradients(net, x, layers, beta=1.0)
    for name in layers:
        ref = np.linalg.norm(half[name][1])
        assert ref > 0
        assert np.linalg.norm(one[name][1]) <= 1e-6 * ref, name


def test_gradient_at_logits_is_q_minus_p(rng):
    # d/dz sum_c q_c log softmax(z)_c = q - p (sum q = 1), a closed form for the last layer
    net, x = mlp(0), torch.from_numpy(rng.normal(size=(9, 6)))
    F, G = features_and_gradients(net, x, ["head"], beta=0.5)["head"]
    p = torch.softmax(torch.from_numpy(F), dim=-1)
    q = p**0.5 / (p**0.5).sum(-1, keepdim=True)
    np.testing.assert_allclose(G, (q - p).numpy(), rtol=0, atol=TIGHT)


def test_label_free_weights_match_the_power_formula(rng):
    z = torch.from_numpy(rng.normal(size=(5, 10)) * 4)
    p = torch.softmax(z, -1)
    for beta in (0.0, 0.5, 2.0):
        expected = p**beta / (p**beta).sum(-1, keepdim=True)
        torch.testing.assert_close(label_free_weights(z, beta), expected, rtol=1e-12, atol=1e-15)


def test_product_kernel_equals_weight_gradient_inner_products(rng):
    # for z = W f: dℓ/dW = g_z f^T, so <dℓ/dW(x), dℓ/dW(x')>_F = <f, f'><g_z, g_z'>
    net, x = mlp(1), torch.from_numpy(rng.normal(size=(11, 6)))
    out = features_and_gradients(net, x, ["act", "head"], beta=0.5)
    K = gradient_kernel(out["act"][0], out["head"][1])
    q = label_free_weights(net(x), 0.5)
    # soft-target cross entropy = -sum_c q_c log p_c: the negated score, same inner products
    J = per_sample_grads(net, x, q, params=["head.weight"])["head.weight"].reshape(len(x), -1).numpy()
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-6, atol=1e-6 * np.abs(K).max())


def test_input_pseudo_layer_is_the_input_and_its_gradient(rng):
    net, x = mlp(2), torch.from_numpy(rng.normal(size=(4, 6)))
    F, G = features_and_gradients(net, x, [INPUT])[INPUT]
    np.testing.assert_array_equal(F, x.numpy())
    xr = x.clone().requires_grad_(True)
    logits = net(xr)
    score = (label_free_weights(logits, 0.5) * torch.log_softmax(logits, -1)).sum()
    (expected,) = torch.autograd.grad(score, xr)
    np.testing.assert_allclose(G, expected.numpy(), atol=TIGHT)


def test_inplace_relu_after_a_hooked_layer_does_not_change_results(rng):
    x = torch.from_numpy(rng.normal(size=(5, 1, 8, 8)).astype(np.float32))
    layers = ["bn", "conv2"]
    plain = features_and_gradients(tiny_cnn(3, inplace=False), x, layers)
    inplace = features_and_gradients(tiny_cnn(3, inplace=True), x, layers)
    for name in layers:
        for a, b in zip(plain[name], inplace[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=F32, atol=F32)
    assert (plain["bn"][0] < 0).any()  # the ReLU really would have changed the stored activation


def test_batching_does_not_change_results_and_mode_is_restored(rng):
    net = tiny_cnn(4).train()
    x = torch.from_numpy(rng.normal(size=(10, 1, 8, 8)).astype(np.float32))
    a = features_and_gradients(net, x, ["conv1", "fc"], batch_size=3)
    b = features_and_gradients(net, x, ["conv1", "fc"], batch_size=10)
    for name in a:
        np.testing.assert_allclose(a[name][0], b[name][0], rtol=F32, atol=F32)
        np.testing.assert_allclose(a[name][1], b[name][1], rtol=1e-5, atol=1e-7)
    assert net.training
    assert all(p.grad is None for p in net.parameters())


def test_stream_yields_one_dict_per_batch_with_flattened_shapes(rng):
    net = tiny_cnn(5)
    batches = [(torch.randn(3, 1, 8, 8), torch.zeros(3)), torch.randn(2, 1, 8, 8)]
    out = list(iter_features_and_gradients(net, batches, ["conv2", "fc"]))
    assert [o["conv2"][0].shape for o in out] == [(3, 8 * 4 * 4), (2, 8 * 4 * 4)]
    assert out[0]["fc"][1].shape == (3, 5) and out[0]["fc"][1].dtype == np.float32


def test_bad_layers_and_outputs_raise():
    net = tiny_cnn(6)
    with pytest.raises(ZooscopeInputError, match="Did you mean 'conv1'"):
        features_and_gradients(net, torch.randn(2, 1, 8, 8), ["conv_1"])
    with pytest.raises(ZooscopeInputError, match="duplicates"):
        features_and_gradients(net, torch.randn(2, 1, 8, 8), ["fc", "fc"])
    with pytest.raises(ZooscopeInputError, match="floating point"):
        features_and_gradients(net, torch.zeros(2, 1, 8, 8, dtype=torch.long), ["fc"])
    with pytest.raises(ZooscopeInputError, match="torchvision-style ResNet"):
        xfer_resnet_layers(net)


def test_per_sample_grads_match_a_loop(rng):
    net = tiny_cnn(7)
    x = torch.from_numpy(rng.normal(size=(4, 1, 8, 8)).astype(np.float32))
    y = torch.tensor([0, 3, 1, 4])
    got = per_sample_grads(net, x, y, params=["conv2.weight", "fc.bias"])
    for i in range(len(x)):
        net.zero_grad()
        nn.functional.cross_entropy(net.eval()(x[i : i + 1]), y[i : i + 1]).backward()
        torch.testing.assert_close(got["conv2.weight"][i], net.conv2.weight.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["fc.bias"][i], net.fc.bias.grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ZooscopeInputError, match="Unknown parameter"):
        per_sample_grads(net, x, y, params=["fc.weights"])


@pytest.mark.slow
def test_xfer_resnet_layers_on_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    assert xfer_resnet_layers(net) == [
        "input", "conv1", "maxpool", "layer1.0", "layer1.1", "layer2.0", "layer2.1",
        "layer3.0", "layer3.1", "layer4.0", "layer4.1", "avgpool"]
