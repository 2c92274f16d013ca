"""Oracle seed D: convergent_learning (YixuanLi @ 2ab72f8) match_unit.py / estimate_mi.py / notebook values."""

import json

import numpy as np
import pytest

from zooscope.measures import (
    bipartite_match,
    follow_loops,
    mi_matrix,
    mutual_information,
    percentile_bins,
    semi_match,
    unit_correlations,
)

ATOL = 1e-12  # README: totals and MI values to 1e-12; assignments and orders exactly


@pytest.fixture(scope="module")
def oracle(data_dir):
    return json.loads((data_dir / "seedD_convergent.json").read_text())


@pytest.fixture(scope="module")
def acts(data_dir):
    return np.load(data_dir / "seedD_acts_A.npy"), np.load(data_dir / "seedD_acts_B.npy")


@pytest.fixture(scope="module")
def xcorr(data_dir):
    return np.load(data_dir / "seedD_xcorr.npy")


@pytest.fixture(scope="module")
def mi_pct(acts):
    return mi_matrix(*acts, bias="none")


def test_unit_correlations_match_corrcoef(acts, xcorr):
    A, B = acts
    np.testing.assert_allclose(unit_correlations(A, B), xcorr, atol=ATOL)
    batches = [(A[s:s + 300], B[s:s + 300]) for s in range(0, 2000, 300)]  # streamed, uneven last batch
    np.testing.assert_allclose(unit_correlations([a for a, _ in batches], [b for _, b in batches]), xcorr,
                               atol=ATOL)


def _check_matching(r, ref):
    assert r.order.tolist() == ref["order_networkx(max_match_order)"] == ref["order_munkres(max_match_order_m)"]
    assert r.total == pytest.approx(ref["total_networkx"], abs=ATOL)
    assert r.mean == pytest.approx(ref["mean_networkx"], abs=ATOL)
    loops = ref["follow_loops(order_networkx)"]
    assert follow_loops(r.order) == (loops["order"], loops["lengths"])


@pytest.mark.parametrize("ignore_diag", [False, True])
def test_correlation_matching(oracle, xcorr, ignore_diag):
    _check_matching(bipartite_match(xcorr, ignore_diag=ignore_diag),
                    oracle["correlation_matching"][f"ignore_diag={ignore_diag}"])


def test_correlation_matching_recovers_the_hidden_permutation(oracle, xcorr):
    hidden = np.array(oracle["inputs"]["hidden_permutation_B_j_uses_latent"])
    assert bipartite_match(xcorr).order.tolist() == np.argsort(hidden).tolist()  # 24 / 24


def _check_semi(s, ref):
    assert s.argmax_rows.tolist() == ref["argmax_rows"]
    np.testing.assert_allclose(s.max_rows, ref["max_rows"], atol=ATOL)
    assert s.mean_max_rows == pytest.approx(ref["mean_max_rows"], abs=ATOL)
    assert s.argmax_cols.tolist() == ref["argmax_cols(B->A)"]
    assert s.mean_max_cols == pytest.approx(ref["mean_max_cols"], abs=ATOL)
    assert s.n_distinct_targets == ref["n_distinct_targets_rows"]
    assert s.overlap_ratio == pytest.approx(ref["overlap_ratio_greedy_vs_max_matching"], abs=ATOL)


def test_semi_matching(oracle, xcorr):
    _check_semi(semi_match(xcorr), oracle["correlation_matching"]["semi_matching"])


def test_example_pair_bins_and_mi(oracle, acts):
    A, B = acts
    ex = oracle["mi"]["example_pair"]
    i, j = ex["pair(i,j)"]
    np.testing.assert_allclose(percentile_bins(A[:, i]), ex["x_edges"], atol=ATOL)
    np.testing.assert_allclose(percentile_bins(B[:, j]), ex["y_edges"], atol=ATOL)
    h = np.histogram2d(A[:, i], B[:, j], bins=(percentile_bins(A[:, i]), percentile_bins(B[:, j])))[0]
    assert h.astype(int).tolist() == ex["hist2d"]
    assert mutual_information(A[:, i], B[:, j], bias="none") == pytest.approx(ex["mi"], abs=ATOL)
    assert mutual_information(A[:, i], B[:, j]) == pytest.approx(ex["mi_less_bias"], abs=ATOL)
    assert ex["mi"] - ex["mi_less_bias"] == pytest.approx(0.0360674, abs=1e-7)  # 100 / (2 · 2000 · ln 2)


@pytest.mark.parametrize(("binning", "key", "total"), [("percentile", "percentile_bins10", 16.912573586643877),
                                                       ("uniform", "uniform_bins10", 13.252540923331969)])
def test_mi_matrices(oracle, acts, binning, key, total):
    ref = oracle["mi"][key]
    raw = mi_matrix(*acts, binning=binning, bias="none")
    np.testing.assert_allclose(raw, ref["mi"], atol=ATOL)
    np.testing.assert_allclose(mi_matrix(*acts, binning=binning), ref["mi_less_bias"], atol=ATOL)
    assert raw.sum() == pytest.approx(total, abs=1e-11)  # a sum of 576 values, each to 1e-16


@pytest.mark.parametrize("ignore_diag", [False, True])
def test_mi_matching(oracle, mi_pct, ignore_diag):
    ref = oracle["mi"]["mi_matching(percentile_bins10, mi)"]
    _check_matching(bipartite_match(mi_pct, ignore_diag=ignore_diag), ref[f"ignore_diag={ignore_diag}"])


def test_mi_semi_matching(oracle, mi_pct):
    _check_semi(semi_match(mi_pct), oracle["mi"]["mi_matching(percentile_bins10, mi)"]["semi_matching"])
