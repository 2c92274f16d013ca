"""Seed 004: Mahalanobis diffusion maps, Nyström, geometric harmonics and NetworkTransform.

No reference code exists for Bertalan et al. 2020, so the oracles are closed forms (cosines on an
interval, exact distances for linear maps), limits (d^2 / ||dx||^2 -> 1) and constructed pairs of
equivalent / non-equivalent "networks".
"""

import numpy as np
import pytest
import torch
from scipy import stats

from zooscope import ZooscopeInputError
from zooscope.embed.covariances import burst_covariances, jacobian_covariances
from zooscope.measures import MEASURES, Inv
from zooscope.measures.diffusion import DiffusionMaps, GeometricHarmonics, NotFittedError
from zooscope.measures.geodesic import mahalanobis_geodesic_sq_distances
from zooscope.measures.mahalanobis import mahalanobis_sq_distances
from zooscope.measures.transform import NetworkTransform, relative_error, transform_error

torch.set_num_threads(1)

CORR_TOL = 0.99        # |corr| of a diffusion eigenvector with its closed form
EQUIV_THRESHOLD = 0.05  # NetworkTransform.is_equivalent default


def smooth_map_r2_r3(x):
    """A smooth embedding of R^2 in R^3 (torch, batch-wise)."""
    return torch.stack([x[:, 0] + 0.3 * torch.sin(2 * x[:, 1]),
                        x[:, 1] * torch.exp(0.3 * x[:, 0]),
                        torch.tanh(x[:, 0] * x[:, 1]) + x[:, 0] ** 2], dim=1)


def net_a(x):
    """'Network A': a gently curved embedding of t in [0, 1] into R^3."""
    t = x[:, 0]
    return torch.stack([t, 0.5 * torch.sin(np.pi * t), t**2], dim=1)


MIX = np.array([[1.0, 2.0, 0.5], [-0.5, 1.0, 3.0], [0.2, -1.0, 1.0]])  # invertible (det = 8.4)


def net_b_linear(x):
    """'Network B' = MIX . A + 1: equivalent to A."""
    return net_a(x) @ torch.as_tensor(MIX).T + 1.0


def net_b_squash(x):
    """'Network B' that folds t around 1/2: not invertible, so not equivalent to A."""
    t = x[:, 0]
    return torch.stack([(t - 0.5) ** 2, 0.3 * torch.cos(2 * np.pi * t)], dim=1)


