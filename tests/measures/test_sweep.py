"""Bad-input sweep over every registered measure (issue 13, acceptance "a measure sweep").

Calls are built from the registry alone (``inputs`` and the parameter names of the signature), so a new
measure is swept with no extra work; a signature the builder does not know fails the test (extend ``_call``).
Each call with complex, meta, grad-requiring, constant-column, float16 or wide input must either return a
finite value within the measure's registered bounds or raise exactly one ZooscopeInputError.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zooscope import ZooscopeInputError
from zooscope.measures import MEASURES

KINDS = ["complex", "complex_torch", "meta", "grad", "grad_all", "constant_column", "all_constant", "float16",
         "float16_torch", "bfloat16_torch", "wide", "duplicate_columns", "clean",
         "labels_complex", "labels_meta", "labels_grad"]  # labels_*: the labels of label-taking measures
BOUND_SLACK = 1e-12


def _softmax(A: np.ndarray) -> np.ndarray:
    e = np.exp(A - A.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _spoil(A: np.ndarray, kind: str, rng: np.random.Generator):
    """``A`` made bad in one way (numpy or torch, as the kind says)."""
    A = A.copy()
    if kind == "complex":
        return A + 1j * rng.normal(size=A.shape)
    if kind == "complex_torch":
        return torch.from_numpy(A + 1j * rng.normal(size=A.shape))
    if kind == "meta":
        return torch.empty(A.shape, dtype=torch.float32, device="meta")
    if kind in ("grad", "grad_all"):
        return torch.tensor(A, requires_grad=True)
    if kind == "constant_column":
        A[:, rng.integers(A.shape[1])] = 0.25
        return A
    if kind == "all_constant":
        return np.full_like(A, 1.5)
    if kind == "float16":
        return A.astype(np.float16)
    if kind == "float16_torch":
        return torch.from_numpy(A).half()
    if kind == "bfloat16_torch":
        return torch.from_numpy(A).bfloat16()
    if kind == "duplicate_columns":
        return np.c_[A, A[:, :2]]
    return A  # "clean", "wide" (the shape is the spoiling)


def _call(name: str, kind: str, n: int, p: int, seed: int):
    """Build and run one call of ``name`` with a first array argument spoiled by ``kind``."""
    m = MEASURES.get(name)
    rng = np.random.default_rng(seed)
    n = max(n, 2 * m.min_samples, 12 if name == "transform_error" else 0)
    X = rng.normal(size=(n, p))
    Y = X @ rng.normal(size=(p, p)) + rng.normal(size=(n, p))
    spoil_all = kind == "grad_all"
    params = list(inspect.signature(m.fn).parameters)
    extra = {"n_samples": 300} if m.stochastic else {}
    if m.inputs == "features":
        a = _spoil(X, kind, rng)
        b = _spoil(Y, kind, rng) if spoil_all else Y
        return m(a, b, **extra)
    if m.inputs == "gram":
        K, L = X @ X.T, Y @ Y.T
        return m(_spoil(K, kind, rng), _spoil(L, kind, rng) if spoil_all else L)
    labels = np.arange(n) % 3
    if kind.startswith("labels_"):
        labels = {"labels_complex": labels + 0j,
                  "labels_meta": torch.empty(n, device="meta"),
                  "labels_grad": torch.tensor(labels, dtype=torch.float64, requires_grad=True)}[kind]
        kind = "clean"
    if params[:2] == ["features", "labels"]:
        return m(_spoil(X, kind, rng), labels)
    if params[:2] == ["source_probs", "labels"]:
        return m(_spoil(_softmax(X), kind, rng), labels)
    if params[:4] == ["F_a", "G_a", "F_b", "G_b"]:
        G = [rng.normal(size=(n, p)) for _ in range(2)]
        return m(_spoil(X, kind, rng), G[0], Y, G[1])
    pytest.fail(f"test_sweep does not know how to call {name}{inspect.signature(m.fn)}; extend _call")


def _number(value) -> float:
    v = getattr(value, "value", value)  # an MCEstimate
    if isinstance(v, torch.Tensor):
        assert v.numel() == 1, f"a measure returned a tensor of shape {tuple(v.shape)}"
        return float(v.detach())
    assert isinstance(v, float | int | np.floating), f"a measure returned {type(v).__name__}"
    return float(v)


@pytest.mark.parametrize("name", MEASURES.available())
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), n=st.integers(6, 30), p=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_bad_input_gives_a_valid_value_or_one_zooscope_input_error(name, kind, n, p, seed):
    if kind == "wide":
        n, p = max(n // 2, 3), 120 + 7 * p
    m = MEASURES.get(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings are allowed; silent wrong values are not
            value = _call(name, kind, n, p, seed)
    except ZooscopeInputError:
        return
    except Exception as e:  # the point of the sweep: any other exception fails
        pytest.fail(f"{name} with {kind} input (n={n}, p={p}) raised {type(e).__name__}: {e}")
    refused = ("complex", "complex_torch", "meta", "labels_complex", "labels_meta")
    if "labels" in inspect.signature(m.fn).parameters or not kind.startswith("labels_"):
        assert kind not in refused, f"{name} accepted {kind} input and returned {value!r}"
    v = _number(value)
    assert math.isfinite(v), f"{name} returned {v} for {kind} input"
    if m.bounds is not None and not any(o == "debiased" for o, *_ in m.bounds_by_option):
        lo, hi = m.bounds
        assert lo - BOUND_SLACK <= v <= hi + BOUND_SLACK, f"{name} returned {v} outside {m.bounds} ({kind})"


@pytest.mark.parametrize("name", ["nce", "leep", "logme", "linear_cka", "h_score"])
def test_grad_requiring_tensors_are_detached_not_refused(name, rng):
    """Issue 13: nce on a tensor that requires grad used to crash; non-differentiable measures detach."""
    n = 40
    X = rng.normal(size=(n, 4))
    m = MEASURES.get(name)
    if name in ("nce", "leep"):
        args = (_softmax(X), np.arange(n) % 2)
    elif m.inputs == "other":
        args = (X, np.arange(n) % 2)
    else:
        args = (X, X @ rng.normal(size=(4, 4)))
    want = m(*args)
    got = m(torch.tensor(args[0], requires_grad=True), torch.as_tensor(args[1]))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_differentiable_measures_keep_the_graph(rng):
    X = torch.tensor(rng.normal(size=(20, 3)), requires_grad=True)
    Y = torch.tensor(rng.normal(size=(20, 3)))
    d = MEASURES.get("jsd")(X, Y, n_samples=200)
    d.backward()
    assert X.grad is not None and torch.isfinite(X.grad).all()


def test_float16_is_upcast_not_truncated(rng):
    X = rng.normal(size=(30, 4)).astype(np.float16)
    Y = rng.normal(size=(30, 4)).astype(np.float16)
    want = MEASURES.get("linear_cka")(X.astype(np.float64), Y.astype(np.float64))
    assert MEASURES.get("linear_cka")(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(want, rel=1e-12)


def test_out_of_bounds_values_raise_instead_of_being_returned():
    from zooscope.measures._base import Inv, MeasureMeta, MeasureRegistry

    reg = MeasureRegistry("measure")
    meta = MeasureMeta(larger_is_more_similar=True, symmetric=True, invariances=Inv.NONE, bounds=(0.0, 1.0))

    @reg.register(meta, name="broken")
    def broken(X, Y, value=1.5):
        return value

    with pytest.raises(ZooscopeInputError, match=r"outside its bounds \[0.0, 1.0\]"):
        broken(None, None)
    with pytest.raises(ZooscopeInputError, match="NaN"):
        broken(None, None, value=float("nan"))
    assert broken(None, None, value=1.0 + 1e-12) == 1.0  # round-off is clipped onto the bound
    assert reg.get("broken")(None, None, value=0.5) == 0.5


def test_meta_and_complex_messages_say_what_to_do(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ZooscopeInputError, match="meta"):
        MEASURES.get("linear_cka")(torch.empty(10, 3, device="meta"), X)
    with pytest.raises(ZooscopeInputError, match="complex"):
        MEASURES.get("procrustes")(X + 1j, X)


def test_memory_cap_refuses_huge_unit_matching(monkeypatch):
    from zooscope import _validation

    monkeypatch.setattr(_validation, "MEMORY_CAP_BYTES", 10_000)
    X = np.random.default_rng(0).normal(size=(20, 30))
    with pytest.raises(ZooscopeInputError, match="MEMORY_CAP_BYTES"):
        MEASURES.get("mean_matched_correlation")(X, X[:, ::-1])
