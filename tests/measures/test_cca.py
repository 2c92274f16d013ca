"""CCA family: definitions against independent constructions, invariances, warnings."""

import numpy as np
import pytest
from scipy import linalg
from sklearn.linear_model import LinearRegression

from zooscope import ZooscopeInputError
from zooscope.measures import cca, cca_rho, cka, linear_regression, pwcca, svcca

TOL = 1e-10


@pytest.fixture
def demo(data_dir):
    return np.load(data_dir / "seedB_demo_seed1337_X.npy"), np.load(data_dir / "seedB_demo_seed1337_Y.npy")


@pytest.fixture
def xy(rng):
    X = rng.normal(size=(80, 6)) + 4.0
    Y = np.tanh(X @ rng.normal(size=(6, 5))) + 0.3 * rng.normal(size=(80, 5))
    return X, Y


def test_centering_makes_cca_translation_invariant_and_demo_mode_is_not(data_dir):
    X = np.load(data_dir / "seedB_b3_n80_p8_offset_means_X.npy")
    Y = np.load(data_dir / "seedB_b3_n80_p8_offset_means_Y.npy")
    shift = 50.0 * np.arange(1, 9)
    assert cca(X, Y + shift) == pytest.approx(cca(X, Y), abs=TOL)
    assert abs(cca(X, Y + shift, center=False) - cca(X, Y, center=False)) > 1e-3


@pytest.mark.parametrize("fn", [cca, cca_rho, pwcca, linear_regression])
def test_invertible_linear_map_of_y_leaves_value_unchanged(fn, xy, rng):
    X, Y = xy
    W = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    assert fn(X, Y @ W - 2.0) == pytest.approx(fn(X, Y), abs=TOL)


def test_r2_cca_equals_cka_of_projections_eq_11(demo):
    X, Y = demo
    Qx, _ = np.linalg.qr(X - X.mean(0))
    Qy, _ = np.linalg.qr(Y - Y.mean(0))
    via_cka = cka(Qx @ Qx.T, Qy @ Qy.T) * np.sqrt(Qy.shape[1] / Qx.shape[1])
    assert cca(X, Y) == pytest.approx(via_cka, abs=TOL)
    assert cca(X, Y) == pytest.approx(0.5453963, abs=1e-7)  # notes §5 item 4


def test_mean_rho_is_mean_cosine_of_principal_angles(xy):
    X, Y = xy
    angles = linalg.subspace_angles(X - X.mean(0), Y - Y.mean(0))
    assert cca_rho(X, Y) == pytest.approx(np.mean(np.cos(angles)), abs=TOL)
    assert cca(X, Y) == pytest.approx(np.mean(np.cos(angles) ** 2), abs=TOL)
    assert cca(X, Y, statistic="rho") == cca_rho(X, Y)


def test_svcca_with_all_variance_kept_is_cca_and_truncation_matters(rng):
    n = 300
    signal = rng.normal(size=(n, 1))
    X = np.hstack([10 * rng.normal(size=(n, 4)), 0.01 * signal])  # the shared part carries ~0 variance
    Y = np.hstack([signal, rng.normal(size=(n, 2))])
    assert svcca(X, Y, keep=1.0) == pytest.approx(cca_rho(X, Y), abs=TOL)
    assert svcca(X, Y, keep=1.0, statistic="r2") == pytest.approx(cca(X, Y), abs=TOL)
    assert svcca(X, Y, keep=0.99) < cca_rho(X, Y) - 0.1  # the low-variance shared direction is dropped


def _pwcca_independent(X, Y):
    """Morcos et al. with whitening by Cholesky: a_i = Σxx^{-1/2} u_i, h_i = X a_i / ‖X a_i‖."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
    Wx, Wy = linalg.inv(linalg.sqrtm(Sxx)).real, linalg.inv(linalg.sqrtm(Syy)).real
    U, rho, _ = np.linalg.svd(Wx @ Sxy @ Wy, full_matrices=False)
    H = Xc @ Wx @ U[:, : rho.size]
    H /= np.linalg.norm(H, axis=0)
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    # anatome #30: orthonormalise the canonical *weights* a, then alpha = sum over examples of |X a|
    a_orth, _ = np.linalg.qr(Wx @ U[:, : rho.size])
    weights_bug = np.abs(Xc @ a_orth).sum(axis=0)
    return alpha @ rho / alpha.sum(), weights_bug @ rho / weights_bug.sum()


def test_pwcca_weights_come_from_canonical_variables(xy):
    X, Y = xy
    right, bug = _pwcca_independent(X, Y)
    assert pwcca(X, Y) == pytest.approx(right, abs=TOL)
    assert abs(right - bug) > 1e-4  # the test tells the anatome #30 variant apart
    assert pwcca(X, Y) != pytest.approx(pwcca(Y, X), abs=1e-6)  # asymmetric


def test_linear_regression_is_r2_of_least_squares_fit(xy):
    X, Y = xy
    pred = LinearRegression().fit(Y, X).predict(Y)
    r2 = 1.0 - np.sum((X - pred) ** 2) / np.sum((X - X.mean(0)) ** 2)
    assert linear_regression(X, Y) == pytest.approx(r2, abs=TOL)
    assert linear_regression(Y, X) != pytest.approx(linear_regression(X, Y), abs=1e-6)


def test_more_features_than_samples_warns_at_the_callers_line(rng):
    X, Y = rng.normal(size=(20, 30)), rng.normal(size=(20, 25))
    with pytest.warns(UserWarning, match="by construction") as rec:
        value = cca(X, Y)
    assert rec[0].filename == __file__
    assert value == pytest.approx(1.0, abs=1e-8)  # Kornblith Theorem 1: all canonical correlations are 1
    with pytest.warns(UserWarning, match="fits any X exactly") as rec:
        linear_regression(X, Y)
    assert rec[0].filename == __file__


def test_duplicated_units_do_not_change_cca(xy):
    X, Y = xy
    assert cca(np.hstack([X, X[:, :2]]), Y) == pytest.approx(cca(X, Y), abs=TOL)


@pytest.mark.parametrize(("call", "match"), [
    (lambda X, Y: cca(X, Y[:-1]), "same examples"),
    (lambda X, Y: cca(X, Y, statistic="mean"), "statistic"),
    (lambda X, Y: svcca(X, Y, keep=1.5), "keep"),
    (lambda X, Y: svcca(X, Y, keep=0), "keep"),
    (lambda X, Y: pwcca(np.full_like(X, 2.0), Y), "same for every example"),
    (lambda X, Y: linear_regression(X, np.where(Y > 1, np.inf, Y)), "NaN or Inf"),
    (lambda X, Y: cca(X[:2], Y[:2]), "at least 3"),
])
def test_bad_input_raises_one_clear_error(call, match, xy):
    with pytest.raises(ZooscopeInputError, match=match):
        call(*xy)
