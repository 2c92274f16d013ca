"""MinibatchCKA: the stacked U-centred accumulator against the HSIC₁ formula and two peers."""

import numpy as np
import pytest
import torch
from torch import nn

from zooscope import ZooscopeInputError
from zooscope.measures import MinibatchCKA, linear_cka

EXACT_TOL = 1e-10  # float64 throughout
F32_TOL = 1e-4  # float32 activations vs float64
TORCH_CKA_TOL = 2e-4  # torch-cka computes everything in float32 on uncentred Grams


def _hsic1(K, L):
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    val = (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
           - 2.0 / (n - 2) * (one @ Kt @ Lt @ one))
    return val / (n * (n - 3))


def _reference(batches_a, batches_b):
    """Σ_b w_b HSIC₁ ratio with w_b = B_b (the documented weighting), from raw uncentred Grams."""
    La, Lb = len(batches_a[0]), len(batches_b[0])
    out = np.zeros((La, Lb))
    for i in range(La):
        for j in range(Lb):
            xy = xx = yy = 0.0
            for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
                X, Y = acts_a[i].reshape(len(acts_a[i]), -1), acts_b[j].reshape(len(acts_b[j]), -1)
                K, L = X @ X.T, Y @ Y.T
                w = len(X)
                xy, xx, yy = xy + w * _hsic1(K, L), xx + w * _hsic1(K, K), yy + w * _hsic1(L, L)
            out[i, j] = xy / np.sqrt(xx * yy)
    return out


def _batches(rng, sizes, widths, shift=0.0):
    z = [rng.normal(size=(B, 6)) for B in sizes]
    return [[zz @ rng.normal(size=(6, p)) + rng.normal(size=(B, p)) + shift for p in widths]
            for zz, B in zip(z, sizes, strict=True)]


def _run(acc, batches_a, batches_b=None):
    for k, acts in enumerate(batches_a):
        acc.update(acts, None if batches_b is None else batches_b[k])
    return acc.result()


@pytest.mark.parametrize("sizes", [[16, 16, 16], [20, 9, 31, 5]])
def test_equals_per_batch_hsic1_formula(rng, sizes):
    a = _batches(rng, sizes, (7, 30, 2))
    b = _batches(rng, sizes, (5, 11))
    got = _run(MinibatchCKA(3, 2), a, b)
    np.testing.assert_allclose(got, _reference(a, b), atol=EXACT_TOL, rtol=0)


def test_single_batch_equals_debiased_linear_cka(rng):
    (acts,) = _batches(rng, [50], (4, 9, 20))
    got = _run(MinibatchCKA(3), [acts])
    want = np.array([[linear_cka(x, y, debiased=True) for y in acts] for x in acts])
    np.testing.assert_allclose(got, want, atol=EXACT_TOL)


def test_equals_ckatorch_cka_batch(rng):
    ckatorch = pytest.importorskip("ckatorch")
    k, m = 6, 24
    X = rng.normal(size=(k * m, 10)) + 3.0
    Y = np.tanh(X @ rng.normal(size=(10, 7))) + rng.normal(size=(k * m, 7))
    peer = float(ckatorch.cka_batch(torch.from_numpy(X).view(k, m, 10), torch.from_numpy(Y).view(k, m, 7)))
    acc = MinibatchCKA(1, 1)
    for s in range(0, k * m, m):
        acc.update([X[s : s + m]], [Y[s : s + m]])
    assert acc.result()[0, 0] == pytest.approx(peer, abs=EXACT_TOL)


def _small_cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 10),
    ).eval()


def test_agrees_with_torch_cka_on_two_small_cnns():
    torch_cka = pytest.importorskip("torch_cka")
    torch.manual_seed(0)
    x = torch.randn(240, 1, 12, 12)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=40)
    layers = ["1", "3", "5"]
    m1, m2 = _small_cnn(1), _small_cnn(2)
    with pytest.warns(UserWarning):  # torch-cka warns that dataloader2 defaults to dataloader1
        peer = torch_cka.CKA(m1, m2, "a", "b", layers, layers)
        peer.compare(loader)
    want = peer.export()["CKA"].numpy()

    acts = {1: [], 2: []}
    hooks = [dict(m.named_modules())[name].register_forward_hook(
        lambda _m, _i, out, k=k: acts[k].append(out)) for k, m in ((1, m1), (2, m2)) for name in layers]
    acc = MinibatchCKA(3, 3)
    with torch.no_grad():
        for (xb,) in loader:
            acts[1].clear()
            acts[2].clear()
            m1(xb)
            m2(xb)
            acc.update(acts[1], acts[2])
    for h in hooks:
        h.remove()
    assert want.shape == (3, 3) and np.isfinite(want).all()
    np.testing.assert_allclose(acc.result(), want, atol=TORCH_CKA_TOL)


