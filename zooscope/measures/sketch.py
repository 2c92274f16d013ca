"""Sketching operators (CountSketch / block OSNAP, JL) and the gradient kernel of Tang et al. (2020).

The gradient kernel of a layer is k(x, x') = <f(x), f(x')> <g(x), g(x')> = <f ⊗ g, f' ⊗ g'> (features f and
label-free activation gradients g from :mod:`zooscope.embed.gradients`); on n examples K = (F Fᵀ) ∘ (G Gᵀ).
For a linear map z = W f it is the Gram matrix of per-example weight gradients g_z fᵀ.

What the xfer reference really computes (confirmed against it, see ``tests/test_oracle_seedA.py``):

* a Clarkson–Woodruff sketch S (M × n, entries 0/±1, T non-zeros per column, one in each row chunk
  [t·M/T, (t+1)·M/T)), applied as S/√T, and the **sketched kernel**
  K̃ = (SF)(SF)ᵀ/T ∘ (SG)(SG)ᵀ/T  (M × M).  This is *not* S (FFᵀ ∘ GGᵀ) Sᵀ: examples sharing a bucket add
  cross terms, which is why sketched cross-network similarities come out inflated (seed-A ResNet-18s: 0.95–0.99
  sketched vs 0.64–0.94 exact, see ``benchmarks/RESULTS.md``);
* indices on the biased-centred kernel K̄ = K − colmean − rowmean + mean:
  CKA = <K̄₁, K̄₂>_F / (‖K̄₁‖_F ‖K̄₂‖_F);
  NBS = Σ √max(0, λ(K̄₁ K̄₂)) / √(tr K̄₁ · tr K̄₂) (the docstring says "/Tr/Tr"; the code divides by the root
  of the product; we compute the same eigenvalues as those of the symmetric K̄₁^½ K̄₂ K̄₁^½);
  Euclidean = ‖K₁ − K₂‖_F on the raw, uncentred kernels.

Our sketch differs from the reference in one deliberate way: column i of S is a hash of (seed, i), not a fresh
draw per batch, so two models (or two datasets) sketched with one seed share buckets by example index whatever
the batching.  Pass an explicit ``S`` (e.g. :func:`xfer_cwt_matrix`, the oracle's saved matrices or a signed
permutation) to reproduce another sketch exactly.

References
----------
Tang, Maddox, Dickens, Diethe, Damianou 2020, arXiv:2003.11498 (code ``amzn/xfer/nn_similarity_index``).
Clarkson & Woodruff 2013; Nelson & Nguyen 2013 (OSNAP); Li, Hastie & Church 2006 (very sparse projections).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from zooscope._validation import ZooscopeInputError, as_matrix, check_choice, check_finite
from zooscope.measures._base import MEASURES, Inv, MeasureMeta
from zooscope.measures._gradkernel import (
    center_kernel,
    check_kernel_stack,
    gradient_kernel,
    kernel_index,
    kernel_index_matrix,
    sketched_kernel,
)

__all__ = [
    "CountSketch",
    "SketchAccumulator",
    "center_kernel",
    "gradient_kernel",
    "grad_kernel_cka",
    "grad_kernel_euclidean",
    "grad_kernel_nbs",
    "jl_project",
    "kernel_euclidean",
    "kernel_index_matrix",
    "signed_permutation",
    "sketched_kernel",
    "xfer_cwt_matrix",
]

_JL_BLOCK = 4096  # rows of a JL matrix drawn per RNG stream; part of the output format (changing it changes R)


def _check_int(value: object, name: str, owner: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ZooscopeInputError(f"{name!r} of {owner} must be an int >= {low}; got {value!r}.")
    return int(value)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrap-around arithmetic): a counter-based hash."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class CountSketch:
    """Block CountSketch / OSNAP operator S of M rows whose column i depends only on (seed, i).

    Column i has T non-zeros ±1, one in each row chunk [t·M//T, (t+1)·M//T) (T = 1: CountSketch, the
    Clarkson–Woodruff transform; T > 1: block OSNAP).  Entries are ±1 *without* the 1/√T factor, as in the xfer
    reference's ``cwt_matrix``; :func:`sketched_kernel` divides by T.  The number of columns is unbounded, so
    a stream of any length can be sketched and two streams share buckets by example index.

    Parameters
    ----------
    M : int
        Number of buckets (rows), >= T.
    T : int, default=1
        Non-zeros per column.
    seed : int, default=0

    Examples
    --------
    >>> S = CountSketch(8, T=2, seed=0).toarray(5)
    >>> S.shape, (S != 0).sum(axis=0).tolist()
    ((8, 5), [2, 2, 2, 2, 2])
    """

    def __init__(self, M: int, T: int = 1, seed: int = 0) -> None:
        self.M = _check_int(M, "M", "CountSketch", 1)
        self.T = _check_int(T, "T", "CountSketch", 1)
        self.seed = _check_int(seed, "seed", "CountSketch", 0)
        if self.T > self.M:
            raise ZooscopeInputError(f"'T' of CountSketch must be <= M; got T={T}, M={M}.")

    def buckets(self, index: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Rows and signs of the columns ``index``: two arrays of shape (T, len(index))."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ZooscopeInputError("Example indices must be >= 0.")
        key = _splitmix64(_splitmix64(np.array([self.seed], dtype=np.uint64)) ^ idx.astype(np.uint64))
        rows = np.empty((self.T, idx.size), dtype=np.int64)
        signs = np.empty((self.T, idx.size), dtype=np.float64)
        for t in range(self.T):
            h = _splitmix64(key + np.uint64(t))
            lo, hi = t * self.M // self.T, (t + 1) * self.M // self.T
            rows[t] = lo + (h % np.uint64(hi - lo)).astype(np.int64)
            signs[t] = np.where(h >> np.uint64(63), 1.0, -1.0)  # top bit: independent of the low bits used above
        return rows, signs

    def matrix(self, index: npt.ArrayLike) -> sp.csr_array:
        """Return the columns ``index`` of S as a sparse (M, len(index)) matrix."""
        rows, signs = self.buckets(index)
        cols = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
        return sp.csr_array((signs.ravel(), (rows.ravel(), cols.ravel())), shape=(self.M, rows.shape[1]))

    def toarray(self, n: int) -> np.ndarray:
        """Return the first ``n`` columns as a dense int8 (M, n) array (for inspection and tests)."""
        return self.matrix(np.arange(n)).toarray().astype(np.int8)


class _ExplicitSketch:
    """A given (M, n) matrix behind the CountSketch interface."""

    def __init__(self, S: npt.ArrayLike, T: int) -> None:
        S = as_matrix(S, "S")
        check_finite(S, "S")
        self.S, self.M, self.T = sp.csc_array(S), S.shape[0], T

    def matrix(self, index: np.ndarray) -> sp.csr_array:
        if index.size and index.max() >= self.S.shape[1]:
            raise ZooscopeInputError(
                f"The explicit sketch S has {self.S.shape[1]} columns (examples) but example index "
                f"{int(index.max())} was fed; pass an S with one column per example."
            )
        return sp.csr_array(self.S[:, index])


def signed_permutation(n: int, seed: int = 0) -> np.ndarray:
    """Return a random signed permutation matrix (n, n): a sketch with no collisions, M = n, T = 1.

    With it the sketched kernel is P (FFᵀ ∘ GGᵀ) Pᵀ, so CKA and NBS equal their unsketched values exactly.
    """
    n = _check_int(n, "n", "signed_permutation", 1)
    rng = np.random.default_rng(seed)
    S = np.zeros((n, n), dtype=np.int8)
    S[rng.permutation(n), np.arange(n)] = rng.choice(np.array([-1, 1], dtype=np.int8), size=n)
    return S


def xfer_cwt_matrix(n: int, M: int, T: int = 1, *, seed: int = 1111, batch_size: int = 128) -> np.ndarray:
    """Rebuild the xfer reference's sketch for n examples fed in batches: an int8 (M, n) matrix of 0/±1.

    Protocol of ``SketchedKernels`` after ``torch.manual_seed(seed)``: for every batch, for t in range(T),
    ``rows = torch.randint(t·c, (t+1)·c, (1, b))`` with c = int(M/T), then ``signs = torch.randn(b).sign()``.
    A private ``torch.Generator`` is used, so the global RNG is untouched.
    """
    import torch

    n = _check_int(n, "n", "xfer_cwt_matrix", 1)
    M, T = _check_int(M, "M", "xfer_cwt_matrix", 1), _check_int(T, "T", "xfer_cwt_matrix", 1)
    batch_size = _check_int(batch_size, "batch_size", "xfer_cwt_matrix", 1)
    gen = torch.Generator().manual_seed(int(seed))
    S = np.zeros((M, n), dtype=np.int8)
    chunk = int(M / T)
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        for t in range(T):
            rows = torch.randint(t * chunk, (t + 1) * chunk, (1, b), generator=gen).numpy()[0]
            signs = torch.randn(b, generator=gen).sign().numpy().astype(np.int8)
            S[rows, start + np.arange(b)] = signs
    return S


class SketchAccumulator:
    """Streamed sketches SF (M, d_f) and SG (M, d_g) of one layer: memory O(M·d), independent of n.

    Parameters
    ----------
    M : int, optional
        Buckets.  Required unless ``S`` is given.
    T : int, optional
        Non-zeros per column (default 1); with ``S``, inferred from its column counts when omitted.
    seed : int, default=0
        Hash seed of the :class:`CountSketch`; example i always lands in the same buckets for one seed.
    S : array-like of shape (M, n), optional
        An explicit sketch (entries without the 1/√T factor), e.g. :func:`xfer_cwt_matrix` or
        :func:`signed_permutation`; column i is used for example i.
    dtype : numpy dtype, default=np.float64
        Accumulator precision (float32 halves memory for very wide layers).

    Attributes
    ----------
    SF_, SG_ : ndarray of shape (M, d_f), (M, d_g)
    n_seen_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> F, G = rng.normal(size=(100, 6)), rng.normal(size=(100, 4))
    >>> acc = SketchAccumulator(16, seed=1)
    >>> for i in range(0, 100, 32):
    ...     _ = acc.update(F[i:i + 32], G[i:i + 32])
    >>> acc.kernel().shape
    (16, 16)
    """

    def __init__(self, M: int | None = None, T: int | None = None, seed: int = 0, *,
                 S: npt.ArrayLike | None = None, dtype: npt.DTypeLike = np.float64) -> None:
        if S is None:
            if M is None:
                raise ZooscopeInputError("SketchAccumulator needs M (the number of buckets) or an explicit S.")
            self.sketch: CountSketch | _ExplicitSketch = CountSketch(M, 1 if T is None else T, seed)
        else:
            S_arr = np.asarray(S)
            if M is not None and S_arr.shape[0] != M:
                raise ZooscopeInputError(f"M={M} but the explicit S has {S_arr.shape[0]} rows.")
            if T is None:
                counts = np.unique((S_arr != 0).sum(axis=0))
                T = int(counts[0]) if counts.size == 1 and counts[0] > 0 else 1
            self.sketch = _ExplicitSketch(S_arr, _check_int(T, "T", "SketchAccumulator", 1))
        self.M, self.T, self.dtype = self.sketch.M, self.sketch.T, np.dtype(dtype)
        self.SF_: np.ndarray | None = None
        self.SG_: np.ndarray | None = None
        self.n_seen_ = 0

    def update(self, F: npt.ArrayLike, G: npt.ArrayLike, index: npt.ArrayLike | None = None) -> SketchAccumulator:
        """Add a batch: SF += S[:, index] F and SG += S[:, index] G.

        Parameters
        ----------
        F : array-like of shape (b, d_f)
            Features of b examples (rows).
        G : array-like of shape (b, d_g)
            Their gradients, same rows.
        index : array-like of int of shape (b,), optional
            Global example indices; default continues the running count (0, 1, 2, … over all updates).
        """
        F, G = as_matrix(F, "F", dtype=self.dtype), as_matrix(G, "G", dtype=self.dtype)
        if F.shape[0] != G.shape[0]:
            raise ZooscopeInputError(f"F and G must hold the same examples; got {F.shape[0]} and {G.shape[0]} rows.")
        check_finite(F, "F")
        check_finite(G, "G")
        b = F.shape[0]
        idx = np.arange(self.n_seen_, self.n_seen_ + b) if index is None else np.asarray(index, np.int64).ravel()
        if idx.size != b:
            raise ZooscopeInputError(f"index has {idx.size} entries for a batch of {b} examples.")
        if self.SF_ is None:
            self.SF_ = np.zeros((self.M, F.shape[1]), dtype=self.dtype)
            self.SG_ = np.zeros((self.M, G.shape[1]), dtype=self.dtype)
        elif (F.shape[1], G.shape[1]) != (self.SF_.shape[1], self.SG_.shape[1]):
            raise ZooscopeInputError(
                f"Feature sizes changed between batches: first ({self.SF_.shape[1]}, {self.SG_.shape[1]}), "
                f"now ({F.shape[1]}, {G.shape[1]})."
            )
        S_b = self.matrix_for(idx)
        self.SF_ += S_b @ F
        self.SG_ += S_b @ G
        self.n_seen_ += b
        return self

    def matrix_for(self, index: np.ndarray) -> sp.csr_array:
        """Return the sketch's columns for the examples ``index``, in this accumulator's dtype."""
        return self.sketch.matrix(index).astype(self.dtype)

    def kernel(self) -> np.ndarray:
        """Return the sketched kernel (SF)(SF)ᵀ/T ∘ (SG)(SG)ᵀ/T, float64 of shape (M, M)."""
        if self.SF_ is None:
            raise ZooscopeInputError("No examples were added; call update(F, G) first.")
        return sketched_kernel(self.SF_, self.SG_, self.T)


def jl_project(X: npt.ArrayLike, dim: int, seed: int = 0, *,
               kind: Literal["gaussian", "sparse", "rademacher"] = "gaussian") -> np.ndarray:
    """Johnson–Lindenstrauss projection X R of the rows of X, with E‖xR‖² = ‖x‖².

    R (p × dim) is drawn in blocks of 4096 rows, block j from ``default_rng([seed, j])``, so it never needs
    to be held whole and the same (seed, p) always gives the same R.

    Parameters
    ----------
    X : array-like of shape (n, p)
    dim : int
        Output dimension.
    seed : int, default=0
    kind : {"gaussian", "sparse"}
        "gaussian": R_jk ~ N(0, 1/dim).  "sparse": Li, Hastie & Church's very sparse projection, s = √p:
        R_jk = ±√(s/dim) with probability 1/(2s) each, else 0. "rademacher": R_jk = ±1/√dim (Achlioptas
        2003), drawn as random bits (the cheapest; the zoo's index projection).

    Returns
    -------
    ndarray of shape (n, dim), float64

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(3, 10_000))
    >>> Z = jl_project(X, 2048, seed=1)
    >>> bool(np.allclose(np.linalg.norm(Z, axis=1), np.linalg.norm(X, axis=1), rtol=0.1))
    True
    """
    X = as_matrix(X, "X")
    check_finite(X, "X")
    dim = _check_int(dim, "dim", "jl_project", 1)
    seed = _check_int(seed, "seed", "jl_project", 0)
    check_choice(kind, ("gaussian", "sparse", "rademacher"), "kind", "jl_project")
    n, p = X.shape
    s = np.sqrt(p)
    out = np.zeros((n, dim))
    for j, start in enumerate(range(0, p, _JL_BLOCK)):
        stop = min(start + _JL_BLOCK, p)
        rng = np.random.default_rng([seed, j])
        if kind == "rademacher":  # a full block of bits, then the rows needed: R does not depend on p
            bits = np.unpackbits(np.frombuffer(rng.bytes(-(-_JL_BLOCK * dim // 8)), dtype=np.uint8))
            R = (bits[: _JL_BLOCK * dim].reshape(_JL_BLOCK, dim)[: stop - start] * 2.0 - 1.0) / np.sqrt(dim)
        elif kind == "gaussian":
            R = rng.standard_normal((stop - start, dim)) / np.sqrt(dim)
        else:
            u = rng.random((stop - start, dim))
            R = (np.where(u < 0.5 / s, 1.0, 0.0) - np.where(u > 1 - 0.5 / s, 1.0, 0.0)) * np.sqrt(s / dim)
        out += X[:, start:stop] @ R
    return out


# ---- registered measures ------------------------------------------------------------------------------------

_REF = "Tang et al. 2020, arXiv:2003.11498; amzn/xfer nn_similarity_index/sim_indices.py"


@MEASURES.register(MeasureMeta(
    larger_is_more_similar=False, symmetric=True, is_metric=True, bounds=(0.0, float("inf")), inputs="gram",
    invariances=Inv.ORTHOGONAL | Inv.PERMUTATION,
    not_invariant=Inv.TRANSLATION | Inv.ISOTROPIC_SCALE | Inv.INVERTIBLE_LINEAR, min_samples=1, reference=_REF))
def kernel_euclidean(K: npt.ArrayLike, L: npt.ArrayLike) -> float:
    """Frobenius distance ‖K − L‖_F between two raw (uncentred, unnormalised) kernels, as xfer's "euclidean".

    Parameters
    ----------
    K, L : array-like of shape (n, n)
        Gram matrices over the same examples (or sketched kernels over the same buckets).

    Returns
    -------
    float
        >= 0; 0 iff K = L.  Not scale invariant: it also compares the kernels' magnitudes.
    """
    (K,), (L,) = check_kernel_stack([K], [L], "kernel_euclidean", names=("K", "L"))
    return float(np.linalg.norm(K - L))


def _grad_kernels(F_a, G_a, F_b, G_b, sketch_dim, sketch_blocks, seed, owner):
    Ka, Kb = gradient_kernel(F_a, G_a), gradient_kernel(F_b, G_b)
    if Ka.shape != Kb.shape:
        raise ZooscopeInputError(f"{owner}: both models must see the same number of examples; got "
                                 f"{Ka.shape[0]} and {Kb.shape[0]}.")
    if sketch_dim is None:
        return Ka, Kb
    kernels = []
    for F, G in ((F_a, G_a), (F_b, G_b)):
        acc = SketchAccumulator(sketch_dim, sketch_blocks, seed)
        kernels.append(acc.update(F, G).kernel())
    return kernels[0], kernels[1]


_grad_meta = dict(symmetric=True, inputs="other", layerwise=False, invariances=Inv.ORTHOGONAL |
                  Inv.ISOTROPIC_SCALE | Inv.PERMUTATION, not_invariant=Inv.TRANSLATION | Inv.INVERTIBLE_LINEAR,
                  reference=_REF)
_GRAD_DOC = """

    Parameters
    ----------
    F_a, G_a : array-like of shape (n, d_a) and (n, e_a)
        Features and label-free activation gradients of one layer of model A
        (:func:`zooscope.embed.gradients.features_and_gradients`).
    F_b, G_b : array-like of shape (n, d_b) and (n, e_b)
        The same for model B, same examples in the same order.
    sketch_dim : int, optional
        None (default): exact n × n kernels.  An int M: (M, M) sketched kernels (CountSketch, ``seed``).
    sketch_blocks : int, default=1
        T, non-zeros per sketch column.
    seed : int, default=0

    Invariances (applied to F or to G separately): orthogonal maps, isotropic scaling, unit permutations;
    not translation or general invertible maps.  ``inputs="other"``: the generic contract test skips it.
    """


@MEASURES.register(MeasureMeta(larger_is_more_similar=True, bounds=(0.0, 1.0), **_grad_meta))
def grad_kernel_cka(F_a: npt.ArrayLike, G_a: npt.ArrayLike, F_b: npt.ArrayLike, G_b: npt.ArrayLike, *,
                    sketch_dim: int | None = None, sketch_blocks: int = 1, seed: int = 0) -> float:
    """CKA of the gradient kernels (FFᵀ) ∘ (GGᵀ) of two layers; in [0, 1], larger is more similar."""
    Ka, Kb = _grad_kernels(F_a, G_a, F_b, G_b, sketch_dim, sketch_blocks, seed, "grad_kernel_cka")
    return kernel_index(Ka, Kb, "cka")


@MEASURES.register(MeasureMeta(larger_is_more_similar=True, bounds=(0.0, 1.0), **_grad_meta))
def grad_kernel_nbs(F_a: npt.ArrayLike, G_a: npt.ArrayLike, F_b: npt.ArrayLike, G_b: npt.ArrayLike, *,
                    sketch_dim: int | None = None, sketch_blocks: int = 1, seed: int = 0) -> float:
    """Return normalized Bures similarity of the centred gradient kernels; in [0, 1], larger is more similar."""
    Ka, Kb = _grad_kernels(F_a, G_a, F_b, G_b, sketch_dim, sketch_blocks, seed, "grad_kernel_nbs")
    return kernel_index(Ka, Kb, "nbs")


@MEASURES.register(MeasureMeta(larger_is_more_similar=False, bounds=(0.0, float("inf")), is_metric=True,
                               **{**_grad_meta, "invariances": Inv.ORTHOGONAL | Inv.PERMUTATION,
                                  "not_invariant": Inv.TRANSLATION | Inv.ISOTROPIC_SCALE
                                  | Inv.INVERTIBLE_LINEAR}))
def grad_kernel_euclidean(F_a: npt.ArrayLike, G_a: npt.ArrayLike, F_b: npt.ArrayLike, G_b: npt.ArrayLike, *,
                          sketch_dim: int | None = None, sketch_blocks: int = 1, seed: int = 0) -> float:
    """‖K_a − K_b‖_F of the raw gradient kernels; >= 0, smaller is more similar, not scale invariant."""
    Ka, Kb = _grad_kernels(F_a, G_a, F_b, G_b, sketch_dim, sketch_blocks, seed, "grad_kernel_euclidean")
    return kernel_index(Ka, Kb, "euclidean")


for _fn in (grad_kernel_cka, grad_kernel_nbs, grad_kernel_euclidean):
    _fn.__doc__ += _GRAD_DOC
