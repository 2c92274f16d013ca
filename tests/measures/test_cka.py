"""CKA, HSIC and kernels: invariances, equivalences, unbiasedness, bad input."""

import numpy as np
import pytest
import torch
from scipy import stats

from zooscope import ZooscopeInputError
from zooscope.measures import (
    cca,
    center_gram,
    cka,
    gram_linear,
    gram_rbf,
    hsic0,
    hsic1,
    linear_cka,
    linear_cka_matrix,
    rbf_cka,
    u_center,
)

INV_TOL = 1e-10  # invariances hold to round-off in float64
F32_TOL = 1e-4  # float32 activations vs the float64 value
MATRIX_TOL = 1e-6  # linear_cka_matrix (float32 BLAS) vs linear_cka


@pytest.fixture
def xy(rng):
    X = rng.normal(size=(60, 8))
    Y = X @ rng.normal(size=(8, 6)) + rng.normal(size=(60, 6))
    return X, Y


FEATURE_CKAS = [
    (linear_cka, {}), (linear_cka, {"debiased": True}), (linear_cka, {"form": "features"}),
    (rbf_cka, {"threshold": 0.5}), (rbf_cka, {"threshold": 2.0, "debiased": True}),
]


def _gram_cka(X, Y, **kw):
    return cka(gram_linear(X), gram_linear(Y), **kw)


@pytest.mark.parametrize(("fn", "kw"), [*FEATURE_CKAS, (_gram_cka, {}), (_gram_cka, {"debiased": True})])
def test_orthogonal_scale_translation_leave_cka_unchanged(fn, kw, xy, rng):
    X, Y = xy
    before = fn(X, Y, **kw)
    Q = stats.ortho_group.rvs(Y.shape[1], random_state=rng)
    assert fn(X, Y @ Q, **kw) == pytest.approx(before, abs=INV_TOL)
    assert fn(X, 3.7 * Y, **kw) == pytest.approx(before, abs=INV_TOL)
    assert fn(X, 1e-3 * Y, **kw) == pytest.approx(before, abs=INV_TOL)
    assert fn(X, Y + 5.0 * rng.normal(size=(1, Y.shape[1])), **kw) == pytest.approx(before, abs=INV_TOL)


def test_invertible_map_changes_cka_but_not_cca(data_dir):
    X = np.load(data_dir / "seedB_demo_seed1337_X.npy")
    Y = np.load(data_dir / "seedB_demo_seed1337_Y.npy")
    W = np.random.default_rng(0).normal(size=(10, 10))
    assert abs(linear_cka(X, Y @ W) - linear_cka(X, Y)) > 0.05  # notes: about -0.159 on this data
    assert cca(X, Y @ W) == pytest.approx(cca(X, Y), abs=INV_TOL)


@pytest.mark.parametrize(("fn", "kw"), FEATURE_CKAS)
def test_cka_of_x_with_itself_is_one_and_symmetric(fn, kw, xy):
    X, Y = xy
    assert fn(X, X, **kw) == pytest.approx(1.0, abs=1e-12)
    assert fn(X, Y, **kw) == pytest.approx(fn(Y, X, **kw), abs=1e-12)


def test_biased_cka_lies_in_unit_interval_and_debiased_can_be_negative(rng):
    vals, deb = [], []
    for _ in range(20):
        X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 4))
        vals += [linear_cka(X, Y), rbf_cka(X, Y)]
        deb.append(linear_cka(X, Y, debiased=True))
    assert min(vals) >= 0.0 and max(vals) <= 1.0
    assert min(deb) < 0.0  # independent data: the unbiased estimator straddles 0
    assert max(abs(v) for v in deb) <= 1.0


