"""The registry guard's float-range rules (issue 19, F13): power-of-two rescaling of scale-free arguments,
non-finite values refused, and errors that name the measure. The registry-wide probe is in
tests/test_contract_measures.py (``extreme_scales``); these pin down the mechanism itself."""

import math

import numpy as np
import pytest
import torch

import zooscope as zs
from zooscope import ZooscopeInputError
from zooscope.measures._base import SAFE_EXP, Inv, MeasureMeta, MeasureRegistry, _rescale


def test_rescale_is_exact_and_leaves_ordinary_data_alone(rng):
    X = rng.normal(size=(20, 5))
    assert _rescale(X) is X  # inside [2^-32, 2^32]: no copy
    for s in (1e300, 1e-300, 2.0**40, 2.0**-40):
        Z = _rescale(X * s)
        assert 0.5 <= np.abs(Z).max() < 1.0
        ratio = Z / (X * s)  # one power of two for every entry: exact
        assert np.all(ratio == ratio.flat[0]) and math.frexp(ratio.flat[0])[0] == 0.5
    assert _rescale(np.zeros((3, 3))).max() == 0.0
    bad = X * 1e300
    bad[0, 0] = np.inf
    assert _rescale(bad) is bad  # non-finite data is left to the measure's own NaN/Inf check
    ints = np.arange(6).reshape(3, 2)
    assert _rescale(ints) is ints


def test_rescale_keeps_torch_tensors_and_their_graph():
    X = (torch.randn(10, 3, dtype=torch.float64) * 1e250).requires_grad_()
    Z = _rescale(X)
    assert isinstance(Z, torch.Tensor) and Z.requires_grad and 0.5 <= float(Z.detach().abs().max()) < 1.0
    Z.sum().backward()
    factor = float(Z[0, 0].detach() / X[0, 0].detach())
    assert factor > 0 and math.frexp(factor)[0] == 0.5 and torch.all(X.grad == factor)
    Y = torch.randn(10, 3) * 1e30  # float32: the factor 2**-100 must not underflow in float32 arithmetic
    assert 0.5 <= float(_rescale(Y).abs().max()) < 1.0


def test_safe_window_covers_grams_and_their_squares():
    # a Gram of 10^4 features at the window's edge, and the squared Frobenius norm of its 10^4 x 10^4 square
    big = (2.0**SAFE_EXP) ** 2 * 1e4
    assert math.isfinite((big**2) * 1e8) and math.isfinite(big**4)


@pytest.mark.parametrize("s", [1e200, 1e-200, 1e300, 1e-300])
def test_procrustes_and_svcca_keep_their_values_at_the_float_range_ends(rng, s):
    # the numbers: procrustes went to 0, svcca from 0.567 to 0.187
    X = rng.normal(size=(50, 6))
    Y = X @ rng.normal(size=(6, 6)) + rng.normal(size=(50, 6))
    for name in ("procrustes", "svcca", "mean_matched_correlation", "hellinger", "bhattacharyya", "nbs"):
        m = zs.measures.get(name)
        args = (X @ X.T, Y @ Y.T) if m.inputs == "gram" else (X, Y)
        assert m(*(a * s for a in args)) == pytest.approx(m(*args), rel=1e-9), name


def test_option_that_gives_up_scale_invariance_turns_rescaling_off(rng):
    X = rng.normal(size=(40, 5))
    Y = X + rng.normal(size=(40, 5))
    hel = zs.measures.get("hellinger")
    # normalize=False: b is an absolute ridge, so the value depends on the scale (no silent rescaling)
    assert abs(hel(X * 0.1, Y * 0.1, normalize=False) - hel(X, Y, normalize=False)) > 1e-3
    assert hel(X * 1e3, Y * 1e3) == pytest.approx(hel(X, Y), rel=1e-9)


def test_kernel_euclidean_overflow_is_refused_naming_it(rng):
    X = rng.normal(size=(20, 4))
    with pytest.raises(ZooscopeInputError, match="kernel_euclidean overflowed"):
        zs.measures.kernel_euclidean(X @ X.T * 1e300, 2 * X @ X.T * 1e300)


def test_ncti_refuses_features_whose_variance_overflows(rng):
    f = rng.normal(size=(30, 4)) * 1e200
    with pytest.raises(ZooscopeInputError, match="ncti"):
        zs.measures.ncti(f, np.arange(30) % 3)


def _toy_registry(body):
    reg = MeasureRegistry("measure")
    reg.register(MeasureMeta(larger_is_more_similar=True, symmetric=True, invariances=Inv.NONE,
                             reference="test"), name="toy")(body)
    return reg.get("toy")


def test_errors_inside_a_measure_name_it():
    def raises_linalg(X, Y):
        """toy"""
        raise np.linalg.LinAlgError("SVD did not converge")

    with pytest.raises(ZooscopeInputError, match=r"^toy failed on these inputs \(LinAlgError: SVD did not conv"):
        _toy_registry(raises_linalg)(np.ones((3, 2)), np.ones((3, 2)))

    def raises_input(X, Y):
        """toy"""
        raise ZooscopeInputError("K is constant after centring")

    with pytest.raises(ZooscopeInputError, match=r"^toy: K is constant after centring$"):
        _toy_registry(raises_input)(np.ones((3, 2)), np.ones((3, 2)))

    def has_a_bug(X, Y):
        """toy"""
        return [][0]

    with pytest.raises(IndexError) as info:  # a bug keeps its type (not disguised as bad input), with context
        _toy_registry(has_a_bug)(np.ones((3, 2)), np.ones((3, 2)))
    assert any("toy" in note for note in info.value.__notes__)


def test_infinite_value_is_refused():
    def inf(X, Y):
        """toy"""
        return float("inf")

    with pytest.raises(ZooscopeInputError, match=r"^toy overflowed to inf"):
        _toy_registry(inf)(np.ones((3, 2)), np.ones((3, 2)))


def test_memory_error_is_a_one_line_input_error_naming_the_measure():
    def too_big(X, Y):
        """toy"""
        raise MemoryError("Unable to allocate 7.28 TiB for an array with shape (1000000, 1000000)")

    with pytest.raises(ZooscopeInputError, match=r"^toy needs more memory .* \(minibatch_cka\)\.$"):
        _toy_registry(too_big)(np.ones((3, 2)), np.ones((3, 2)))
