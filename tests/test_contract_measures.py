"""Contract tests generated from the registry: every registered measure is checked, with no extra work.

Driven only by metadata (STYLE.md §5): ``inputs == "features"`` is called as f(X, Y), ``inputs == "gram"``
as f(X Xᵀ, Y Yᵀ). Other input kinds, stochastic measures and non-layerwise ones are skipped with a reason.
"""

import inspect
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from zooscope import ZooscopeInputError
from zooscope.measures import MEASURES, Inv

sys.path.insert(0, str(Path(__file__).parent / "measures"))
import extreme_scales  # the one driver of the float-range probes (also benchmarks/faults.py)

INV_REL, INV_ABS = 1e-7, 1e-9  # declared invariances hold to round-off
NOT_INV_ABS = 1e-6  # a declared NON-invariance must move the value by more than this
BOUND_SLACK = 1e-12
TRIANGLE_SLACK = 1e-9

TRANSFORMS = {  # one generic member of each group, applied to Y
    Inv.TRANSLATION: lambda Y, rng: Y + 10 * rng.normal(size=(1, Y.shape[1])),
    Inv.ISOTROPIC_SCALE: lambda Y, rng: 3.7 * Y,
    Inv.ORTHOGONAL: lambda Y, rng: Y @ stats.ortho_group.rvs(Y.shape[1], random_state=rng),
    Inv.PERMUTATION: lambda Y, rng: Y[:, rng.permutation(Y.shape[1])],
    Inv.INVERTIBLE_LINEAR: lambda Y, rng: Y @ rng.normal(size=(Y.shape[1], Y.shape[1])),
}


def _entry_or_skip(name):
    m = MEASURES.get(name)
    if m.inputs not in ("features", "gram"):
        pytest.skip(f"{name}: inputs={m.inputs!r} cannot be driven generically from activations")
    if m.stochastic:
        pytest.skip(f"{name}: stochastic (Monte Carlo) - its own tests check it against an oracle")
    if not m.layerwise:
        pytest.skip(f"{name}: layerwise=False - not an f(X, Y) of two layers' activations")
    return m


def call(m, X, Y):
    """Gram-input measures get K = X Xᵀ, L = Y Yᵀ."""
    return m(X @ X.T, Y @ Y.T) if m.inputs == "gram" else m(X, Y)


def _pair(m, rng, noise=1.0):
    n = max(60, 2 * m.min_samples)
    X = rng.normal(size=(n, 8))
    Y = X @ rng.normal(size=(8, 8)) + noise * rng.normal(size=(n, 8))
    return X, Y


NAMES = MEASURES.available()


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_consistent(name):
    m = MEASURES.get(name)
    assert m.fn.__doc__ and m.fn.__doc__.strip(), f"{name} has no docstring"
    assert not (m.invariances & m.not_invariant), f"{name} claims both invariance and non-invariance"
    assert m.min_samples >= 1
    assert m.reference, f"{name}: give the paper or code the measure follows"
    if m.bounds is not None:
        assert m.bounds[0] < m.bounds[1]
    if m.is_metric:
        assert m.symmetric and not m.larger_is_more_similar, f"{name}: a metric is a symmetric distance"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("inv", list(TRANSFORMS), ids=lambda i: i.name)
def test_declared_invariance(name, inv, rng):
    m = _entry_or_skip(name)
    if inv not in m.invariances and inv not in m.not_invariant:
        pytest.skip(f"{name} makes no claim about {inv.name}")
    X, Y = _pair(m, rng)
    before, after = call(m, X, Y), call(m, X, TRANSFORMS[inv](Y, rng))
    if inv in m.invariances:
        assert after == pytest.approx(before, rel=INV_REL, abs=INV_ABS)
    else:
        assert after != pytest.approx(before, abs=NOT_INV_ABS)  # claims of NON-invariance are tested too


@pytest.mark.parametrize("name", NAMES)
def test_returns_a_finite_python_float(name, rng):
    m = _entry_or_skip(name)
    value = call(m, *_pair(m, rng))
    assert type(value) is float and math.isfinite(value)


@pytest.mark.parametrize("name", NAMES)
def test_torch_input_gives_the_numpy_value(name, rng):
    m = _entry_or_skip(name)
    X, Y = _pair(m, rng)
    want = call(m, X, Y)
    if m.inputs == "gram":
        got = m(torch.from_numpy(X @ X.T), torch.from_numpy(Y @ Y.T))
    else:
        got = m(torch.from_numpy(X), torch.from_numpy(Y))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_symmetry_where_declared(name, rng):
    m = _entry_or_skip(name)
    X, Y = _pair(m, rng)
    if not m.symmetric:
        assert call(m, X, Y) != pytest.approx(call(m, Y, X), abs=1e-9), f"{name} looks symmetric after all"
        return
    assert call(m, X, Y) == pytest.approx(call(m, Y, X), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_bounds_and_value_on_identical_inputs(name, rng):
    m = _entry_or_skip(name)
    X, Y = _pair(m, rng)
    Z = rng.normal(size=X.shape)  # unrelated
    if m.bounds is not None:
        lo, hi = m.bounds
        for A, B in ((X, Y), (X, Z), (X, X)):
            assert lo - BOUND_SLACK <= call(m, A, B) <= hi + BOUND_SLACK
        if m.larger_is_more_similar:
            assert call(m, X, X) == pytest.approx(hi, abs=1e-9), f"{name}(X, X) should be its maximum"
    if m.is_metric:  # identity of indiscernibles (other dissimilarities, e.g. held-out errors, need not be 0)
        assert call(m, X, X) == pytest.approx(0.0, abs=1e-7), f"{name}(X, X) should be 0"


@pytest.mark.parametrize("name", NAMES)
def test_direction_related_beats_unrelated(name, rng):
    m = _entry_or_skip(name)
    # 2-D latent manifolds seen in R^8 (what manifold-based measures need); the partners share X's scale,
    # so scale-sensitive measures are compared fairly too
    n = max(80, 2 * m.min_samples)
    def observe(Z):
        return np.tanh(Z @ rng.normal(size=(2, 8))) + 0.01 * rng.normal(size=(n, 8))
    Z = rng.normal(size=(n, 2))
    X = observe(Z)
    related = call(m, X, X + 0.03 * rng.normal(size=X.shape))
    unrelated = call(m, X, observe(rng.normal(size=(n, 2))))
    assert (related > unrelated) if m.larger_is_more_similar else (related < unrelated)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_zooscope_input_error(name, rng):
    m = _entry_or_skip(name)
    X, Y = _pair(m, rng)
    named = re.escape(name)  # every refusal names the measure (the registry guard adds it where missing)
    with pytest.raises(ZooscopeInputError, match=named):
        call(m, X, Y[:-1])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ZooscopeInputError, match=named):
        call(m, bad, Y)
    k = m.min_samples - 1
    if k >= 1:
        with pytest.raises(ZooscopeInputError, match=named):
            call(m, X[:k], Y[:k])


