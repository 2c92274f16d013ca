"""grad_cka / grad_nbs / grad_euclidean comparers and the gradsketch embedding kind."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import zooscope as zs
from zooscope import ZooscopeInputError
from zooscope.embed._kinds import EMBEDDINGS
from zooscope.embed.gradients import features_and_gradients
from zooscope.embed.gradsketch import grad_kernels, gradsketch
from zooscope.measures.sketch import grad_kernel_cka, gradient_kernel, kernel_index_matrix

torch.set_num_threads(1)

LAYERS = ["conv1", "conv2", "fc"]
ROUND = 1e-9


def tiny_cnn(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), act1=nn.ReLU(), conv2=nn.Conv2d(4, 8, 3, stride=2, padding=1),
        act2=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 5)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net


@pytest.fixture
def data(rng):
    return torch.from_numpy(rng.normal(size=(48, 1, 8, 8)).astype(np.float32))


@pytest.mark.parametrize(("measure", "diag"), [("grad_cka", 1.0), ("grad_nbs", 1.0), ("grad_euclidean", 0.0)])
def test_self_comparison_diagonal(data, measure, diag):
    net = tiny_cnn(0)
    table = zs.compare(net, net, data, layers_a=LAYERS, measure=measure, batch_size=16, sketch_dim=16, seed=3)
    assert list(table.index) == LAYERS and list(table.columns) == LAYERS
    np.testing.assert_allclose(np.diag(table.to_numpy()), diag, atol=ROUND)
    assert table.attrs["larger_is_more_similar"] is (measure != "grad_euclidean")


def test_two_models_match_the_kernel_math(data):
    a, b = tiny_cnn(1), tiny_cnn(2)
    table = zs.compare(a, b, data, layers_a=LAYERS, layers_b=LAYERS, measure="grad_cka", batch_size=16,
                       sketch_dim=None)
    fa = features_and_gradients(a, data, LAYERS)
    fb = features_and_gradients(b, data, LAYERS)
    expected = [[grad_kernel_cka(*fa[i], *fb[j]) for j in LAYERS] for i in LAYERS]
    np.testing.assert_allclose(table.to_numpy(), expected, atol=1e-6)  # float32 features
    assert (table.to_numpy() < 1 - 1e-3).all()


def test_sketch_is_shared_by_index_so_batching_does_not_matter(data):
    net = tiny_cnn(3)
    k16 = grad_kernels(net, data.split(16), LAYERS, sketch_dim=12, seed=1)
    k5 = grad_kernels(net, data.split(5), LAYERS, sketch_dim=12, seed=1)
    for name in LAYERS:
        np.testing.assert_allclose(k16[name], k5[name], rtol=1e-5, atol=1e-6 * np.abs(k16[name]).max())


def test_cross_dataset_comparison_runs_and_reduces_to_same_data(data, rng):
    a, b = tiny_cnn(4), tiny_cnn(5)
    other = torch.from_numpy(rng.normal(size=(48, 1, 8, 8)).astype(np.float32))
    kw = dict(layers_a=LAYERS, layers_b=LAYERS, measure="grad_nbs", batch_size=16, sketch_dim=16)
    same = zs.compare(a, b, data, **kw)
    twice = zs.compare(a, b, data, data_b=data.clone(), **kw)
    np.testing.assert_allclose(twice.to_numpy(), same.to_numpy(), atol=ROUND)
    cross = zs.compare(a, b, data, data_b=other, **kw)
    assert cross.shape == (3, 3) and np.isfinite(cross.to_numpy()).all()
    assert not np.allclose(cross.to_numpy(), same.to_numpy(), atol=1e-4)


def test_options_are_checked(data):
    net = tiny_cnn(6)
    with pytest.raises(ZooscopeInputError, match="Did you mean 'sketch_dim'"):
        zs.compare(net, net, data, layers_a=LAYERS, measure="grad_cka", sketch_dims=8)
    with pytest.warns(UserWarning, match="exceeds the 48 examples"):
        zs.compare(net, net, data, layers_a=["fc"], measure="grad_cka", sketch_dim=64)


def test_gradsketch_embedding_inner_product_is_sketched_cka(data):
    a, b = tiny_cnn(7), tiny_cnn(8)
    meta = EMBEDDINGS.get("gradsketch").meta
    assert meta.subject == "model" and meta.normalized and meta.metric == "ip"
    ea = gradsketch(a, data, layers=LAYERS, sketch_dim=16, seed=2, batch_size=20)
    eb = gradsketch(b, data, layers=LAYERS, sketch_dim=16, seed=2, batch_size=20)
    for v in ea.values():
        assert v.shape == (16 * 17 // 2,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    Ka = grad_kernels(a, data.split(20), LAYERS, sketch_dim=16, seed=2)
    Kb = grad_kernels(b, data.split(20), LAYERS, sketch_dim=16, seed=2)
    expected = kernel_index_matrix([Ka[n] for n in LAYERS], [Kb[n] for n in LAYERS], "cka")
    got = np.array([[ea[i] @ eb[j] for j in LAYERS] for i in LAYERS])
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 vectors
    again = gradsketch(a, data, layers=LAYERS, sketch_dim=16, seed=2, batch_size=7)
    np.testing.assert_allclose(again["fc"], ea["fc"], atol=1e-6)


def test_exact_kernels_equal_the_product_kernel(data):
    net = tiny_cnn(9)
    K = grad_kernels(net, data.split(16), ["conv2"], sketch_dim=None)["conv2"]
    F, G = features_and_gradients(net, data, ["conv2"])["conv2"]
    np.testing.assert_allclose(K, gradient_kernel(F, G), rtol=ROUND)
