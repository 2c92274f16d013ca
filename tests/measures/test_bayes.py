"""Seed 002 (Schütt et al.): prior predictive TV / JS distances and the closed-form Gaussian divergences."""

import math

import numpy as np
import pytest
from scipy import linalg, stats

from zooscope import ZooscopeInputError
from zooscope.measures import (
    MCEstimate,
    bhattacharyya,
    bures_wasserstein,
    gaussian_divergences,
    gaussian_jsd,
    gaussian_tv,
    get,
    hellinger,
    js_distance,
    jsd,
    prior_predictive_cov,
    sym_kl,
    tv_distance,
)

MC_Z = 3.0  # closed forms must lie within 3 Monte Carlo standard errors


def _tv_1d(s1, s2):
    """TV(N(0, s1), N(0, s2)) = 2[Φ(x*/√s1) − Φ(x*/√s2)], x*² = s1 s2 ln(s2/s1)/(s2 − s1)."""
    x = math.sqrt(s1 * s2 * math.log(s2 / s1) / (s2 - s1))
    return 2 * (stats.norm.cdf(x / math.sqrt(s1)) - stats.norm.cdf(x / math.sqrt(s2)))


def test_prior_predictive_cov_matches_the_reference_recipe(rng):
    X = rng.normal(size=(30, 7))
    K = X @ X.T
    nu = 30 * 0.01 / (1 + 30 * 0.01)
    expected = (1 - nu) * K * 30 / np.trace(K) + nu * np.eye(30)
    np.testing.assert_allclose(prior_predictive_cov(X), expected, rtol=1e-13)
    np.testing.assert_allclose(prior_predictive_cov(X, b=0.0, normalize=False), K, rtol=1e-13)


@pytest.mark.parametrize("fn", [tv_distance, jsd, js_distance, sym_kl, bhattacharyya, hellinger])
def test_identical_covariances_give_exactly_zero(fn, rng):
    X = rng.normal(size=(25, 6))
    assert fn(X, X) == 0.0
    assert fn(X, 4.0 * X) == 0.0  # a power-of-two scale survives trace normalisation bit for bit


def test_bures_identical_is_roundoff_zero(rng):
    X = rng.normal(size=(25, 6))
    assert bures_wasserstein(X, X) < 1e-6


def test_tv_1d_closed_form():
    assert _tv_1d(1.0, 3.0) == pytest.approx(0.25936, abs=1e-5)
    est = gaussian_tv([[1.0]], [[3.0]], n_samples=100_000, seed=1)
    assert isinstance(est, MCEstimate)
    assert abs(est.value - _tv_1d(1.0, 3.0)) <= MC_Z * est.se


def test_tv_scaled_covariance_chi2_closed_form():
    k, c = 10, 1.5
    r2 = k * c * math.log(c) / (c - 1)
    exact = stats.chi2.cdf(r2, k) - stats.chi2.cdf(r2 / c, k)
    assert exact == pytest.approx(0.34393, abs=1e-5)
    S = linalg.qr(np.random.default_rng(3).normal(size=(k, k)))[0] @ np.diag(np.linspace(0.5, 2, k))
    S1 = S @ S.T  # any Σ₁: TV(N(0,Σ₁), N(0,cΣ₁)) does not depend on Σ₁
    est = gaussian_tv(S1, c * S1, n_samples=50_000, seed=2)
    assert abs(est.value - exact) <= MC_Z * est.se


def test_jsd_1d_quadrature():
    s1, s2 = 1.0, 3.0
    p, q = stats.norm(scale=math.sqrt(s1)).pdf, stats.norm(scale=math.sqrt(s2)).pdf

    def integrand(x):
        m = (p(x) + q(x)) / 2
        return 0.5 * p(x) * math.log2(p(x) / m) + 0.5 * q(x) * math.log2(q(x) / m)

    from scipy.integrate import quad

    exact = quad(integrand, -25, 25, limit=200)[0]  # p underflows past ~38
    assert exact == pytest.approx(0.09058, abs=1e-5)
    est = gaussian_jsd([[s1]], [[s2]], n_samples=100_000, seed=4)
    assert abs(est.value - exact) <= MC_Z * est.se


def test_bhattacharyya_bounds_total_variation(rng):
    d = gaussian_divergences([[1.0]], [[3.0]])
    bc = math.exp(-d["bhattacharyya"])
    assert (1 - bc, math.sqrt(1 - bc**2)) == pytest.approx((0.069, 0.366), abs=1e-3)
    for _ in range(3):
        X, Y = rng.normal(size=(20, 5)), rng.normal(size=(20, 8))
        bc = math.exp(-bhattacharyya(X, Y))
        tv, se = tv_distance(X, Y, n_samples=20_000, return_se=True)
        assert 1 - bc - MC_Z * se <= tv <= math.sqrt(1 - bc**2) + MC_Z * se


