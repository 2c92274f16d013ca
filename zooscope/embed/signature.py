"""CKA signatures: one unit vector per (model, layer) whose inner products are CKA values.

On a fixed set of probe inputs (n examples) a layer's activations X (n, p) give the Gram matrix K = X Xᵀ. With
H = I − 11ᵀ/n, linear CKA is (Kornblith et al. 2019, eq. 4)

    CKA(K, L) = ⟨HKH, HLH⟩_F / (‖HKH‖_F ‖HLH‖_F),

so the **signature** s = vec(HKH) / ‖HKH‖_F (length n²) of each layer is a unit vector and
⟨s_a, s_b⟩ = linear CKA of the two layers, exactly. The debiased variant replaces H·K·H by the U-centred Gram
U(K) (Székely & Rizzo 2014; Song et al. 2012): ⟨U(K), U(L)⟩ / (‖U(K)‖ ‖U(L)‖) is debiased CKA.

Stored form: the full n² vector in float32. Rounding each entry to float32 moves an inner product of two unit
vectors by at most ~n²·2⁻²⁴·max|s_i s_j| ≤ 2⁻²⁴ ≈ 6e-8 when the dot product is accumulated in float64, so float32
is ample for n ≤ 1024 (4 MiB per layer at n = 1024; 1 MiB at the default n = 512).

For the FAISS index the stored form is reduced by a seeded Johnson–Lindenstrauss projection
(`zooscope.measures.sketch.jl_project` with ``kind="rademacher"``): P has i.i.d. ±1/√d entries (Achlioptas 2003).
For one unit vector w, Pr[|‖Pw‖² − 1| > ε] ≤ 2·exp(−d(ε²/2 − ε³/3)/2);
applying it to u + v and u − v and using ⟨u, v⟩ = (‖u+v‖² − ‖u−v‖²)/4 gives, for unit u, v,

    Pr[ |⟨Pu, Pv⟩ − ⟨u, v⟩| > ε ] ≤ δ   whenever   d ≥ 2·ln(4/δ) / (ε²/2 − ε³/3)   (≈ 4·ln(4/δ)/ε²),

i.e. C ≈ 4 in "d ≥ C·log(1/δ)/ε²". ``jl_epsilon(d, δ)`` inverts it: d = 256, δ = 0.01 gives ε ≈ 0.35 (the typical
error is much smaller, about √((1 + ⟨u,v⟩²)/d) ≈ 0.06–0.09). The index only proposes candidates; the zoo re-ranks
them exactly from the stored form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, as_matrix, check_finite, check_not_constant
from zooscope.embed._kinds import EMBEDDINGS, EmbeddingMeta
from zooscope.measures.kernels import u_center

__all__ = [
    "cka_signature",
    "gram_signature",
    "jl_dim",
    "jl_epsilon",
    "signature_similarity",
]

def gram_signature(X: npt.ArrayLike, *, debiased: bool = False) -> np.ndarray:
    """Return the CKA signature of one layer: vec(centred Gram) / ‖centred Gram‖_F.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Activations of one layer on the probe inputs (flatten each example first).
    debiased : bool, default=False
        U-centre instead of H·K·H, so inner products are debiased CKA (needs n >= 4).

    Returns
    -------
    ndarray of shape (n_samples ** 2,), float64
        Unit vector; ``gram_signature(X) @ gram_signature(Y)`` equals ``linear_cka(X, Y)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 5))
    >>> round(float(gram_signature(X) @ gram_signature(3 * X + 1)), 6)
    1.0
    """
    X = as_matrix(X, "X")
    check_finite(X, "X")
    check_not_constant(X, "X")
    n = X.shape[0]
    if n < (4 if debiased else 2):
        raise ZooscopeInputError(f"A CKA signature needs at least {4 if debiased else 2} probe examples; got {n}.")
    X = X - X.mean(axis=0)  # centre the features first: H K H = Xc Xcᵀ and no large offsets cancel in K
    K = X @ X.T
    if debiased:
        K = u_center(K)
    norm = np.linalg.norm(K)
    if not norm > 0:
        raise ZooscopeInputError("The centred Gram matrix of this layer is zero (a constant layer); "
                                 "choose another layer.")
    return (K / norm).ravel()


def signature_similarity(A: npt.ArrayLike, B: npt.ArrayLike) -> np.ndarray:
    """Exact CKA between stored signatures, accumulated in float64.

    Parameters
    ----------
    A : array-like of shape (m, n²) or (n²,)
    B : array-like of shape (k, n²) or (n²,)

    Returns
    -------
    ndarray of shape (m, k)
        ``A @ B.T`` in float64 (linear CKA, or debiased CKA for debiased signatures; larger = more similar).
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    if A.shape[1] != B.shape[1]:
        raise ZooscopeInputError(
            f"Signatures of length {A.shape[1]} and {B.shape[1]} come from probe sets of different sizes "
            f"({math.isqrt(A.shape[1])} vs {math.isqrt(B.shape[1])} examples) and cannot be compared. "
            "Embed both models on the same probe set.")
    return A @ B.T