def _hsic1_formula(K, L):
    """Song et al. 2012 as written in the notes (Nguyen et al. 2021, eq. 3)."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    val = (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
           - 2.0 / (n - 2) * (one @ Kt @ Lt @ one))
    return val / (n * (n - 3))


def test_hsic1_equals_song_formula_and_hsic0_equals_trace_form(xy):
    X, Y = xy
    K, L = gram_linear(X), gram_rbf(Y)
    assert hsic1(K, L) == pytest.approx(_hsic1_formula(K, L), rel=1e-12)
    n = K.shape[0]
    H = np.eye(n) - 1.0 / n
    assert hsic0(K, L) == pytest.approx(np.trace(K @ H @ L @ H) / (n - 1) ** 2, rel=1e-12)


def test_hsic1_demo_value(data_dir):
    X = np.load(data_dir / "seedB_demo_seed1337_X.npy")
    Y = np.load(data_dir / "seedB_demo_seed1337_Y.npy")
    assert hsic1(gram_linear(X), gram_linear(Y)) == pytest.approx(9.895955787045914, abs=1e-10)


def test_hsic1_is_unbiased_monte_carlo(rng):
    # y = x + e, x, e ~ N(0, I3): population linear HSIC = ||Cov(x, y)||_F^2 = ||I3||^2 = 3
    draws, n = 4000, 12
    x = rng.normal(size=(draws, n, 3))
    y = x + rng.normal(size=(draws, n, 3))
    h1 = np.array([hsic1(gram_linear(a), gram_linear(b)) for a, b in zip(x, y, strict=True)])
    h0 = np.array([hsic0(gram_linear(a), gram_linear(b)) for a, b in zip(x, y, strict=True)])
    se = h1.std(ddof=1) / np.sqrt(draws)
    assert abs(h1.mean() - 3.0) < 4 * se  # ~ 4 standard errors
    assert h0.mean() - 3.0 > 10 * h0.std(ddof=1) / np.sqrt(draws)  # the biased one overshoots (~4.9)


def test_center_gram_biased_is_hkh_and_unbiased_has_zero_rows(xy):
    X, _ = xy
    K = gram_rbf(X)
    n = K.shape[0]
    H = np.eye(n) - 1.0 / n
    np.testing.assert_allclose(center_gram(K), H @ K @ H, atol=1e-13)
    U = u_center(K)
    np.testing.assert_allclose(np.diag(U), 0.0, atol=0)
    np.testing.assert_allclose(U.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(U, center_gram(K, unbiased=True), atol=0)


def test_gram_rbf_bandwidth_uses_median_of_full_squared_distance_matrix(rng):
    X = rng.normal(size=(7, 3))
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    med = np.median(D)  # includes the 7 zeros of the diagonal
    np.testing.assert_allclose(gram_rbf(X, 0.7), np.exp(-D / (2 * 0.49 * med)), rtol=1e-12)


def test_torch_and_numpy_inputs_agree(xy):
    X, Y = xy
    assert linear_cka(torch.from_numpy(X), torch.from_numpy(Y)) == linear_cka(X, Y)
    assert rbf_cka(torch.from_numpy(X).float(), Y) == pytest.approx(rbf_cka(X, Y), abs=1e-6)


def test_float32_with_large_offset_gives_no_nan(rng):
    X = rng.normal(size=(200, 30))
    Y = X @ rng.normal(size=(30, 20)) + rng.normal(size=(200, 20))
    X32, Y32 = (X + 1e4).astype(np.float32), (Y + 1e4).astype(np.float32)
    for kw in ({}, {"debiased": True}):
        ref = linear_cka(X32.astype(np.float64), Y32.astype(np.float64), **kw)
        assert linear_cka(X32, Y32, **kw) == pytest.approx(ref, abs=F32_TOL)
        assert linear_cka(X32, Y32, **kw) == pytest.approx(linear_cka(X, Y, **kw), abs=F32_TOL)
        got = linear_cka_matrix([X32], [Y32], **kw)
        assert np.isfinite(got).all() and got[0, 0] == pytest.approx(ref, abs=F32_TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matrix_matches_pairwise_linear_cka(rng, debiased):
    n = 200  # widths chosen so both Gram-form (4p > n) and feature-form layers occur
    base = rng.normal(size=(n, 12))
    acts_a = [base @ rng.normal(size=(12, p)) + 0.5 * rng.normal(size=(n, p)) for p in (300, 120, 30, 3)]
    acts_b = [np.maximum(base @ rng.normal(size=(12, p)), 0) + 3.0 for p in (260, 40, 1)]
    acts_a = [a.astype(np.float32) for a in acts_a]
    got = linear_cka_matrix(acts_a, acts_b, debiased=debiased)
    assert got.shape == (4, 3)
    want = np.array([[linear_cka(a, b, debiased=debiased) for b in acts_b] for a in acts_a])
    np.testing.assert_allclose(got, want, atol=MATRIX_TOL)
    exact = linear_cka_matrix(acts_a, acts_b, debiased=debiased, exact=True)
    np.testing.assert_allclose(exact, want, atol=1e-12)


def test_linear_cka_matrix_same_model_and_torch_4d(rng):
    acts = [torch.from_numpy(rng.normal(size=(40, 3, 4, 4))), rng.normal(size=(40, 5))]
    got = linear_cka_matrix(acts)
    np.testing.assert_allclose(np.diag(got), 1.0, atol=1e-6)
    np.testing.assert_allclose(got, got.T, atol=1e-12)
    assert got[0, 1] == pytest.approx(linear_cka(acts[0].reshape(40, -1), acts[1]), abs=MATRIX_TOL)


@pytest.mark.parametrize(("call", "match"), [
    (lambda X: linear_cka(X, X[:-1]), "same examples"),
    (lambda X: linear_cka(X[:3], X[:3], debiased=True), "at least 4"),
    (lambda X: linear_cka(np.where(X > 2, np.nan, X), X), "NaN or Inf"),
    (lambda X: linear_cka(np.where(X > 2, np.inf, X), X), "NaN or Inf"),
    (lambda X: linear_cka(np.ones_like(X), X), "same for every example"),
    (lambda X: rbf_cka(X, X, threshold=0.0), "threshold"),
    (lambda X: rbf_cka(X, X, threshold=float("nan")), "threshold"),
    (lambda X: cka(X @ X.T, X[:-1] @ X[:-1].T), "same examples"),
    (lambda X: cka(X, X), "square"),
    (lambda X: cka(np.triu(X @ X.T), X @ X.T), "symmetric"),
    (lambda X: cka(np.ones((60, 60)), X @ X.T), "constant"),
    (lambda X: linear_cka(X, X, form="gramm"), "Did you mean"),
    (lambda X: linear_cka_matrix([X], [X[:-1]]), "same examples"),
    (lambda X: linear_cka_matrix([X], [np.ones_like(X)]), "no variation"),
    (lambda X: gram_rbf(np.zeros((5, 2))), "median"),
])
def test_bad_input_raises_one_clear_error(call, match, xy):
    X, _ = xy
    with pytest.raises(ZooscopeInputError, match=match):
        call(X)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matrix_blocked_gram_path(rng, debiased):
    n = 700  # > 2 blocks of rows: the Gram is assembled from its upper-triangular blocks
    base = rng.normal(size=(n, 10))
    X = base @ rng.normal(size=(10, 400)) + rng.normal(size=(n, 400)) + 5.0
    Y = np.maximum(base @ rng.normal(size=(10, 300)), 0)
    want = linear_cka(X, Y, debiased=debiased)
    assert linear_cka_matrix([X], [Y], debiased=debiased)[0, 0] == pytest.approx(want, abs=1e-12)  # float64 stays
    got32 = linear_cka_matrix([torch.from_numpy(X).float()], [Y.astype(np.float32)], debiased=debiased)
    assert got32[0, 0] == pytest.approx(want, abs=MATRIX_TOL)
