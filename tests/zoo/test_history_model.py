"""zooscope.zoo.history_model: the model prior and the OBOE-style low-rank imputation, on planted matrices."""

from __future__ import annotations

import numpy as np
import pytest

from zooscope.zoo.history_model import impute_column, lowrank_factors, prior_scores, zscore_columns


def _planted(n_models: int = 12, n_datasets: int = 9, rank: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n_models, rank))
    B = rng.normal(size=(n_datasets, rank))
    return 0.7 + 0.05 * (A @ B.T)  # accuracies around 0.7, exactly rank 2 (+ a constant)


def test_zscore_columns_matches_scipy_and_keeps_nan():
    from scipy.stats import zscore

    R = _planted()
    R[3, 2] = np.nan
    Z = zscore_columns(R)
    assert np.isnan(Z[3, 2])
    np.testing.assert_allclose(Z[:, 0], zscore(R[:, 0]))
    np.testing.assert_allclose(Z[:, 2], zscore(R[:, 2], nan_policy="omit"), equal_nan=True)
    const = zscore_columns(np.array([[0.5, 1.0], [0.5, 2.0]]))
    assert const[:, 0].tolist() == [0.0, 0.0]


def test_prior_is_the_mean_z_score_and_nan_without_history():
    R = np.array([[0.9, 0.8], [0.7, 0.6], [0.8, np.nan], [np.nan, np.nan]])
    p = prior_scores(R)
    z0 = (R[:3, 0] - R[:3, 0].mean()) / R[:3, 0].std()
    z1 = (R[:2, 1] - R[:2, 1].mean()) / R[:2, 1].std()
    np.testing.assert_allclose(p[:3], [(z0[0] + z1[0]) / 2, (z0[1] + z1[1]) / 2, z0[2]])
    assert np.isnan(p[3])


@pytest.mark.parametrize("held_out", range(9))
def test_rank2_imputation_recovers_the_held_out_order_from_3_measured(held_out):
    from scipy.stats import kendalltau

    R = _planted()
    hist = np.delete(R, held_out, axis=1)
    truth = R[:, held_out]
    measured = {i: float(truth[i]) for i in (0, 5, 9)}
    pred = impute_column(hist, measured, rank=2, alpha=1e-9)
    np.testing.assert_allclose(pred, truth, atol=1e-6)
    assert kendalltau(pred, truth)[0] == pytest.approx(1.0)
    assert (np.argsort(pred) == np.argsort(truth)).all()


def test_rank2_imputation_with_missing_history_cells():
    R = _planted(n_models=15, n_datasets=10, seed=3)
    hist = R[:, 1:].copy()
    rng = np.random.default_rng(1)
    hist[rng.random(hist.shape) < 0.15] = np.nan  # 15 % of the history missing, like records.csv
    pred = impute_column(hist, {i: float(R[i, 0]) for i in (1, 4, 7, 11)}, rank=2, alpha=1e-9)
    assert np.corrcoef(pred, R[:, 0])[0, 1] > 0.99


def test_imputation_reads_only_the_history_and_the_measured_values():
    R = _planted()
    hist = R[:, 1:]
    measured = {0: float(R[0, 0]), 5: float(R[5, 0]), 9: float(R[9, 0])}
    a = impute_column(hist, measured)
    R2 = R.copy()
    R2[[1, 2, 3], 0] = [0.0, 1.0, 0.3]  # the unmeasured held-out cells change: the prediction must not
    b = impute_column(R2[:, 1:], measured)
    np.testing.assert_array_equal(a, b)
    assert [a[i] for i in measured] == list(measured.values())


def test_factors_span_the_planted_rank():
    R = _planted()
    F = lowrank_factors(R, rank=2)
    Z = zscore_columns(R)
    coef, *_ = np.linalg.lstsq(F, Z, rcond=None)
    np.testing.assert_allclose(F @ coef, Z, atol=1e-8)
    with pytest.raises(ValueError, match="rank"):
        lowrank_factors(R, rank=0)
    with pytest.raises(ValueError, match="2 measured"):
        impute_column(R, {0: 0.5})


def test_toward_prior_is_exact_on_a_planted_matrix_and_the_prior_order_when_shrunk_hard():
    from scipy.stats import spearmanr

    R = _planted()
    hist, truth = R[:, 1:], R[:, 0]
    measured = {i: float(truth[i]) for i in (0, 5, 9)}
    np.testing.assert_allclose(impute_column(hist, measured, alpha=1e-9, toward_prior=True), truth, atol=1e-6)
    shrunk = impute_column(hist, measured, alpha=1e9, toward_prior=True)
    free = [i for i in range(len(truth)) if i not in measured]
    assert spearmanr(shrunk[free], prior_scores(hist)[free])[0] == pytest.approx(1.0)