def test_float32_with_large_offset_gives_no_nan(rng):
    a = _batches(rng, [25] * 4, (40, 3), shift=1e4)
    b = _batches(rng, [25] * 4, (20,), shift=-1e4)
    ref = _run(MinibatchCKA(2, 1), a, b)
    a32 = [[x.astype(np.float32) for x in acts] for acts in a]
    b32 = [[torch.from_numpy(y.astype(np.float32)) for y in acts] for acts in b]
    got = _run(MinibatchCKA(2, 1), a32, b32)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=F32_TOL)
    ref32in64 = _run(MinibatchCKA(2, 1, gram_dtype="float64"), a32, b32)
    np.testing.assert_allclose(got, ref32in64, atol=F32_TOL)


def test_small_batches_are_skipped_with_a_warning(rng):
    a = _batches(rng, [10, 10, 3], (5, 2))
    acc = MinibatchCKA(2)
    with pytest.warns(UserWarning, match="at least 4"):
        got = _run(acc, a)
    assert acc.n_batches_ == 2 and acc.n_examples_ == 20 and acc.n_skipped_ == 3
    np.testing.assert_allclose(got, _reference(a[:2], a[:2]), atol=EXACT_TOL)


def test_same_model_is_square_symmetric_with_unit_diagonal(rng):
    got = _run(MinibatchCKA(3), _batches(rng, [12] * 3, (3, 8, 1)))
    assert got.shape == (3, 3)
    np.testing.assert_allclose(np.diag(got), 1.0, atol=1e-12)
    np.testing.assert_allclose(got, got.T, atol=1e-12)


def test_reset_forgets_everything(rng):
    a = _batches(rng, [10] * 2, (4,))
    acc = MinibatchCKA(1)
    _run(acc, _batches(rng, [10] * 3, (4,)))
    acc.reset()
    assert acc.n_batches_ == 0
    np.testing.assert_allclose(_run(acc, a), _run(MinibatchCKA(1), a), atol=0)


@pytest.mark.parametrize(("call", "match"), [
    (lambda acc, X: acc.update([X, X]), "two models"),
    (lambda acc, X: acc.update([X], [X]), "layers"),
    (lambda acc, X: acc.update([X, X[:-1]], [X]), "batch sizes"),
    (lambda acc, X: acc.update([X, np.where(X > 1, np.nan, X)], [X]), "NaN/Inf"),
    (lambda acc, X: acc.result(), "no batches"),
    (lambda acc, X: acc.update([X, np.ones_like(X)], [X]).result(), "constant"),
])
def test_bad_input_raises_one_clear_error(call, match, rng):
    acc = MinibatchCKA(2, 1)
    with pytest.raises(ZooscopeInputError, match=match):
        call(acc, rng.normal(size=(10, 3)))


def test_constructor_validates_layer_counts():
    with pytest.raises(ZooscopeInputError, match="n_layers_a"):
        MinibatchCKA(0)
    with pytest.raises(ZooscopeInputError, match="gram_dtype"):
        MinibatchCKA(2, gram_dtype="float16")


def test_a_tensor_given_for_both_models_is_processed_once(rng, monkeypatch):
    calls = []
    original = MinibatchCKA._u_gram

    def counting(self, A, name):
        calls.append(name)
        return original(self, A, name)

    monkeypatch.setattr(MinibatchCKA, "_u_gram", counting)
    (acts,) = _batches(rng, [20], (6, 3))
    shared = torch.from_numpy(acts[0])
    got = MinibatchCKA(2, 1).update([shared, acts[1]], [shared]).result()
    assert calls == ["acts_a[0]", "acts_a[1]"]
    assert got[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_float64_torch_input_keeps_float64_and_device(rng):
    a = _batches(rng, [16, 16], (9, 4))
    acc = MinibatchCKA(2)
    got = _run(acc, [[torch.from_numpy(x) for x in acts] for acts in a])
    assert acc._acc.dtype == torch.float64 and acc._acc.device.type == "cpu"
    np.testing.assert_allclose(got, _reference(a, a), atol=EXACT_TOL)