def test_closed_forms_against_textbook_formulas(rng):
    X, Y = rng.normal(size=(15, 4)), rng.normal(size=(15, 9))
    S1, S2 = prior_predictive_cov(X), prior_predictive_cov(Y)
    N = 15
    ld1, ld2 = np.linalg.slogdet(S1)[1], np.linalg.slogdet(S2)[1]
    kl12 = 0.5 * (np.trace(np.linalg.solve(S2, S1)) - N + ld2 - ld1)
    kl21 = 0.5 * (np.trace(np.linalg.solve(S1, S2)) - N + ld1 - ld2)
    assert sym_kl(X, Y) == pytest.approx((kl12 + kl21) / 2, rel=1e-10)  # the MEAN of the directions
    d_b = 0.5 * np.linalg.slogdet((S1 + S2) / 2)[1] - 0.25 * (ld1 + ld2)
    assert bhattacharyya(X, Y) == pytest.approx(d_b, rel=1e-10)
    assert hellinger(X, Y) == pytest.approx(math.sqrt(1 - math.exp(-d_b)), rel=1e-10)
    r1 = linalg.sqrtm(S1)
    w2 = np.trace(S1 + S2 - 2 * linalg.sqrtm(r1 @ S2 @ r1)).real
    assert bures_wasserstein(X, Y) == pytest.approx(math.sqrt(w2), rel=1e-9)


@pytest.mark.parametrize("fn", [tv_distance, js_distance, jsd, sym_kl, hellinger, bures_wasserstein])
def test_rotation_and_permutation_invariance(fn, rng):
    X, Y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    Q = stats.ortho_group.rvs(6, random_state=rng)
    assert fn(X, Y @ Q) == pytest.approx(fn(X, Y), rel=1e-9)
    assert fn(X, 3.7 * Y[:, ::-1]) == pytest.approx(fn(X, Y), rel=1e-9)


def test_not_invariant_to_offsets_or_unnormalised_scaling(rng):
    X, Y = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    assert tv_distance(X, Y + 2.0) != pytest.approx(tv_distance(X, Y), abs=1e-3)  # uncentred K
    assert sym_kl(X, 3.0 * Y, normalize=False) != pytest.approx(sym_kl(X, Y, normalize=False), abs=1e-3)


@pytest.mark.parametrize("fn", [tv_distance, js_distance])
def test_triangle_inequality_within_mc_error(fn, rng):
    for _ in range(3):
        A, B, C = (rng.normal(size=(12, 5)) for _ in range(3))
        (ac, s1), (ab, s2), (bc, s3) = (fn(P, Q, n_samples=20_000, return_se=True) for P, Q in
                                        ((A, C), (A, B), (B, C)))
        assert ac <= ab + bc + MC_Z * math.sqrt(s1**2 + s2**2 + s3**2)


def test_symmetric_within_mc_error(rng):
    X, Y = rng.normal(size=(15, 5)), rng.normal(size=(15, 3))
    a, sa = tv_distance(X, Y, return_se=True)
    b, sb = tv_distance(Y, X, return_se=True)
    assert abs(a - b) <= MC_Z * math.hypot(sa, sb)


def test_js_distance_is_sqrt_of_jsd_and_seeded(rng):
    X, Y = rng.normal(size=(15, 5)), rng.normal(size=(15, 3))
    assert js_distance(X, Y, seed=7) == pytest.approx(math.sqrt(jsd(X, Y, seed=7)), rel=1e-14)
    assert tv_distance(X, Y, seed=7) == tv_distance(X, Y, seed=np.random.Generator(np.random.SFC64(7)))
    assert tv_distance(X, Y, seed=7) != tv_distance(X, Y, seed=8)


def test_torch_path_matches_numpy_and_keeps_the_graph(rng):
    torch = pytest.importorskip("torch")
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(12, 6))
    Xt = torch.tensor(X, requires_grad=True)
    for fn in (tv_distance, jsd, js_distance):
        v = fn(Xt, torch.tensor(Y), n_samples=2000)
        assert v.requires_grad and v.ndim == 0
        assert float(v.detach()) == pytest.approx(fn(X, Y, n_samples=2000), rel=1e-12)
    est = js_distance(Xt, Y, n_samples=2000, return_se=True)  # mixed torch / numpy inputs
    est.value.backward()
    assert torch.isfinite(Xt.grad).all() and Xt.grad.abs().sum() > 0


@pytest.mark.parametrize("fn", [tv_distance, jsd, js_distance])
def test_gradcheck(fn):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    Y = torch.randn(5, 4, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda A: fn(A, Y, n_samples=300, seed=1), (X,))


def test_bad_input_raises_with_the_fix(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ZooscopeInputError, match="same examples"):
        tv_distance(X, X[:-1])
    with pytest.raises(ZooscopeInputError, match="b > 0"):
        sym_kl(X, X[:, :2], b=0.0)  # K has rank 3 < 10 rows
    with pytest.raises(ZooscopeInputError, match="'n_samples'"):
        jsd(X, X, n_samples=1)
    with pytest.raises(ZooscopeInputError, match="'b'"):
        tv_distance(X, X, b=-1.0)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ZooscopeInputError, match="NaN"):
        hellinger(X, bad)


def test_registered_metadata_is_honest():
    for name in ("tv_distance", "js_distance", "jsd"):
        m = get(name)
        assert m.stochastic and not m.larger_is_more_similar and m.bounds == (0.0, 1.0)
    assert get("tv_distance").is_metric and get("js_distance").is_metric and not get("jsd").is_metric
    assert not get("sym_kl").is_metric and get("hellinger").is_metric and get("bures_wasserstein").is_metric
    from zooscope.measures import Inv

    for name in ("tv_distance", "sym_kl", "bures_wasserstein"):
        assert Inv.TRANSLATION in get(name).not_invariant
        assert Inv.ORTHOGONAL in get(name).invariances
