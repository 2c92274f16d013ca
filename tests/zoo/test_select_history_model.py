"""Issue 20 acceptance: the query-time history model never reads the target's own results, the active refinement
recovers a planted rank-2 column from 3 measured models, and a saturated default member is named in ``why``."""

import numpy as np
import pandas as pd
import pytest

from zooscope.zoo import history as hist
from zooscope.zoo.select.explain import why
from zooscope.zoo.select.fusion import robust_zmean
from zooscope.zoo.select.history import history_matrix, lowrank_history
from zooscope.zoo.select.refine import choose, noisy_reorder, reestimate


def _planted(n_models=12, n_past=6, seed=0):
    """A rank-2 results matrix with column-centred model factors, and one more column from the same factors."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_models, 2))
    U -= U.mean(axis=0)
    V = rng.normal(size=(n_past + 1, 2))
    R = 0.7 + 0.05 * U @ V.T
    models = [f"m{i:02d}" for i in range(n_models)]
    return pd.DataFrame(R[:, :n_past], index=models, columns=[f"d{j}" for j in range(n_past)]), \
        pd.Series(R[:, n_past], index=models)


def _records(R, target=None, poison=None):
    rows = [(m, d, "accuracy", float(v)) for d in R.columns for m, v in R[d].items()]
    if target is not None:
        rows += [(m, target, "accuracy", float(v)) for m, v in poison.items()]
    return pd.DataFrame(rows, columns=["model", "dataset", "metric", "value"])


def _fit(recorded, target, models, score):
    """What select's history computes from the recorded results (the score-profile weights fixed to 1)."""
    prior, _ = hist.history_prior(recorded, target, models, "accuracy")
    return lowrank_history(history_matrix(recorded, target, models), score, prior["prior"])


def test_history_never_reads_a_result_recorded_on_the_target():
    R, _ = _planted()
    models = list(R.index)
    score = pd.Series(np.linspace(0, 1, len(models)), index=models)
    clean = _fit(_records(R), "tgt", models, score)
    # results recorded on the target itself, planted to flip the order: they must change nothing
    poison = pd.Series(np.linspace(1, 0, len(models)) * 100, index=models)
    leaked = _fit(_records(R, "tgt", poison), "tgt", models, score)
    assert "tgt" not in history_matrix(_records(R, "tgt", poison), "tgt", models).columns
    pd.testing.assert_series_equal(clean, leaked)
    # and the same results DO change the model when they are another dataset's (the test can fail)
    other = _fit(_records(R, "other", poison), "tgt", models, score)
    assert not np.allclose(clean.to_numpy(), other.to_numpy())


def test_refinement_recovers_a_planted_rank2_column_from_3_measured_models():
    R, held_out = _planted()
    order = list(R.index)  # the default's order (arbitrary here)
    picked = choose(order, 3, R)
    assert len(set(picked)) == 3 and picked[0] == order[0]
    # noise-free planted data: the unshrunk projection (the shipped REFIT_ALPHA shrinks toward the prior)
    est = reestimate(order, {m: float(held_out[m]) for m in picked}, R, alpha=1e-3)
    assert list(est.sort_values().index) == list(held_out.sort_values().index)
    # with zero noise tolerance the accepted order is the planted column's
    assert noisy_reorder(order, est, noise=0.0) == list(held_out.sort_values(ascending=False).index)


def test_reorder_needs_more_than_the_seed_noise():
    est = pd.Series({"a": 0.80, "b": 0.81, "c": 0.90})
    assert noisy_reorder(["a", "b", "c"], est, noise=0.02) == ["c", "a", "b"]
    assert noisy_reorder(["a", "b", "c"], est, noise=0.2) == ["a", "b", "c"]


def test_without_history_only_the_measured_models_get_an_estimate():
    est = reestimate(["a", "b", "c"], {"a": 0.5, "b": 0.7}, None)
    assert est["a"] == 0.5 and est["b"] == 0.7 and np.isnan(est["c"])
    assert choose(["a", "b", "c"], 2, None) == ["a", "b"]


def test_a_member_dropped_for_saturation_is_named_in_why():
    table = pd.DataFrame({"model": ["a", "b", "c", "d"], "logme": [0.1, 0.4, 0.3, 0.2],
                          "knn": [1.0, 1.0, 1.0, 0.9], "trained_on": [None] * 4}, index=list("abcd"))
    fused, dropped = robust_zmean(table, ["logme", "knn"])
    assert list(dropped) == ["knn"] and "saturated" in dropped["knn"]
    # the saturated member contributes nothing: the fused order is LogME's
    assert list(fused.sort_values().index) == list(table["logme"].sort_values().index)
    empty = pd.DataFrame({"prior": np.nan, "n_past": 0}, index=table.index)
    text = why(table, "a", ["logme", "knn"], empty, {}, True, set(), dropped)
    assert "dropped on this target: k-NN (saturated: 3 of 4 models tie at 1)" in text


def test_robust_zmean_ignores_one_outlier_model():
    t = pd.DataFrame({"s": [1.0, 2.0, 3.0, 4.0, 1e6]})
    fused, dropped = robust_zmean(t, ["s"])
    assert not dropped and fused.iloc[-1] == pytest.approx(3.0)
    assert list(fused.rank()) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_past_dataset_weights_average_profile_and_task2vec_similarity():
    from zooscope.zoo.select.history import combine_similarities

    got = combine_similarities({"p": 0.2, "q": 0.6, "r": 1.0}, {"p": 0.8, "q": 0.0})
    assert got == pytest.approx({"p": 0.5, "q": 0.3, "r": 1.0})  # r: no task vector, profile alone
