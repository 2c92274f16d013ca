"""Seed 003 (Li, Yosinski et al.): unit correlations, matchings, MI, sparse prediction, spectral groups."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from zooscope import ZooscopeInputError
from zooscope.measures import (
    Inv,
    UnitCorrelation,
    bipartite_match,
    cycles,
    follow_loops,
    get,
    mean_matched_correlation,
    mi_matrix,
    mutual_information,
    percentile_bins,
    semi_match,
    sparse_prediction,
    spectral_groups,
    unit_correlations,
    units_as_samples,
)

EXACT = 1e-12


def _relu_layer(rng, n=400, units=8):
    return np.maximum(rng.normal(size=(n, units)) @ rng.normal(size=(units, units)), 0) + 1e-3 * rng.random((n, units))


def test_permuted_scaled_copy_is_recovered_exactly(rng):
    A = _relu_layer(rng)
    perm = rng.permutation(A.shape[1])
    B = A[:, perm] * rng.uniform(0.5, 3.0, size=A.shape[1]) + rng.normal(size=A.shape[1])
    C = unit_correlations(A, B)
    inv = np.argsort(perm)  # A unit i sits in column inv[i] of B
    r = bipartite_match(C)
    assert r.order.tolist() == inv.tolist()
    np.testing.assert_allclose(r.values, 1.0, atol=EXACT)
    s = semi_match(C)
    assert s.argmax_rows.tolist() == inv.tolist() and s.overlap_ratio == 1.0
    assert mean_matched_correlation(A, B) == pytest.approx(1.0, abs=EXACT)


@pytest.mark.parametrize("n", range(2, 8))
@pytest.mark.parametrize("ignore_diag", [False, True])
def test_bipartite_agrees_with_brute_force(n, ignore_diag, rng):
    C = rng.normal(size=(n, n))
    perms = [p for p in itertools.permutations(range(n)) if not (ignore_diag and any(i == j for i, j in
                                                                                     enumerate(p)))]
    best = max(perms, key=lambda p: sum(C[i, j] for i, j in enumerate(p)))
    r = bipartite_match(C, ignore_diag=ignore_diag)
    assert r.total == pytest.approx(sum(C[i, j] for i, j in enumerate(best)), abs=EXACT)
    assert r.order.tolist() == list(best)  # continuous random scores: the optimum is unique
    if ignore_diag:
        assert not np.any(r.rows == r.cols)


def test_rectangular_matching_uses_min_units(rng):
    C = rng.normal(size=(3, 5))
    r = bipartite_match(C)
    assert r.values.size == 3 and len(set(r.cols.tolist())) == 3
    best = max(itertools.permutations(range(5), 3), key=lambda p: sum(C[i, j] for i, j in enumerate(p)))
    assert r.total == pytest.approx(sum(C[i, j] for i, j in enumerate(best)), abs=EXACT)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n_a=st.integers(1, 6), extra=st.integers(0, 3))
def test_semi_total_is_at_least_bipartite_total(data, n_a, extra):
    # every A unit is matched when n_a <= n_b, and its best partner scores at least its matched one
    C = data.draw(arrays(np.float64, (n_a, n_a + extra), elements=st.floats(-1, 1, allow_nan=False)))
    assert semi_match(C).total >= bipartite_match(C).total - 1e-12


def test_semi_match_statistics():
    C = np.array([[0.9, 0.2, 0.1], [0.8, 0.3, 0.0], [0.1, 0.2, 0.7]])
    s = semi_match(C)
    assert s.argmax_rows.tolist() == [0, 0, 2] and s.n_distinct_targets == 2
    assert s.mean_max_rows == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert s.argmax_cols.tolist() == [0, 1, 2] and s.mean_max_cols == pytest.approx((0.9 + 0.3 + 0.7) / 3)
    assert s.overlap_ratio == pytest.approx(2 / 3)  # bipartite: 0→0, 1→1, 2→2


def test_cycles_and_follow_loops():
    order = [2, 0, 1, 3, 5, 4]
    assert cycles(order) == [[0, 2, 1], [3], [4, 5]]
    assert follow_loops(order) == ([0, 2, 1, 3, 4, 5], [3, 1, 2])
    with pytest.raises(ZooscopeInputError, match="permutation"):
        cycles([0, 0, 1])


def test_streamed_correlations_equal_corrcoef_with_large_offsets(rng):
    A = rng.normal(size=(300, 5)) + 1e6  # E[ab] − E[a]E[b] would lose every digit here
    B = A[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(300, 4)) - 3e5
    expected = np.corrcoef((A - 1e6).T, (B + 3e5).T)
    acc = UnitCorrelation()
    for s in range(0, 300, 70):
        acc.update(A[s:s + 70], B[s:s + 70])
    assert acc.n_ == 300
    np.testing.assert_allclose(acc.joint(), expected, atol=1e-9)
    np.testing.assert_allclose(unit_correlations(list(A.reshape(3, 100, 5)), list(B.reshape(3, 100, 4))),
                               expected[:5, 5:], atol=1e-9)


def test_conv_maps_use_every_position_as_a_sample(rng):
    torch = pytest.importorskip("torch")
    A = rng.normal(size=(6, 4, 3, 5))
    B = np.maximum(A[:, [2, 0, 3, 1]], 0) + 0.01 * rng.normal(size=A.shape)
    flat_a = A.transpose(0, 2, 3, 1).reshape(-1, 4)
    flat_b = B.transpose(0, 2, 3, 1).reshape(-1, 4)
    np.testing.assert_array_equal(units_as_samples(torch.tensor(A)), flat_a)
    np.testing.assert_allclose(unit_correlations(torch.tensor(A), B), np.corrcoef(flat_a.T, flat_b.T)[:4, 4:],
                               atol=1e-12)
    with pytest.raises(ZooscopeInputError, match="same spatial positions"):
        unit_correlations(A, B[:, :, :2])
    with pytest.raises(ZooscopeInputError, match="ambiguous"):
        unit_correlations(A[:, :, 0], B[:, :, 0])


def test_dead_units_get_zero_correlation(rng):
    A = rng.normal(size=(50, 3))
    B = np.column_stack([A[:, 0], np.zeros(50)])
    C = unit_correlations(A, B)
    assert np.all(C[:, 1] == 0.0) and C[0, 0] == pytest.approx(1.0)


def test_mean_matched_correlation_declared_invariances(rng):
    X = _relu_layer(rng, n=200, units=6)
    Y = X @ rng.normal(size=(6, 6)) + rng.normal(size=(200, 6))
    base = mean_matched_correlation(X, Y)
    assert mean_matched_correlation(X, Y[:, ::-1] * 2.5 + 7.0) == pytest.approx(base, abs=EXACT)
    Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    assert mean_matched_correlation(X, Y @ Q) != pytest.approx(base, abs=1e-3)
    m = get("mean_matched_correlation")
    assert Inv.ORTHOGONAL in m.not_invariant and Inv.PERMUTATION | Inv.TRANSLATION in m.invariances


def test_mi_is_zero_for_independent_units(rng):
    a, b = rng.random(20_000), rng.random(20_000)
    assert abs(mutual_information(a, b, bias="miller_madow")) < 3e-3
    assert mutual_information(a, b, bias="none") > 0  # the plug-in estimate is biased upwards
    ref = mutual_information(a, b)  # reference correction: Bx·By / (2 n ln 2)
    assert ref == pytest.approx(mutual_information(a, b, bias="none") - 100 / (2 * 20_000 * math.log(2)))


def test_mi_of_a_monotone_bijection_is_the_binning_entropy(rng):
    a = rng.random(10_000)
    assert mutual_information(a, 2 * a + 1, binning="uniform", bias="none") == pytest.approx(math.log(10),
                                                                                           rel=2e-3)
    # percentile bins: a zero bin + 9 equally filled bins; 10% zeros make all 10 bins equally filled
    relu = np.maximum(rng.normal(size=10_000) + 1.2816, 0)
    counts = np.histogram(relu, percentile_bins(relu))[0]
    p = counts[counts > 0] / counts.sum()
    got = mutual_information(relu, relu**3 + relu, bias="none")  # increasing, keeps the zeros
    assert got == pytest.approx(-np.sum(p * np.log(p)), abs=EXACT)
    assert got == pytest.approx(math.log(10), rel=5e-3)


def test_mi_binning_matches_numpy_histogram2d(rng):
    A = np.maximum(rng.normal(size=(500, 3)), 0)
    B = np.maximum(A @ rng.normal(size=(3, 2)), 0)
    M = mi_matrix(A, B, bias="none")
    for i, j in itertools.product(range(3), range(2)):
        h = np.histogram2d(A[:, i], B[:, j], bins=(percentile_bins(A[:, i]), percentile_bins(B[:, j])))[0]
        p = h / h.sum()
        outer = np.outer(p.sum(1), p.sum(0))
        assert M[i, j] == pytest.approx(np.sum(p[p > 0] * np.log(p[p > 0] / outer[p > 0])), abs=EXACT)


def test_mi_options_are_validated(rng):
    a = rng.random(50)
    with pytest.raises(ZooscopeInputError, match="Did you mean 'miller_madow'"):
        mutual_information(a, a, bias="miller-madow")
    with pytest.raises(ZooscopeInputError, match="'bins'"):
        mutual_information(a, a, bins=1)


def test_lasso_recovers_a_planted_sparse_map(rng):
    A = rng.normal(size=(600, 10))
    W = np.zeros((10, 4))
    W[[1, 7], 0], W[3, 1], W[[0, 5, 9], 2], W[4, 3] = (1.0, -1.5), 2.0, (1.0, 1.0, -1.0), 0.7
    B = A @ W + 0.05 * rng.normal(size=(600, 4))
    sp = sparse_prediction(A, B, alphas=[0.0, 0.02, 1.0])
    support = [set(np.flatnonzero(sp.coef[1, j])) for j in range(4)]
    assert support == [{1, 7}, {3}, {0, 5, 9}, {4}]
    assert sp.n_used[1].tolist() == [2, 1, 3, 1] and sp.n_used[0].tolist() == [10] * 4
    assert sp.n_used[2].tolist() == [0] * 4 and sp.loss[2] == pytest.approx(1.0)  # predicting 0 scores 1
    assert sp.loss[0] < sp.loss[1] < sp.loss[2]
    assert list(sp.to_frame().columns[:2]) == ["alpha", "loss"]


def test_lasso_at_zero_penalty_is_least_squares(rng):
    A, B = rng.normal(size=(200, 5)), rng.normal(size=(200, 3))
    Bs = (B - B.mean(0)) / B.std(0)
    design = np.hstack([np.ones((200, 1)), A])
    beta = np.linalg.lstsq(design, Bs, rcond=None)[0]
    sp = sparse_prediction(A, B, alphas=[0.0, 1e-9], standardize_inputs=False, tol=1e-12, max_iter=100_000)
    np.testing.assert_allclose(sp.coef[0], beta[1:].T, atol=1e-12)
    np.testing.assert_allclose(sp.coef[1], beta[1:].T, atol=1e-6)  # λ → 0
    assert sp.loss[0] == pytest.approx(np.mean((design @ beta - Bs) ** 2), rel=1e-12)


def test_lasso_validation_loss_uses_training_statistics(rng):
    A = rng.normal(size=(300, 4))
    B = A[:, :2] + 0.1 * rng.normal(size=(300, 2))
    sp = sparse_prediction(A[:200], B[:200], alphas=[0.01], validation=(A[200:], B[200:]))
    assert 0 < sp.loss[0] < 0.1


def test_spectral_groups_recover_planted_blocks(rng):
    from sklearn.metrics import adjusted_rand_score

    truth = np.repeat([0, 1, 2], [4, 3, 5])
    latent = rng.normal(size=(2000, 3))
    units = latent[:, truth] + 0.6 * rng.normal(size=(2000, truth.size))  # A's and B's units mixed together
    C = unit_correlations(units[:, :6], units[:, 6:], joint=True)
    labels = spectral_groups(C, 3, seed=0)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert adjusted_rand_score(truth, spectral_groups(C, 3, seed=0, affinity="shifted")) == 1.0
    with pytest.raises(ZooscopeInputError, match="'k'"):
        spectral_groups(C, 1)
