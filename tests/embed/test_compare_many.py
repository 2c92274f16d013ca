"""compare_many: every pair of N nets from one forward pass per net, equal to the pairwise compare tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from compare_helpers import ForwardCounter

import zooscope as zs
from zooscope import ZooscopeInputError
from zooscope.embed.compare import compare
from zooscope.embed.compare_many import compare_many
from zooscope.nets.models import small_cnn

EXACT = 1e-10  # float64 nets and inputs: both routes compute the same float64 sums


@pytest.fixture
def nets():
    return [small_cnn(width=4, seed=s).double() for s in (1, 2, 3)]


@pytest.fixture
def x():
    return torch.randn(48, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _block(table, a, b):
    sub = table[(table.model_a == a) & (table.model_b == b)]
    return sub.pivot(index="layer_a", columns="layer_b", values="value")


@pytest.mark.parametrize(("measure", "layers", "kwargs"), [
    ("linear_cka", None, {}),
    ("linear_cka", None, {"debiased": True}),
    ("minibatch_cka", None, {}),
    ("procrustes", ["conv3", "fc"], {}),  # a generic full-batch measure on features
    ("cka", ["conv2", "fc"], {}),  # a Gram-input measure
])
def test_equals_pairwise_compare_and_runs_each_net_forward_once(nets, x, measure, layers, kwargs):
    counters = [ForwardCounter(m) for m in nets]
    table = compare_many(nets, x, layers, measure=measure, batch_size=16, **kwargs)
    assert [c.calls for c in counters] == [3, 3, 3]  # 48 inputs / 16 per batch: one pass over the data each
    assert list(table.columns) == ["model_a", "layer_a", "model_b", "layer_b", "value"]
    pairs = sorted(set(zip(table.model_a, table.model_b, strict=True)))
    assert pairs == [("model0", "model1"), ("model0", "model2"), ("model1", "model2")]
    assert table.attrs["measure"] == measure and table.attrs["n_examples"] == 48
    for i, j in pairs:
        a, b = nets[int(i[-1])], nets[int(j[-1])]
        want = compare(a, b, x, layers, layers, measure=measure, batch_size=16, **kwargs)
        got = _block(table, i, j).loc[want.index, want.columns]
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=0, atol=EXACT)


def test_dict_of_models_layers_per_model_and_export(nets, x):
    models = {"a": nets[0], "b": nets[1]}
    table = zs.compare_many(models, x, layers=[["conv1", "fc"], ["conv3"]])
    assert set(zip(table.model_a, table.layer_a, table.model_b, table.layer_b, strict=True)) == {
        ("a", "conv1", "b", "conv3"), ("a", "fc", "b", "conv3")}
    by_name = compare_many(models, x, layers={"b": ["conv3"], "a": "conv1,fc"})
    pd.testing.assert_frame_equal(table, by_name)
    want = compare(nets[0], nets[1], x, ["conv1", "fc"], ["conv3"])
    np.testing.assert_allclose(table.value.to_numpy(), want.to_numpy().ravel(), atol=EXACT)


def test_asymmetric_measure_gives_both_orders(nets, x):
    table = compare_many(nets[:2], x, ["fc"], measure="linear_regression")
    assert set(zip(table.model_a, table.model_b, strict=True)) == {("model0", "model1"), ("model1", "model0")}
    back = compare(nets[1], nets[0], x, ["fc"], ["fc"], measure="linear_regression")
    got = table[(table.model_a == "model1")].value.item()
    assert got == pytest.approx(back.iloc[0, 0], abs=EXACT)


def test_float32_nets_match_pairwise_compare(x):
    nets = [small_cnn(width=4, seed=s) for s in (4, 5)]
    table = compare_many(nets, x.float(), batch_size=20)
    want = compare(*nets, x.float(), batch_size=20)
    np.testing.assert_allclose(_block(table, "model0", "model1").loc[want.index, want.columns].to_numpy(),
                               want.to_numpy(), atol=1e-6)


@pytest.mark.parametrize(("models", "layers", "match"), [
    (lambda n: n[0], None, "several models"),
    (lambda n: [n[0]], None, "at least two"),
    (lambda n: [n[0], "net"], None, "not a torch.nn.Module"),
    (lambda n: n, [["fc"], ["fc"]], "one list per model"),
    (lambda n: {"a": n[0], "b": n[1]}, {"a": ["fc"]}, "no entry for"),
    (lambda n: n, ["layer5"], "Unknown layer 'layer5'"),
])
def test_bad_arguments_raise_one_clear_error(nets, x, models, layers, match):
    with pytest.raises(ZooscopeInputError, match=match):
        compare_many(models(nets), x, layers)


def test_memory_cap_names_minibatch_cka(nets, x):
    with pytest.raises(ZooscopeInputError, match="minibatch_cka"):
        compare_many(nets, x, max_memory_gb=1e-4)


def test_unknown_measure_fails_before_any_forward(nets, x):
    counters = [ForwardCounter(m) for m in nets]
    with pytest.raises(ZooscopeInputError, match="Did you mean linear_cka"):
        compare_many(nets, x, measure="linear_ckaa")
    assert [c.calls for c in counters] == [0, 0, 0]
