"""Procrustes and NBS: metric axioms, invariances, and the identities that tie them to CCA and xfer."""

import json

import numpy as np
import pytest
from scipy import linalg, stats

from zooscope import ZooscopeInputError
from zooscope.measures import cca_rho, gram_rbf, nbs, procrustes, procrustes_gram
from zooscope.measures.kernels import center_gram

TOL = 1e-10
SEED_A_NBS_TOL = 1e-7  # oracles README, seed A: NBS on saved kernels


@pytest.fixture
def xy(rng):
    X = rng.normal(size=(50, 7))
    return X, np.tanh(X @ rng.normal(size=(7, 5))) + 0.5 * rng.normal(size=(50, 5))


def test_procrustes_is_zero_under_rotation_scale_and_offset(xy, rng):
    X, _ = xy
    Q = stats.ortho_group.rvs(7, random_state=rng)
    assert procrustes(X, X @ Q) == pytest.approx(0.0, abs=TOL)
    assert procrustes(X, 0.01 * X @ Q + rng.normal(size=(1, 7))) == pytest.approx(0.0, abs=TOL)
    assert procrustes(X, np.hstack([X @ Q, np.zeros((50, 3))])) == pytest.approx(0.0, abs=TOL)  # zero padding


def test_procrustes_is_positive_under_a_general_linear_map_where_cca_is_blind(xy, rng):
    X, _ = xy
    W = rng.normal(size=(7, 7))
    assert procrustes(X, X @ W) > 0.05
    assert cca_rho(X, X @ W) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_triangle_inequality(seed):
    rng = np.random.default_rng(seed)
    A, B, C = (rng.normal(size=(31, 30)) for _ in range(3))
    B = A + 0.5 * B  # not all distances near the same value
    d = procrustes
    for x, y, z in ((A, B, C), (A, C, B), (B, A, C)):
        assert d(x, z) <= d(x, y) + d(y, z) + 1e-9
    narrow = rng.normal(size=(31, 4))  # different widths: zero-padding keeps it a metric
    assert d(A, narrow) <= d(A, B) + d(B, narrow) + 1e-9


def test_procrustes_of_whitened_data_is_arccos_mean_cosine_of_principal_angles(xy):
    # For zero-mean representations with orthonormal columns (same width), ‖QxᵀQy‖_* / (‖Qx‖‖Qy‖) is the
    # mean of the singular values of QxᵀQy = mean cos of the principal angles = ρ̄ of the original data.
    X, Y = xy
    Y = np.hstack([Y, Y[:, :2] ** 2])  # same width (7) as X
    Qx, _ = np.linalg.qr(X - X.mean(0))
    Qy, _ = np.linalg.qr(Y - Y.mean(0))
    mean_cos = np.mean(np.cos(linalg.subspace_angles(Qx, Qy)))
    assert procrustes(Qx, Qy) == pytest.approx(np.arccos(mean_cos), abs=TOL)
    assert procrustes(Qx, Qy) == pytest.approx(np.arccos(cca_rho(X, Y)), abs=TOL)
    assert procrustes(X, Y) != pytest.approx(procrustes(Qx, Qy), abs=1e-3)  # not for raw X, Y


@pytest.mark.parametrize("shape", [(40, 6, 9), (12, 30, 25)])  # tall and wide (p > n)
def test_procrustes_equals_arccos_nbs_of_linear_grams(rng, shape):
    n, px, py = shape
    X = rng.normal(size=(n, px))
    Y = X[:, :1] + rng.normal(size=(n, py))
    theta = procrustes(X, Y)
    assert 0.0 < theta <= np.pi / 2
    assert theta == pytest.approx(np.arccos(nbs(X @ X.T, Y @ Y.T)), abs=TOL)
    assert theta == pytest.approx(procrustes_gram(X @ X.T, Y @ Y.T), abs=TOL)
    assert procrustes(Y, X) == pytest.approx(theta, abs=TOL)


def _xfer_nbs(K1, K2):
    """amzn/xfer SimIndex.nbs as the oracle README states it (non-symmetric eigvals, real parts)."""
    def c(K):
        return K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()
    K1c, K2c = c(K1), c(K2)
    ev = np.linalg.eigvals(K1c @ K2c)
    return np.sum(np.sqrt(np.clip(ev.real, 0, None))) / np.sqrt(np.trace(K1c) * np.trace(K2c))


def test_nbs_equals_the_xfer_formula(xy):
    X, Y = xy
    full_rank = ((gram_rbf(X), gram_rbf(Y, 0.5)), (gram_rbf(X, 2.0), gram_rbf(Y) + 0.3 * gram_rbf(X)))
    for K, L in full_rank:
        assert nbs(K, L) == pytest.approx(_xfer_nbs(K, L), abs=1e-10)
        assert nbs(K, L) == pytest.approx(nbs(L, K), abs=1e-12)
        assert 0.0 <= nbs(K, L) <= 1.0
    # Rank-deficient linear Grams: xfer's formula adds sqrt(round-off) ~1e-8 per null eigenvalue; ours
    # zeroes those (and equals cos(procrustes) to 1e-10, see above), so only ~1e-7 agreement is expected.
    K, L = X @ X.T, Y @ Y.T + 1.0
    assert nbs(K, L) == pytest.approx(_xfer_nbs(K, L), abs=1e-6)


def test_nbs_on_seed_a_saved_kernels(data_dir):
    ref = json.loads((data_dir / "seedA_xfer_gradsim.json").read_text())
    for case in ("M64_T1", "M128_T2"):
        K1 = np.load(data_dir / f"seedA_kernels_net1_{case}.npy").astype(np.float64)
        K2 = np.load(data_dir / f"seedA_kernels_net2_{case}.npy").astype(np.float64)
        expected = ref["cases"][case]["float64_kernels"]["nbs"]["net1_vs_net2"]
        for i, j in ((0, 0), (3, 7), (10, 11), (11, 2), (5, 5)):
            assert nbs(K1[i], K2[j]) == pytest.approx(expected[i][j], abs=SEED_A_NBS_TOL)


def test_nbs_invariances_and_identity(xy, rng):
    X, Y = xy
    Q = stats.ortho_group.rvs(5, random_state=rng)
    before = nbs(X @ X.T, Y @ Y.T)
    for Y2 in (Y @ Q, 4.2 * Y, Y + rng.normal(size=(1, 5))):
        assert nbs(X @ X.T, Y2 @ Y2.T) == pytest.approx(before, abs=TOL)
    assert nbs(X @ X.T, X @ X.T) == pytest.approx(1.0, abs=TOL)
    K = gram_rbf(X)
    assert nbs(K, 3.0 * center_gram(K)) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize(("call", "match"), [
    (lambda X, Y: procrustes(X, Y[:-1]), "same examples"),
    (lambda X, Y: procrustes(X, np.full_like(Y, 3.0)), "same for every example"),
    (lambda X, Y: nbs(X @ X.T, np.ones((50, 50))), "zero trace"),
    (lambda X, Y: nbs(X @ X.T, Y[:-1] @ Y[:-1].T), "same examples"),
    (lambda X, Y: nbs(X, X), "square"),
    (lambda X, Y: procrustes_gram(X @ X.T, np.where(Y @ Y.T > 3, np.nan, 0.0)), "NaN or Inf"),
])
def test_bad_input_raises_one_clear_error(call, match, xy):
    with pytest.raises(ZooscopeInputError, match=match):
        call(*xy)
