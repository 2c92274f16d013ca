import numpy as np
import pytest
from scipy import optimize, stats

from zooscope._validation import ZooscopeInputError
from zooscope.measures import MEASURES
from zooscope.measures.transfer import h_score, leep, logme, nce, transrate

EVIDENCE_TOL = 2e-3  # LogME stops when alpha/beta moves < 0.1 %: the evidence is then within ~1e-3 of the max


def _evidence(f, y, log_a, log_b):
    """Bayesian linear-regression log evidence / n, written directly from the D x D posterior (MacKay)."""
    n, d = f.shape
    a, b = np.exp(log_a), np.exp(log_b)
    A = a * np.eye(d) + b * f.T @ f
    m = b * np.linalg.solve(A, f.T @ y)
    _, logdet = np.linalg.slogdet(A)
    ev = (d / 2 * log_a + n / 2 * log_b - n / 2 * np.log(2 * np.pi) - b / 2 * np.sum((y - f @ m) ** 2)
          - a / 2 * m @ m - 0.5 * logdet)
    return ev / n


def _max_evidence(f, y):
    res = optimize.minimize(lambda t: -_evidence(f, y, *t), x0=[0.0, 0.0], method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 5000})
    return -res.fun


def test_logme_is_the_maximum_evidence(rng):
    f = rng.normal(size=(120, 6))
    y = (f[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int) + (f[:, 1] > 1)
    expected = np.mean([_max_evidence(f, (y == c).astype(float)) for c in range(3)])
    assert logme(f, y) == pytest.approx(expected, abs=EVIDENCE_TOL)


def test_logme_regression_is_the_maximum_evidence(rng):
    f = rng.normal(size=(80, 5))
    t = np.c_[f @ rng.normal(size=5) + 0.3 * rng.normal(size=80), rng.normal(size=80)]
    expected = np.mean([_max_evidence(f, t[:, j]) for j in range(2)])
    assert logme(f, t, regression=True) == pytest.approx(expected, abs=EVIDENCE_TOL)


def test_logme_prefers_informative_features_and_handles_wide_features(rng):
    y = np.repeat(np.arange(4), 25)
    good = np.eye(4)[y] + 0.2 * rng.normal(size=(100, 4))
    assert logme(good, y) > logme(rng.normal(size=(100, 4)), y)
    wide = rng.normal(size=(30, 200))  # n < d: the full SVD path
    assert np.isfinite(logme(wide, np.arange(30) % 3))


def test_logme_orthogonal_invariance(rng):
    f, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    Q = stats.ortho_group.rvs(5, random_state=1)
    assert logme(f @ Q, y) == pytest.approx(logme(f, y), rel=1e-9)


def _leep_loops(theta, y):
    n, nz = theta.shape
    k = y.max() + 1
    joint = np.zeros((nz, k))
    for i in range(n):
        for z in range(nz):
            joint[z, y[i]] += theta[i, z] / n
    cond = joint / joint.sum(1, keepdims=True)
    return np.mean([np.log(sum(cond[z, y[i]] * theta[i, z] for z in range(nz))) for i in range(n)])


def test_leep_matches_the_definition(rng):
    theta = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 3, size=50)
    assert leep(theta, y) == pytest.approx(_leep_loops(theta, y), rel=1e-12)


def test_leep_is_zero_for_a_one_to_one_source():
    theta = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert leep(theta, [2, 0, 1, 2, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_nce_bounds_and_definition(rng):
    z = np.repeat(np.arange(3), 20)
    assert nce(z, (z + 1) % 3) == 0.0  # the source label determines the target label
    y_indep = np.tile(np.arange(2), 30)  # independent of z, uniform
    assert nce(np.eye(3)[z] * 0.9 + 0.1 / 3, y_indep) == pytest.approx(-np.log(2), abs=1e-12)
    theta = rng.dirichlet(np.ones(4), size=40)
    y = rng.integers(0, 3, size=40)
    zh = theta.argmax(1)
    h = 0.0
    for zz in np.unique(zh):
        py = np.bincount(y[zh == zz], minlength=3) / np.sum(zh == zz)
        h -= np.mean(zh == zz) * sum(p * np.log(p) for p in py if p > 0)
    assert nce(theta, y) == pytest.approx(-h, rel=1e-12)


def test_h_score_without_shrinkage_matches_definition_and_is_linear_invariant(rng):
    f, y = rng.normal(size=(90, 4)), np.arange(90) % 3
    f[:, 0] += y
    g = np.stack([f[y == c].mean(0) for c in range(3)])[y]
    expected = np.trace(np.linalg.pinv(np.cov(f, rowvar=False)) @ np.cov(g, rowvar=False))
    assert h_score(f, y, shrinkage=None) == pytest.approx(expected, rel=1e-10)
    W = rng.normal(size=(4, 4))
    assert h_score(f @ W + 3.0, y, shrinkage=None) == pytest.approx(expected, rel=1e-8)


def test_h_score_shrinkage_is_stable_and_invariant(rng):
    f, y = rng.normal(size=(20, 50)), np.arange(20) % 2  # more features than samples: raw H-score blows up
    s = h_score(f, y)
    assert np.isfinite(s) and 0 <= s < 1
    Q = stats.ortho_group.rvs(50, random_state=2)
    assert h_score(3.0 * f @ Q + 1.0, y) == pytest.approx(s, rel=1e-8)
    assert h_score(f, y, shrinkage=1.0) == 0.0


def test_transrate_matches_definition_and_invariances(rng):
    f, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    f[:, 0] += 2 * y

    def rate(Z):
        return 0.5 * np.linalg.slogdet(np.eye(Z.shape[1]) + Z.T @ Z / (len(Z) * 1e-4))[1]

    Z = f - f.mean(0)
    expected = rate(Z) - np.mean([rate(Z[y == c]) for c in range(3)])
    assert transrate(f, y) == pytest.approx(expected, rel=1e-10)
    Q = stats.ortho_group.rvs(5, random_state=3)
    assert transrate(f @ Q + 5.0, y) == pytest.approx(expected, rel=1e-8)
    clusters = 3 * np.eye(3)[y] @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(60, 5))
    assert transrate(clusters, y) > transrate(clusters, rng.permutation(y)) + 1.0


@pytest.mark.parametrize("name", ["logme", "leep", "nce", "h_score", "transrate"])
def test_registered_with_other_inputs(name):
    m = MEASURES.get(name)
    assert m.inputs == "other" and m.larger_is_more_similar and not m.symmetric and not m.layerwise


@pytest.mark.parametrize("fn", [logme, h_score, transrate])
def test_feature_scores_validate_labels(fn, rng):
    f = rng.normal(size=(10, 3))
    with pytest.raises(ZooscopeInputError, match="at least 2 classes"):
        fn(f, np.zeros(10, int))
    with pytest.raises(ZooscopeInputError, match="shape"):
        fn(f, np.arange(9) % 2)
    with pytest.raises(ZooscopeInputError, match="integer"):
        fn(f, rng.normal(size=10))
    bad = f.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ZooscopeInputError, match="NaN"):
        fn(bad, np.arange(10) % 2)


@pytest.mark.parametrize("fn", [leep, nce])
def test_probability_scores_validate_inputs(fn, rng):
    with pytest.raises(ZooscopeInputError, match="softmax"):
        fn(rng.normal(size=(10, 3)), np.arange(10) % 2)
    with pytest.raises(ZooscopeInputError, match="shape"):
        fn(rng.dirichlet(np.ones(3), size=10), np.arange(8) % 2)
