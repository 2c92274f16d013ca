"""Every registered measure at the ends of the float range (issue 19, F13): one driver for the contract test
(``tests/test_contract_measures.py``) and the fault benchmark (``benchmarks/faults.py``, family *measures*).

Driven by the registry's metadata and signatures only, so a new measure is covered without extra work:

* two-representation measures (``inputs="features"``): ``f(X·s, Y·s)``;
* Gram measures (``inputs="gram"``): ``f(K·s, L·s)`` with ``K = XXᵀ, L = YYᵀ``;
* label-scored measures ``f(features, labels)``: ``f(features·s, labels)``; probability-scored ones
  ``f(source_probs, labels)``: ``f(probs·s, labels)`` (no longer probabilities: must be refused unless s is 1);
* gradient-kernel measures ``f(F_a, G_a, F_b, G_b)``: every array · s;

for s in :data:`SCALES`. A call *survives* when it keeps the measure's declared scale invariance (the value at
s equals the value at 1, to ``REL``) or, where it cannot, refuses with a :class:`ZooscopeInputError` whose one
line names the measure. A measure that declares no scale invariance survives with a finite float or that refusal.
Any other exception, a NaN/inf, or a changed value of a scale-invariant measure is a failure.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zooscope import ZooscopeInputError
from zooscope.measures import MEASURES, Inv

SCALES = (1e200, 1e-200, 1e300, 1e-300)
REL, ABS = 1e-6, 1e-9
MC_DRAWS = 400  # Monte Carlo measures: a fixed seed, so the value at s must equal the value at 1 exactly


@dataclass
class Probe:
    name: str
    scale: float
    call: Callable[[float], object]  # call(s) -> the measure's value at scale s (call(1.0) is the reference)
    invariant: bool  # the value must not depend on s


def _arrays(rng: np.random.Generator, n: int = 60, p: int = 8):
    X = rng.normal(size=(n, p))
    Y = X @ rng.normal(size=(p, p)) + rng.normal(size=(n, p))
    return X, Y


def probes(name: str, seed: int = 19) -> list[Probe]:
    """The calls of :data:`SCALES` for measure ``name`` (empty when its inputs cannot be driven generically)."""
    m = MEASURES.get(name)
    params = list(inspect.signature(m.fn).parameters)
    rng = np.random.default_rng(seed)
    n = max(60, 2 * m.min_samples)
    X, Y = _arrays(rng, n)
    kw = {"n_samples": MC_DRAWS} if m.stochastic and "n_samples" in params else {}
    inv = Inv.ISOTROPIC_SCALE in m.invariances
    if params[:2] == ["features", "labels"]:
        labels = np.arange(n) % 3
        feats = X + 1.5 * rng.normal(size=(3, X.shape[1]))[labels]
        call = lambda s: m(feats * s, labels, **kw)  # noqa: E731
    elif params[:2] == ["source_probs", "labels"]:
        labels = np.arange(n) % 3
        P = rng.dirichlet(np.ones(4), size=n)
        call = lambda s: m(P * s, labels, **kw)  # noqa: E731
        inv = False
    elif params[:4] == ["F_a", "G_a", "F_b", "G_b"]:
        G_a, G_b = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
        call = lambda s: m(X * s, G_a * s, Y * s, G_b * s, **kw)  # noqa: E731
    elif m.inputs == "gram":
        K, L = X @ X.T, Y @ Y.T
        call = lambda s: m(K * s, L * s, **kw)  # noqa: E731
    elif m.inputs == "features":
        call = lambda s: m(X * s, Y * s, **kw)  # noqa: E731
    else:
        return []
    return [Probe(name, s, call, inv) for s in SCALES]


def judge(probe: Probe, reference: float | None) -> tuple[bool, str]:
    """(survived, what happened) for one probe; ``reference`` is the value at s = 1 (None if that failed)."""
    try:
        out = probe.call(probe.scale)
    except ZooscopeInputError as e:
        msg = str(e)
        ok = probe.name in msg and "\n" not in msg.strip()
        return ok, f"refused: {msg[:160]}" if ok else f"refused without naming the measure: {msg[:160]}"
    except Exception as e:  # the point is to see every other kind
        return False, f"{type(e).__name__}: {str(e)[:160]}"
    v = float(getattr(out, "value", out))
    if not math.isfinite(v):
        return False, f"returned {v}"
    if probe.invariant and reference is not None and not math.isclose(v, reference, rel_tol=REL, abs_tol=ABS):
        return False, f"{reference:.6g} -> {v:.6g}"
    return True, f"{v:.6g}"


def reference(probe: Probe) -> float | None:
    try:
        return float(getattr(v := probe.call(1.0), "value", v))
    except ZooscopeInputError:
        return None


def run_all(names: list[str] | None = None) -> list[tuple[Probe, bool, str]]:
    """Every probe of every measure: [(probe, survived, what happened)]."""
    rows = []
    for name in names or MEASURES.available():
        ps = probes(name)
        ref = reference(ps[0]) if ps else None
        rows += [(p, *judge(p, ref)) for p in ps]
    return rows


if __name__ == "__main__":
    for p, ok, what in run_all():
        print(f"{'ok  ' if ok else 'FAIL'} {p.name:26s} {p.scale:8.0e}  {what}")
