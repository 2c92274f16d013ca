"""Property tests (hypothesis): valid input of any shape, scale, offset and dtype never gives a NaN."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from zooscope.measures import (
    MinibatchCKA,
    cca,
    cka,
    linear_cka,
    linear_cka_matrix,
    nbs,
    procrustes,
    pwcca,
    rbf_cka,
    svcca,
)

COPY_TOL = 1e-4  # float32 input: CKA of a shifted, scaled copy is 1 to float32 precision
SLACK = 1e-9


@settings(max_examples=60, deadline=None)
@given(X=arrays(np.float32, (32, 6), elements=st.floats(-1, 1, width=32)),
       shift=st.floats(-1e4, 1e4), log_scale=st.floats(-6, 6))
def test_linear_cka_is_one_for_shifted_scaled_copies(X, shift, log_scale):
    assume(np.ptp(X, axis=0).max() > 1e-2)
    Y = (10.0**log_scale * (X + shift)).astype(np.float32)
    assume(np.ptp(Y, axis=0).max() > 0)
    assert linear_cka(X, Y) == pytest.approx(1.0, abs=COPY_TOL)
    assert linear_cka_matrix([X], [Y])[0, 0] == pytest.approx(1.0, abs=COPY_TOL)


def _data(seed, n, p, log_scale, shift, f32):
    rng = np.random.default_rng(seed)
    X = 10.0**log_scale * rng.normal(size=(n, p)) + shift * rng.uniform(0.5, 1.0, size=(1, p))
    return X.astype(np.float32) if f32 else X


shapes = dict(seed=st.integers(0, 2**31), n=st.integers(4, 40), px=st.integers(1, 50), py=st.integers(1, 50),
              log_scale=st.floats(-6, 6), shift=st.floats(-1e4, 1e4), f32=st.booleans())


@settings(max_examples=60, deadline=None)
@given(**shapes)
def test_feature_measures_are_finite_and_in_bounds(seed, n, px, py, log_scale, shift, f32):
    # valid input: the spread survives rounding (float32 keeps ~7 digits: spread >= 1e-4 of the offset)
    assume(10.0 ** min(log_scale, log_scale / 2) >= (1e-4 if f32 else 1e-10) * abs(shift))
    X = _data(seed, n, px, log_scale, shift, f32)
    Y = _data(seed + 1, n, py, log_scale / 2, -shift, f32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CCA with p > n warns, by design
        values = {
            "linear": (linear_cka(X, Y), 0.0, 1.0),
            "linear_deb": (linear_cka(X, Y, debiased=True), -1.0, 1.0),
            "rbf": (rbf_cka(X, Y, threshold=0.5), 0.0, 1.0),
            "rbf_deb": (rbf_cka(X, Y, debiased=True), -1.0, 1.0),
            "cca": (cca(X, Y), 0.0, 1.0),
            "svcca": (svcca(X, Y), 0.0, 1.0),
            "pwcca": (pwcca(X, Y), 0.0, 1.0),
            "procrustes": (procrustes(X, Y), 0.0, np.pi / 2),
            "matrix": (linear_cka_matrix([X], [Y])[0, 0], 0.0, 1.0),
        }
    for name, (v, lo, hi) in values.items():
        assert np.isfinite(v) and lo - SLACK <= v <= hi + SLACK, name


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(4, 40), px=st.integers(1, 30), py=st.integers(1, 30),
       log_scale=st.floats(-3, 3), rel_shift=st.floats(-10, 10))
def test_gram_measures_are_finite_and_in_bounds(seed, n, px, py, log_scale, rel_shift):
    X = _data(seed, n, px, log_scale, rel_shift * 10.0**log_scale, False)
    Y = _data(seed + 1, n, py, -log_scale, rel_shift * 10.0**-log_scale, False)
    K, L = X @ X.T, Y @ Y.T
    for name, v, lo, hi in (("cka", cka(K, L), 0, 1), ("cka_deb", cka(K, L, debiased=True), -1, 1),
                            ("nbs", nbs(K, L), 0, 1)):
        assert np.isfinite(v) and lo - SLACK <= v <= hi + SLACK, name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), sizes=st.lists(st.integers(4, 24), min_size=1, max_size=4),
       widths=st.lists(st.integers(1, 40), min_size=1, max_size=3), shift=st.floats(-1e4, 1e4),
       log_scale=st.floats(-4, 4), f32=st.booleans())
def test_minibatch_cka_is_finite_and_bounded(seed, sizes, widths, shift, log_scale, f32):
    assume(10.0**log_scale >= (1e-4 if f32 else 1e-10) * abs(shift))
    acc = MinibatchCKA(len(widths))
    for k, B in enumerate(sizes):
        acts = [_data(seed + 7 * k + j, B, p, log_scale, shift, f32) for j, p in enumerate(widths)]
        assume(all(np.ptp(a, axis=0).max() > 0 for a in acts))
        acc.update(acts)
    C = acc.result()
    assert np.isfinite(C).all() and np.abs(C).max() <= 1 + SLACK
    np.testing.assert_allclose(np.diag(C), 1.0, atol=1e-9)
