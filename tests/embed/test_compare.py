import numpy as np
import pandas as pd
import pytest
import torch
from compare_helpers import ForwardCounter

from zooscope import ZooscopeInputError, measures
from zooscope._registry import Entry
from zooscope.embed import compare as compare_mod
from zooscope.embed._comparers import ComparerMeta
from zooscope.embed.capture import capture, iter_activations, iter_batches
from zooscope.embed.compare import COMPARERS, compare
from zooscope.measures.minibatch import MinibatchCKA

LAYERS = ["conv1", "conv2", "conv3", "fc"]
TOL = 1e-6  # linear_cka_matrix documents agreement with linear_cka to < 1e-6 (float32 Gram products)


def test_table_shape_names_and_attrs(nets, x):
    a, b = nets
    df = compare(a, b, x, layers_a=["conv1", "fc"], layers_b="conv2,conv3,fc", batch_size=16)
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["conv1", "fc"] and list(df.columns) == ["conv2", "conv3", "fc"]
    assert df.attrs == {"measure": "linear_cka", "n_examples": 48, "larger_is_more_similar": True}
    assert ((df.to_numpy() >= 0) & (df.to_numpy() <= 1 + TOL)).all()


def test_full_batch_equals_linear_cka_on_captured_activations(nets, x):
    a, b = nets
    df = compare(a, b, x, batch_size=10)
    acts_a, acts_b = capture(a, x), capture(b, x)
    for la in LAYERS:
        for lb in LAYERS:
            want = measures.linear_cka(acts_a[la].numpy(), acts_b[lb].numpy())
            assert df.loc[la, lb] == pytest.approx(want, abs=TOL), (la, lb)


def test_full_batch_debiased_and_gram_measures(nets, x):
    a, b = nets
    acts_a, acts_b = capture(a, x, ["conv2", "fc"]), capture(b, x, ["conv3"])
    deb = compare(a, b, x, ["conv2", "fc"], ["conv3"], debiased=True)
    gram = compare(a, b, x, ["conv2", "fc"], ["conv3"], measure="cka")  # Gram form, gram_linear inputs
    for la in ("conv2", "fc"):
        X, Y = acts_a[la].numpy(), acts_b["conv3"].numpy()
        assert deb.loc[la, "conv3"] == pytest.approx(measures.linear_cka(X, Y, debiased=True), abs=TOL)
        assert gram.loc[la, "conv3"] == pytest.approx(measures.linear_cka(X, Y), abs=TOL)
    assert gram.attrs["measure"] == "cka"


def test_minibatch_equals_minibatch_cka_fed_the_same_batches(nets, x):
    a, b = nets
    df = compare(a, b, x, measure="minibatch_cka", batch_size=12)
    acc = MinibatchCKA(4, 4)
    for batch_a, batch_b in zip(iter_activations(a, iter_batches(x, 12), LAYERS),
                                iter_activations(b, iter_batches(x, 12), LAYERS), strict=True):
        acc.update([batch_a[n] for n in LAYERS], [batch_b[n] for n in LAYERS])
    np.testing.assert_allclose(df.to_numpy(), acc.result(), rtol=0, atol=1e-12)
    assert df.attrs["measure"] == "minibatch_cka"