def jl_epsilon(dim: int, delta: float = 0.01) -> float:
    """Return the documented JL error bound ε for a projection to ``dim`` (see the module docstring).

    Parameters
    ----------
    dim : int
        Projected dimension d.
    delta : float, default=0.01
        Failure probability per pair of unit vectors.

    Returns
    -------
    float
        ε such that |⟨Pu, Pv⟩ − ⟨u, v⟩| ≤ ε with probability ≥ 1 − δ (solves d(ε²/2 − ε³/3) = 2 ln(4/δ)).
    """
    if not (0 < delta < 1):
        raise ZooscopeInputError(f"'delta' of jl_epsilon must be a float in (0, 1); got {delta!r}.")
    target = 2 * math.log(4 / delta) / dim
    lo, hi = 0.0, 1.5  # ε²/2 − ε³/3 increases on (0, 1]; bisect
    for _ in range(80):
        mid = (lo + hi) / 2
        if mid * mid / 2 - mid**3 / 3 < target and mid < 1:
            lo = mid
        else:
            hi = mid
    return hi


def jl_dim(epsilon: float, delta: float = 0.01) -> int:
    """Smallest d with the documented guarantee: d ≥ 2 ln(4/δ) / (ε²/2 − ε³/3), for 0 < ε < 1."""
    if not (0 < epsilon < 1) or not (0 < delta < 1):
        raise ZooscopeInputError(f"jl_dim needs 0 < epsilon < 1 and 0 < delta < 1; got {epsilon!r}, {delta!r}.")
    return math.ceil(2 * math.log(4 / delta) / (epsilon**2 / 2 - epsilon**3 / 3))


@EMBEDDINGS.register(
    EmbeddingMeta(
        subject="model", metric="ip", normalized=True, version="1",
        params={"debiased": False, "batch_size": 256},
        description="CKA signature: vec(centred Gram)/‖·‖ per layer on the zoo's probe set; "
                    "inner product = linear CKA (debiased=True: debiased CKA).",
    ),
    name="cka",
)
def cka_signature(model: Any, x: Any, *, layers: list[str] | None = None, debiased: bool = False,
                  batch_size: int = 256, **_: Any) -> dict[str, np.ndarray]:
    """Return the ``cka`` embedding kind: one signature per layer of ``model`` on the probe inputs ``x``.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode by the capture.
    x : torch.Tensor of shape (n, ...)
        The zoo's fixed probe inputs, same order for every model.
    layers : list of str or None
        Module names; None = the capture module's default layers.
    debiased : bool, default=False
    batch_size : int, default=256

    Returns
    -------
    dict of str to ndarray of shape (n²,), float32
        Layer name -> stored signature, in capture order (the last but one entry is the penultimate layer when
        the last is the classifier).
    """
    from zooscope.embed.capture import capture

    acts = capture(model, x, layers, batch_size=batch_size)
    out: dict[str, np.ndarray] = {}
    for name, a in acts.items():
        arr = a.detach().cpu().double().numpy() if hasattr(a, "detach") else np.asarray(a, dtype=np.float64)
        out[name] = gram_signature(arr.reshape(arr.shape[0], -1), debiased=debiased).astype(np.float32)
    return out