@pytest.mark.parametrize("name", NAMES)
def test_float_range_keeps_declared_scale_invariance_or_refuses_naming_the_measure(name):
    """Issue 19 F13: X·s, Y·s (Grams K·s, L·s; features·s of label scores; every gradient-kernel array·s) for
    s = 1e±200, 1e±300 -- the value at s equals the value at 1 where scale invariance is declared, else a finite
    float; or a one-line ZooscopeInputError naming the measure. Never another exception, NaN or inf."""
    probes = extreme_scales.probes(name)
    if not probes:
        pytest.skip(f"{name}: inputs={MEASURES.get(name).inputs!r} cannot be driven generically")
    ref = extreme_scales.reference(probes[0])
    assert ref is not None and math.isfinite(ref), f"{name} refused its own reference inputs at s = 1"
    failures = [f"s={p.scale:g}: {what}" for p in probes for ok, what in [extreme_scales.judge(p, ref)] if not ok]
    assert not failures, f"{name}: " + "; ".join(failures)


@pytest.mark.parametrize("name", [n for n in NAMES if MEASURES.get(n).is_metric])
@pytest.mark.parametrize("seed", range(3))
def test_triangle_inequality(name, seed):
    m = _entry_or_skip(name)
    rng = np.random.default_rng(seed)
    A, B, C = (rng.normal(size=(max(31, m.min_samples), 30)) for _ in range(3))
    B = A + 0.7 * B
    for x, y, z in ((A, B, C), (A, C, B), (B, A, C)):
        assert call(m, x, z) <= call(m, x, y) + call(m, y, z) + TRIANGLE_SLACK


# ------------------------------------------------- label-scored measures (transferability): driven by signature
#: transfer scores that read (features, labels) but by design ignore the labels (ETran's energy term): not "labelled"
LABEL_FREE = {"etran_energy"}
LABELLED = [n for n in NAMES if list(inspect.signature(MEASURES.get(n).fn).parameters)[:2] == ["features", "labels"]
            and n not in LABEL_FREE]


@pytest.mark.parametrize("name", sorted(LABEL_FREE))
def test_label_free_scores_ignore_the_labels(name, rng):
    f = rng.normal(size=(60, 5))
    y = np.arange(60) % 3
    assert MEASURES.get(name)(f, y) == MEASURES.get(name)(f, rng.permutation(y))


def _labelled_data(rng, sep=0.7, n=90, d=8, k=3):
    y = np.arange(n) % k
    return rng.normal(size=(n, d)) + sep * rng.normal(size=(k, d))[y], y


@pytest.mark.parametrize("name", LABELLED)
@pytest.mark.parametrize("inv", [i for i in TRANSFORMS if i is not Inv.INVERTIBLE_LINEAR], ids=lambda i: i.name)
def test_labelled_scores_declared_invariance(name, inv, rng):
    m = MEASURES.get(name)
    if inv not in m.invariances and inv not in m.not_invariant:
        pytest.skip(f"{name} makes no claim about {inv.name}")
    f, y = _labelled_data(rng)
    before, after = m(f, y), m(TRANSFORMS[inv](f, rng), y)
    if inv in m.invariances:
        assert after == pytest.approx(before, rel=1e-6, abs=1e-9)
    else:
        assert after != pytest.approx(before, abs=NOT_INV_ABS)


@pytest.mark.parametrize("name", LABELLED)
def test_labelled_scores_rank_planted_above_shuffled_within_bounds(name, rng):
    m = MEASURES.get(name)
    f, y = _labelled_data(rng, sep=2.0, n=120, d=10, k=4)
    good, bad = m(f, y), m(f, rng.permutation(y))
    assert type(good) is float and math.isfinite(good) and good > bad
    if m.bounds is not None:
        assert m.bounds[0] - BOUND_SLACK <= min(good, bad) <= max(good, bad) <= m.bounds[1] + BOUND_SLACK


@pytest.mark.parametrize("name", LABELLED)
def test_labelled_scores_refuse_one_class(name, rng):
    with pytest.raises(ZooscopeInputError, match="at least 2 classes"):
        MEASURES.get(name)(rng.normal(size=(20, 3)), np.zeros(20, int))