def test_minibatch_tracks_debiased_not_biased_cka(nets):
    a, b = nets
    x = torch.randn(240, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    mb = compare(a, b, x, measure="minibatch_cka", batch_size=80).to_numpy()
    deb = compare(a, b, x, debiased=True).to_numpy()
    assert np.abs(mb - deb).max() < 0.1  # same estimand, batch noise only
    assert np.abs(mb - deb).max() < np.abs(mb - compare(a, b, x).to_numpy()).max()


@pytest.mark.parametrize("measure", ["linear_cka", "minibatch_cka"])
def test_each_model_runs_forward_once_per_batch(nets, x, measure):
    a, b = nets
    ca, cb = ForwardCounter(a), ForwardCounter(b)
    compare(a, b, x, measure=measure, batch_size=16)  # 48 inputs -> 3 batches, 4 layers each
    assert (ca.calls, cb.calls) == (3, 3)


def test_same_model_runs_once_per_batch_and_diagonal_is_one(nets, x):
    a, _ = nets
    counter = ForwardCounter(a)
    df = compare(a, a, x, layers_b=["fc", "conv1"], batch_size=16)
    assert counter.calls == 3
    assert df.loc["conv1", "conv1"] == pytest.approx(1.0, abs=TOL)
    assert df.loc["fc", "fc"] == pytest.approx(1.0, abs=TOL)


def test_modes_restored_and_no_hooks_left(nets, x):
    a, b = nets
    a.train()
    b.eval()
    compare(a, b, x, measure="minibatch_cka", batch_size=16)
    assert all(m.training for m in a.modules()) and not any(m.training for m in b.modules())
    assert sum(len(m._forward_hooks) for net in nets for m in net.modules()) == 0


def test_memory_cap_error_names_minibatch_cka(nets, x):
    a, b = nets
    # width 4: 3136 + 1568 + 392 + 10 floats per example per model -> 48 examples ≈ 1.9 MB
    with pytest.raises(ZooscopeInputError, match="minibatch_cka"):
        compare(a, b, x, max_memory_gb=1e-3, batch_size=16)
    assert compare(a, b, x, max_memory_gb=1e-2).shape == (4, 4)


def test_unknown_measure_suggests_and_lists_comparers(nets, x):
    with pytest.raises(ZooscopeInputError) as e:
        compare(*nets, x, measure="linear_ckaa")
    msg = str(e.value)
    assert "Did you mean linear_cka" in msg
    assert "minibatch_cka" in msg.split("Valid names:")[1]


def test_non_layerwise_measure_is_refused(nets, x, monkeypatch):
    from zooscope.measures._base import MEASURES, MeasureMeta

    entry = MEASURES.get("linear_cka")
    fake = type(entry)("fake_table", entry.fn, MeasureMeta(True, True, measures.Inv.NONE, layerwise=False))
    monkeypatch.setitem(MEASURES._entries, "fake_table", fake)
    with pytest.raises(ZooscopeInputError, match="does not compare two layers"):
        compare(*nets, x, measure="fake_table")


def test_data_b_only_for_cross_dataset_comparers(nets, x, monkeypatch):
    a, b = nets
    for measure in ("linear_cka", "minibatch_cka"):
        with pytest.raises(ZooscopeInputError, match="data_b is only for"):
            compare(a, b, x, measure=measure, data_b=x + 1)

    seen = []

    def fake(model_a, model_b, pairs, layers_a, layers_b, *, device, progress, scale=1.0):
        for _ in range(2):  # pairs() must give a fresh iterator each time
            seen.append([(xa.clone(), xb.clone()) for xa, xb in pairs()])
        return scale * np.ones((len(layers_a), len(layers_b)))

    monkeypatch.setitem(COMPARERS._entries, "fake_cross", Entry("fake_cross", fake, ComparerMeta(cross_dataset=True)))
    x_b = x + 1
    df = compare(a, b, x, ["fc"], ["conv1", "fc"], measure="fake_cross", batch_size=20, data_b=x_b, scale=2.0)
    assert df.to_numpy().tolist() == [[2.0, 2.0]]
    assert len(seen) == 2 and [len(xa) for xa, _ in seen[1]] == [20, 20, 8]
    assert torch.equal(torch.cat([xb for _, xb in seen[0]]), x_b)
    assert torch.equal(torch.cat([xa for xa, _ in seen[1]]), x)
    with pytest.raises(ZooscopeInputError, match="data_b has 47"):
        compare(a, b, x, measure="fake_cross", data_b=x_b[:-1])


def test_comparers_from_the_gradsketch_plugin_are_loaded(nets, x):
    compare_mod._load_plugins()
    assert {"minibatch_cka", "grad_cka", "grad_nbs", "grad_euclidean"} <= set(COMPARERS.available())
    assert COMPARERS.get("grad_cka").cross_dataset and not COMPARERS.get("minibatch_cka").cross_dataset
    assert not COMPARERS.get("grad_euclidean").larger_is_more_similar


def test_a_missing_plugin_module_raises_instead_of_disappearing(nets, x, monkeypatch):
    monkeypatch.setattr(COMPARERS, "modules", ("zooscope.embed.no_such_plugin",))
    monkeypatch.setattr(COMPARERS, "_loaded", False)
    with pytest.raises(ModuleNotFoundError, match="no_such_plugin"):
        compare(*nets, x)


def test_comparer_registered_twice_is_refused():
    with pytest.raises(RuntimeError, match="registered twice"):
        COMPARERS.register(ComparerMeta())(compare_mod.minibatch_cka)


def test_unknown_layer_error_lists_valid_names(nets, x):
    with pytest.raises(ZooscopeInputError, match=r"Unknown layer 'layer5'.*Valid: conv1, conv1\.0"):
        compare(*nets, x, layers_a=["layer5"])


def test_bad_inputs_for_the_model_give_one_clear_error(nets):
    with pytest.raises(ZooscopeInputError, match=r"failed on a batch of shape \(8, 3, 28, 28\)"):
        compare(*nets, torch.randn(8, 3, 28, 28))


@pytest.mark.slow
def test_timm_resnet10t_with_itself_has_unit_diagonal():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", in_chans=1, num_classes=10)
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    df = compare(net, net, x, batch_size=32)
    assert list(df.index) == ["act1", "layer1", "layer2", "layer3", "layer4", "fc"]
    np.testing.assert_allclose(np.diag(df.to_numpy()), 1.0, atol=1e-6)
    assert np.allclose(df.to_numpy(), df.to_numpy().T, atol=1e-6)


def test_numpy_input_and_device_argument(nets, x):
    a, b = nets
    df_np = compare(a, b, x.numpy(), device="cpu")
    df_t = compare(a, b, x)
    np.testing.assert_allclose(df_np.to_numpy(), df_t.to_numpy(), atol=1e-12)


@pytest.mark.parametrize(("measure", "kwargs"), [("linear_cka", {"debaised": True}),
                                                 ("minibatch_cka", {"debiased": True})])
def test_misspelt_measure_option_fails_before_any_forward(nets, x, measure, kwargs):
    a, b = nets
    counter = ForwardCounter(a)
    with pytest.raises(ZooscopeInputError, match=f"measure '{measure}' does not take"):
        compare(a, b, x, measure=measure, **kwargs)
    assert counter.calls == 0