def corr(a, b):
    return abs(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def scalar_nets():
    """Outputs and Jacobian covariances of A and both Bs on 300 train + 100 test inputs."""
    x = np.random.default_rng(4).uniform(0, 1, size=(400, 1))
    out = {}
    for name, fn in (("a", net_a), ("lin", net_b_linear), ("squash", net_b_squash)):
        out[name] = (fn(torch.as_tensor(x)).numpy(), jacobian_covariances(fn, x))
    return x, out


# --- Mahalanobis distances ---------------------------------------------------------------------------

def test_mahalanobis_ratio_tends_to_one_for_small_steps(rng):
    x = rng.uniform(-1, 1, size=(200, 2))
    deviations = []
    for h in (0.3, 0.1, 0.03):
        u = rng.normal(size=x.shape)
        x2 = x + h * u / np.linalg.norm(u, axis=1, keepdims=True)
        y1, y2 = smooth_map_r2_r3(torch.as_tensor(x)).numpy(), smooth_map_r2_r3(torch.as_tensor(x2)).numpy()
        D2 = mahalanobis_sq_distances(y1, jacobian_covariances(smooth_map_r2_r3, x),
                                      y2, jacobian_covariances(smooth_map_r2_r3, x2))
        deviations.append(np.median(np.abs(np.diag(D2) / h**2 - 1)))
    assert deviations[0] > deviations[1] > deviations[2]   # tightens as ||dx|| -> 0 (measured 0.02, 2e-3, 2e-4)
    assert deviations[2] < 1e-3


def test_mahalanobis_is_exact_for_a_linear_map(rng):
    x = rng.normal(size=(30, 2))
    A = rng.normal(size=(2, 5))                      # rank-2 observation of R^2 in R^5: C = A^T A has rank 2
    C = np.tile(A.T @ A, (30, 1, 1))
    D2 = mahalanobis_sq_distances(x @ A + 7.0, C)
    np.testing.assert_allclose(D2, ((x[:, None] - x[None]) ** 2).sum(-1),
                               rtol=1e-9, atol=1e-11)


def test_jacobian_covariances_of_a_float32_module_is_w_wt(rng):
    lin = torch.nn.Linear(3, 4).float()
    C = jacobian_covariances(lin, rng.normal(size=(5, 3)).astype(np.float32), batch_size=2)
    W = lin.weight.detach().double().numpy()
    assert C.shape == (5, 4, 4) and C.dtype == np.float64
    np.testing.assert_allclose(C, np.broadcast_to(W @ W.T, C.shape), rtol=1e-12, atol=1e-14)


def test_burst_covariances_estimate_the_jacobian_covariance(rng):
    x = rng.uniform(-1, 1, size=(4, 2))

    def f(xb):  # numpy black box
        return smooth_map_r2_r3(torch.as_tensor(xb)).numpy()

    Cb = burst_covariances(f, x, radius=1e-3, n_burst=2000, seed=1)
    Cj = jacobian_covariances(smooth_map_r2_r3, x)
    rel = np.linalg.norm(Cb - Cj, axis=(1, 2)) / np.linalg.norm(Cj, axis=(1, 2))
    assert rel.max() < 0.1                             # sampling error ~ sqrt(2 / n_burst) = 0.03
    again = burst_covariances(f, x, radius=1e-3, n_burst=2000, seed=1)
    np.testing.assert_array_equal(Cb, again)


# --- Diffusion maps and Nyström --------------------------------------------------------------------------

def test_uniform_interval_gives_cosines(rng):
    x = rng.uniform(0, 1, size=(400, 1))
    dm = DiffusionMaps(n_components=3, epsilon_scale=0.02).fit(x)
    for k in (1, 2, 3):
        assert corr(dm.eigenvectors_[:, k - 1], np.cos(k * np.pi * x[:, 0])) > CORR_TOL
    assert 1 > dm.eigenvalues_[0] > dm.eigenvalues_[1] > dm.eigenvalues_[2] > 0
    # phi_k are orthonormal in the stationary measure pi = d~ / sum(d~) and orthogonal to phi_0 = 1
    q = dm.kernel_degrees_
    d_tilde = (np.exp(-((x - x.T) ** 2) / dm.epsilon_) / np.outer(q, q)).sum(axis=1)
    pi = d_tilde / d_tilde.sum()
    phi = dm.eigenvectors_
    np.testing.assert_allclose(phi.T @ (pi[:, None] * phi), np.eye(3), atol=1e-9)
    np.testing.assert_allclose(pi @ phi, 0, atol=1e-9)
    assert (phi[np.abs(phi).argmax(axis=0), [0, 1, 2]] > 0).all()   # the sign convention


@pytest.mark.parametrize("metric", ["euclidean", "mahalanobis"])
def test_nystrom_at_training_points_reproduces_eigenvectors(metric, scalar_nets):
    _, nets = scalar_nets
    Y, C = nets["a"]
    cov = C if metric == "mahalanobis" else None
    dm = DiffusionMaps(n_components=4, metric=metric, epsilon_scale=0.1, diffusion_time=1.0)
    emb = dm.fit_transform(Y, covariances=cov)
    np.testing.assert_allclose(dm.transform(Y, covariances=cov), emb, atol=1e-10)
    np.testing.assert_allclose(emb, dm.eigenvectors_ * dm.eigenvalues_, rtol=1e-12)


def test_mahalanobis_diffusion_map_sees_the_input_geometry(scalar_nets):
    x, nets = scalar_nets
    eps = 0.004                                        # local: d^2 ~ ||dx||^2 only for nearby points
    phi_x = DiffusionMaps(n_components=2, epsilon=eps).fit(x).eigenvectors_
    for name in ("a", "lin"):
        Y, C = nets[name]
        phi = DiffusionMaps(n_components=2, metric="mahalanobis", epsilon=eps).fit(Y, covariances=C).eigenvectors_
        for k in (1, 2):
            assert corr(phi[:, k - 1], phi_x[:, k - 1]) > 0.999
            assert corr(phi[:, k - 1], np.cos(k * np.pi * x[:, 0])) > CORR_TOL


def test_precomputed_metric_equals_euclidean(rng):
    X = rng.normal(size=(40, 3))
    D2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    a = DiffusionMaps(n_components=2).fit(X)
    b = DiffusionMaps(n_components=2, metric="precomputed").fit(D2)
    np.testing.assert_allclose(a.eigenvectors_, b.eigenvectors_, atol=1e-9)
    Xn = rng.normal(size=(5, 3))
    np.testing.assert_allclose(a.transform(Xn), b.transform(((Xn[:, None] - X[None]) ** 2).sum(-1)), atol=1e-9)


def test_nystrom_is_stable_far_from_the_data(rng):
    X = rng.normal(size=(50, 2))
    out = DiffusionMaps(n_components=2, epsilon_scale=0.1).fit(X).transform([[1e3, 1e3]])
    assert np.isfinite(out).all()


def wiggly_net(x):
    """A strongly curved observation of t in [0, 1]: far arcs pass close to each other in R^3."""
    t = x[:, 0]
    return torch.stack([t, torch.sin(3 * np.pi * t) * t, torch.cos(2 * t) + t**2], dim=1)


def test_geodesic_distances_remove_shortcuts_of_the_pairwise_formula():
    x = np.random.default_rng(0).uniform(0, 1, size=(300, 1))
    Y, C = wiggly_net(torch.as_tensor(x)).numpy(), jacobian_covariances(wiggly_net, x)
    far = (x - x.T) ** 2 > 0.05
    pairwise = mahalanobis_sq_distances(Y, C)[far] / ((x - x.T) ** 2)[far]
    geodesic = mahalanobis_geodesic_sq_distances(Y, C, n_neighbors=10)[far] / ((x - x.T) ** 2)[far]
    assert np.quantile(pairwise, 0.05) < 0.2            # shortcuts: measured 5 % quantile 0.03
    assert np.quantile(geodesic, [0.01, 0.5, 0.99]) == pytest.approx([1, 1, 1], abs=0.1)  # 0.92, 1.00, 1.00
    phi = DiffusionMaps(n_components=2, metric="mahalanobis", n_neighbors=10).fit(Y, covariances=C).eigenvectors_
    for k in (1, 2):
        assert corr(phi[:, k - 1], np.cos(k * np.pi * x[:, 0])) > CORR_TOL


def test_geodesic_nystrom_reproduces_training_points(scalar_nets):
    _, nets = scalar_nets
    Y, C = nets["lin"]
    dm = DiffusionMaps(n_components=3, metric="mahalanobis", n_neighbors=12).fit(Y[:200], covariances=C[:200])
    np.testing.assert_allclose(dm.transform(Y[:200], covariances=C[:200]), dm.eigenvectors_, atol=1e-10)
    new = dm.transform(Y[200:], covariances=C[200:])
    assert np.isfinite(new).all() and new.shape == (200, 3)


def test_geodesic_graph_disconnected_says_what_to_do(rng):
    t = np.concatenate([np.linspace(0, 1, 20), np.linspace(5, 6, 20)])
    Y = np.column_stack([t, 2 * t])
    C = np.tile(np.outer([1.0, 2.0], [1.0, 2.0]), (40, 1, 1))
    with pytest.raises(ZooscopeInputError, match="Increase n_neighbors"):
        mahalanobis_geodesic_sq_distances(Y, C, n_neighbors=3)
    np.testing.assert_allclose(mahalanobis_geodesic_sq_distances(Y, C, n_neighbors=25), (t[:, None] - t) ** 2,
                               rtol=1e-9, atol=1e-12)   # a straight line: the path length is exact


# --- Geometric harmonics -----------------------------------------------------------------------------

def test_geometric_harmonics_extend_a_smooth_function(rng):
    x = np.sort(rng.uniform(0, 1, size=80))[:, None]
    F = np.column_stack([np.sin(3 * x[:, 0]), np.exp(x[:, 0])])
    gh = GeometricHarmonics(delta=1e-8).fit(x, F)
    xt = rng.uniform(0.05, 0.95, size=(50, 1))
    pred = gh.predict(xt)
    assert pred.shape == (50, 2)
    assert np.abs(pred - np.column_stack([np.sin(3 * xt[:, 0]), np.exp(xt[:, 0])])).max() < 1e-4
    assert gh.predict(xt[:3]).shape == (3, 2)
    assert GeometricHarmonics().fit(x, F[:, 0]).predict(xt).shape == (50,)


def test_geometric_harmonics_delta_trades_accuracy_for_fewer_eigenpairs(rng):
    x = rng.uniform(0, 1, size=(60, 1))
    f = np.sin(6 * x[:, 0])
    coarse, fine = GeometricHarmonics(delta=1e-2).fit(x, f), GeometricHarmonics(delta=1e-10).fit(x, f)
    assert len(coarse.eigenvalues_) < len(fine.eigenvalues_)
    assert np.all(coarse.eigenvalues_ > 1e-2 * fine.eigenvalues_[0])
    err = [np.abs(g.predict(x) - f).max() for g in (coarse, fine)]
    assert err[1] < err[0]


# --- NetworkTransform -------------------------------------------------------------------------------------

def _fit_score(nets, b, **kw):
    (ya, ca), (yb, cb) = nets["a"], nets[b]
    tr, te = slice(0, 300), slice(300, 400)
    nt = NetworkTransform(metric="mahalanobis", **kw).fit(ya[tr], yb[tr], covariances_a=ca[tr], covariances_b=cb[tr])
    return nt, nt.score(ya[te], yb[te], covariances_a=ca[te])


def test_invertible_linear_pair_is_recovered(scalar_nets):
    _, nets = scalar_nets
    nt, err = _fit_score(nets, "lin")
    assert err < EQUIV_THRESHOLD                      # measured 6e-4 (n_components=3, 300 points)
    assert nt.is_equivalent() and nt.score_ == err
    assert nt.coordinate_agreement_.min() > 0.999
    ya = nets["a"][0][300:]                           # T acts as y -> MIX y + 1 on held-out points
    pred = nt.transform(ya, covariances_a=nets["a"][1][300:])
    assert relative_error(pred, ya @ MIX.T + 1.0) == pytest.approx(err, rel=1e-9)


def test_squashing_pair_is_not_equivalent(scalar_nets):
    _, nets = scalar_nets
    nt, err = _fit_score(nets, "squash")
    assert err > 0.3                                  # measured 0.42
    assert not nt.is_equivalent()
    assert not nt.is_equivalent(threshold=0.3)
    assert nt.coordinate_agreement_.min() < 0.9


def test_align_none_only_needs_a_function(scalar_nets):
    _, nets = scalar_nets
    # regressing y_B on Psi_A directly: the fold is a smooth function of A, so it is reconstructed
    _, err = _fit_score(nets, "squash", align="none")
    assert err < EQUIV_THRESHOLD


def test_sklearn_conventions(scalar_nets):
    _, nets = scalar_nets
    nt = NetworkTransform(n_components=2, align="sign", delta=1e-4)
    assert vars(nt) == {"n_components": 2, "metric": "euclidean", "align": "sign", "epsilon_scale": None,
                        "alpha": 1.0, "delta": 1e-4, "rank": None, "rcond": 1e-10, "n_neighbors": 10}
    ya, yb = nets["a"][0][:100], nets["lin"][0][:100]
    assert nt.fit(ya, yb) is nt
    assert nt.alignment_.shape == (2, 2) and np.allclose(np.abs(nt.alignment_), np.eye(2))
    with pytest.raises(NotFittedError, match="not fitted"):
        NetworkTransform().transform(ya)
    with pytest.raises(NotFittedError):
        DiffusionMaps().transform(ya)
    with pytest.raises(ZooscopeInputError, match="call score"):
        nt.is_equivalent()


# --- the registered measure --------------------------------------------------------------------------

def test_transform_error_is_registered_with_honest_metadata():
    m = MEASURES.get("transform_error")
    assert m.larger_is_more_similar is False and not m.symmetric
    assert Inv.ORTHOGONAL in m.invariances and Inv.INVERTIBLE_LINEAR in m.not_invariant


def test_transform_error_small_for_similar_curve_large_for_noise(rng):
    t = rng.uniform(0, 1, size=(160, 1))
    X = np.hstack([np.cos(2 * t), np.sin(2 * t), t**2])
    Q = stats.ortho_group.rvs(3, random_state=1)
    small = transform_error(X, 2.5 * X @ Q - 4)
    large = transform_error(X, rng.normal(size=(160, 3)))
    assert small < EQUIV_THRESHOLD < 1 < large
    assert isinstance(small, float)


@pytest.mark.parametrize("inv", [Inv.TRANSLATION, Inv.ISOTROPIC_SCALE, Inv.ORTHOGONAL, Inv.PERMUTATION])
def test_transform_error_invariances_on_both_sides(inv, rng):
    X = rng.normal(size=(60, 8))
    Y = X @ rng.normal(size=(8, 8)) + rng.normal(size=(60, 8))
    g = {Inv.TRANSLATION: lambda A: A + 10 * rng.normal(size=(1, 8)), Inv.ISOTROPIC_SCALE: lambda A: 3.7 * A,
         Inv.ORTHOGONAL: lambda A: A @ stats.ortho_group.rvs(8, random_state=rng),
         Inv.PERMUTATION: lambda A: A[:, rng.permutation(8)]}[inv]
    before = transform_error(X, Y)
    assert transform_error(g(X), Y) == pytest.approx(before, rel=1e-8)
    assert transform_error(X, g(Y)) == pytest.approx(before, rel=1e-8)


def test_transform_error_is_seeded(rng):
    X = rng.normal(size=(40, 3))
    Y = np.tanh(X)
    assert transform_error(X, Y, seed=3) == transform_error(X, Y, seed=3)
    assert transform_error(X, Y, seed=3) != transform_error(X, Y, seed=4)


# --- bad input ------------------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(rng):
    X = rng.normal(size=(30, 3))
    C = np.tile(np.eye(3), (30, 1, 1))
    with pytest.raises(ZooscopeInputError, match="n_components \\+ 2"):
        DiffusionMaps(n_components=29).fit(X)
    with pytest.raises(ZooscopeInputError, match="needs covariances"):
        DiffusionMaps(metric="mahalanobis").fit(X)
    with pytest.raises(ZooscopeInputError, match="only used with metric='mahalanobis'"):
        DiffusionMaps().fit(X, covariances=C)
    with pytest.raises(ZooscopeInputError, match="Did you mean 'mahalanobis'"):
        DiffusionMaps(metric="mahalanobi").fit(X)
    with pytest.raises(ZooscopeInputError, match=r"\(0, inf\)"):
        DiffusionMaps(epsilon=-1.0).fit(X)
    with pytest.raises(ZooscopeInputError, match="alpha"):
        DiffusionMaps(alpha=2.0).fit(X)
    with pytest.raises(ZooscopeInputError, match="coincide"):
        DiffusionMaps().fit(np.vstack([np.repeat(X[:1], 25, axis=0), X[1:6]]))
    with pytest.raises(ZooscopeInputError, match=r"\(30, 3, 3\)"):
        mahalanobis_sq_distances(X, C[:, :2, :2])
    with pytest.raises(ZooscopeInputError, match="NaN"):
        DiffusionMaps().fit(np.where(np.arange(90).reshape(30, 3) == 7, np.nan, X))
    dm = DiffusionMaps().fit(X)
    with pytest.raises(ZooscopeInputError, match="fitted with 3"):
        dm.transform(X[:, :2])
    with pytest.raises(ZooscopeInputError, match="same examples"):
        NetworkTransform().fit(X, X[:-1])
    with pytest.raises(ZooscopeInputError, match="needs covariances_a"):
        NetworkTransform(metric="mahalanobis").fit(X, X)
    with pytest.raises(ZooscopeInputError, match="test_size"):
        transform_error(X, X, test_size=1.5)
    with pytest.raises(ZooscopeInputError, match="at least 12"):
        transform_error(X[:11], X[:11])
    with pytest.raises(ZooscopeInputError, match="callable"):
        jacobian_covariances("net", X)
    with pytest.raises(ZooscopeInputError, match="reshape"):
        jacobian_covariances(net_a, np.zeros(5))
    with pytest.raises(ZooscopeInputError, match="n_burst"):
        burst_covariances(np.tanh, X, radius=0.1, n_burst=1)
