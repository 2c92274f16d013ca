"""The Gram form of SVD-based measures for wide layers (issue 22 item 2): equal to the feature form to 1e-8, on
random data and on a real activation pair; the per-layer factor compare can cache; the cost estimate."""

import numpy as np
import pytest

import zooscope as zs
from zooscope import ZooscopeInputError
from zooscope.measures import MEASURES, estimate_flops, estimate_seconds, orthogonal_factor, procrustes, svcca

ACCEPT = 1e-8  # issue 22's acceptance: Gram-form value == feature-form value to 1e-8


def _wide_pair(rng, n=120, p=900, q=700, decay=80.0):
    """Wide layers with a decaying spectrum and a shared part (as real activations have)."""
    Z = rng.normal(size=(n, 40))
    X = Z @ rng.normal(size=(40, p)) + rng.normal(size=(n, p)) * np.exp(-np.arange(p) / decay)
    Y = np.maximum(Z @ rng.normal(size=(40, q)) + 0.5 * rng.normal(size=(n, q)), 0.0)  # ReLU: not Gaussian
    return X, Y


def _svd_factor(X):
    """The feature-form reduction (an n × p SVD), independent of the Gram route: U S of centred X."""
    Xc = X - X.mean(axis=0)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    return U * s


@pytest.mark.parametrize("seed", range(3))
def test_procrustes_gram_form_equals_feature_form_on_random_wide_data(seed):
    X, Y = _wide_pair(np.random.default_rng(seed))
    feat, gram = procrustes(X, Y, form="features"), procrustes(X, Y, form="gram")
    assert 0.05 < feat < np.pi / 2 - 0.05  # a generic value, not a corner
    assert gram == pytest.approx(feat, abs=ACCEPT)
    assert procrustes(X, Y) == gram  # auto picks the Gram form when features >> examples


def test_procrustes_gram_form_equals_feature_form_on_a_real_activation_pair(data_dir):
    # seed A's layer-10 features of two trained networks on 256 inputs: 512 features > 256 examples
    X = np.load(data_dir / "seedA_net1_layer10_F.npy")
    Y = np.load(data_dir / "seedA_net2_layer10_F.npy")
    assert X.shape[1] > X.shape[0]
    feat, gram = procrustes(X, Y, form="features"), procrustes(X, Y, form="gram")
    assert 0.01 < feat < np.pi / 2
    assert gram == pytest.approx(feat, abs=ACCEPT)
    # and on the per-layer factors compare would cache
    assert procrustes(orthogonal_factor(X), orthogonal_factor(Y)) == pytest.approx(feat, abs=ACCEPT)


def test_procrustes_near_zero_keeps_its_digits_in_the_gram_form(rng):
    X = rng.normal(size=(60, 400))
    Q, _ = np.linalg.qr(rng.normal(size=(400, 400)))
    for eps in (0.0, 1e-9, 1e-6):
        Y = 3 * (X + eps * rng.normal(size=X.shape)) @ Q + 2
        assert procrustes(X, Y, form="gram") == pytest.approx(procrustes(X, Y, form="features"), abs=1e-10)
    assert procrustes(X, 3 * X @ Q + 2, form="gram") < 1e-7


def test_svcca_gram_route_equals_the_svd_route(rng):
    X, Y = _wide_pair(rng)
    # svcca of wide X, Y takes the Gram route; on the SVD factors (n x n, not wide) it takes the SVD route
    assert svcca(X, Y) == pytest.approx(svcca(_svd_factor(X), _svd_factor(Y)), abs=ACCEPT)


@pytest.mark.parametrize("name", [n for n in MEASURES.available() if MEASURES.get(n).factorable])
def test_factorable_measures_give_their_value_on_the_factors(name, rng):
    X, Y = _wide_pair(rng, n=80, p=300, q=250)
    m = MEASURES.get(name)
    assert m(orthogonal_factor(X), orthogonal_factor(Y)) == pytest.approx(m(X, Y), abs=ACCEPT)


def test_orthogonal_factor_is_an_isometry_of_the_examples(rng):
    X = rng.normal(size=(30, 200))
    F = orthogonal_factor(X)
    Xc = X - X.mean(axis=0)
    assert F.shape == (30, 29)  # rank n - 1 after centring: the constant direction is dropped
    np.testing.assert_allclose(F @ F.T, Xc @ Xc.T, atol=1e-10 * np.abs(Xc @ Xc.T).max())
    assert np.all(np.diff(np.linalg.norm(F, axis=0)) <= 1e-12)  # columns by decreasing norm
    narrow = rng.normal(size=(30, 5))
    np.testing.assert_array_equal(orthogonal_factor(narrow), narrow - narrow.mean(axis=0))
    big = orthogonal_factor(X * 1e300) / 1e300  # the Gram would overflow: factored at 2^k scale, scaled back
    assert big.shape == F.shape  # (defined up to an orthogonal map: compare the Grams)
    np.testing.assert_allclose(big @ big.T, F @ F.T, atol=1e-10 * np.abs(F @ F.T).max())
    with pytest.raises(ZooscopeInputError, match="NaN"):
        orthogonal_factor(np.full((3, 4), np.nan))


def test_cost_estimate_grows_as_the_forms_say():
    n = 2000
    # the Gram form's per-layer cost is linear in p; each pair then costs O(n^3) whatever p is
    one = estimate_flops("procrustes", n, [65536], [65536])
    two = estimate_flops("procrustes", n, [131072], [131072])
    pair_only = estimate_flops("procrustes", n, [65536] * 2, [65536] * 2) - 2 * one
    assert 1.5 < two / one < 2.0 and pair_only > 0
    # linear_cka: one Gram per layer, pairs nearly free; procrustes costs more, never less
    assert estimate_flops("linear_cka", n, [65536] * 14, [65536] * 14) < estimate_flops(
        "procrustes", n, [65536] * 14, [65536] * 14)
    assert estimate_seconds("procrustes", n, [65536] * 14, [65536] * 14, gflops=10.0) == pytest.approx(
        estimate_flops("procrustes", n, [65536] * 14, [65536] * 14) / 1e10)
    for name in MEASURES.available():
        entry = MEASURES.get(name)
        if entry.layerwise and entry.inputs in ("features", "gram"):
            assert estimate_flops(name, 100, [50, 500], [80]) > 0, name


def test_public_names():
    assert zs.measures.orthogonal_factor is orthogonal_factor
    with pytest.raises(ZooscopeInputError, match="form"):
        procrustes(np.eye(3), np.eye(3), form="svd")


def test_prepare_layer_factors_only_wide_layers_of_factorable_measures(rng):
    X, Y = _wide_pair(rng, n=50, p=400, q=30)
    A, B = (zs.measures.prepare_layer("procrustes", Z) for Z in (X, Y))
    assert A.shape == (50, 49) and B is Y  # Y is narrow: passed as given
    assert procrustes(A, B) == pytest.approx(procrustes(X, Y), abs=ACCEPT)
    assert zs.measures.prepare_layer("cca", X) is X  # rank-counting: never factored
