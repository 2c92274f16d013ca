"""Linear CKA for every layer pair of two networks: full batch (``linear_cka_matrix``) or streamed.

``MinibatchCKA`` is the streaming accumulator of Nguyen, Raghu & Kornblith 2021 ("Do Wide and Deep
Networks Learn the Same Things?"), built as their TF ``MinibatchCKA`` metric: per batch every layer's
Gram matrix is U-centred, flattened to B², all layers of both models are stacked into one (L, B²)
matrix G and ``G Gᵀ`` (every HSIC₁ term at once) is accumulated in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from zooscope._validation import ZooscopeInputError, check_choice, check_finite
from zooscope.measures.cka import _dot_debiased
from zooscope.measures.kernels import _center_unbiased

__all__ = ["MinibatchCKA", "linear_cka_matrix"]

_BLOCK_BYTES = 32 << 20  # float64 working set of the blocked Gram products


def _is_torch(A: Any) -> bool:
    return hasattr(A, "detach") and hasattr(A, "cpu")


def _flat_numpy(A: Any, name: str) -> np.ndarray:
    """(n, ...) torch/numpy -> (n, p) numpy; float32 stays float32, everything else becomes float64."""
    if _is_torch(A):
        A = A.detach()
        if A.device.type != "cpu":
            A = A.cpu()
        if A.dtype.is_floating_point and A.dtype.itemsize < 4:
            A = A.float()
        A = A.numpy()
    A = np.asarray(A)
    if A.ndim == 0 or not np.issubdtype(A.dtype, np.number):
        raise ZooscopeInputError(f"{name} must be a numeric (n_examples, ...) array; got shape {A.shape}.")
    A = A.reshape(A.shape[0], -1)
    return A if A.dtype == np.float32 else A.astype(np.float64)


# --------------------------------------------------------------------------------------------------
# Full batch: linear_cka_matrix
# --------------------------------------------------------------------------------------------------


class _Layer:
    """One layer, centred, as a Gram matrix (wide layers) or as features (narrow ones)."""

    def __init__(self, A: Any, name: str, n: int | None, *, exact: bool, debiased: bool) -> None:
        X = _flat_numpy(A, name)
        if n is not None and X.shape[0] != n:
            raise ZooscopeInputError(
                f"{name} has {X.shape[0]} examples but the first layer has {n}; every layer must hold "
                "the same examples in the same order (one DataLoader, shuffle=False)."
            )
        if X.shape[1] == 0:
            raise ZooscopeInputError(f"{name} has no features (shape {X.shape}).")
        if X.shape[0] < (4 if debiased else 2):
            raise ZooscopeInputError(
                f"linear_cka_matrix needs at least {4 if debiased else 2} examples; got {X.shape[0]}."
            )
        self.n, p = X.shape
        mean = X.mean(axis=0, dtype=np.float64)
        if not np.isfinite(mean).all():  # a NaN/Inf anywhere makes its column mean non-finite
            check_finite(X, name)
        # (a constant layer is caught below: its centred self-inner-product is 0)
        # Gram form (n²p/2 flops, syrk) pays off as soon as the layer is not tiny next to n.
        self.is_gram = 4 * p > self.n
        work = np.float64 if (exact or not self.is_gram) else np.float32
        Xc = np.empty(X.shape, dtype=work)
        rows = max(1, _BLOCK_BYTES // (8 * p))
        for s in range(0, self.n, rows):  # exact float64 centring, then (maybe) round to float32
            Xc[s : s + rows] = X[s : s + rows] - mean
        if self.is_gram:
            self.K = _center_inplace(Xc @ Xc.T, debiased)  # numpy recognises X Xᵀ and calls syrk
        else:
            self.X = Xc
            self.r = np.einsum("ij,ij->i", Xc, Xc)
            self.s = float(self.r.sum())


def _center_inplace(K: np.ndarray, unbiased: bool) -> np.ndarray:
    """Biased or U-centring of a float32/float64 Gram in place; the means are summed in float64."""
    n = K.shape[0]
    if unbiased:  # the Demo's U-centring steps, see kernels._center_unbiased
        np.fill_diagonal(K, 0.0)
        means = K.sum(axis=0, dtype=np.float64) / (n - 2)
        means -= means.sum() / (2.0 * (n - 1))
    else:
        means = K.mean(axis=0, dtype=np.float64)
        means -= means.mean() / 2.0
    m = means.astype(K.dtype)
    K -= m[:, None]
    K -= m[None, :]
    if unbiased:
        np.fill_diagonal(K, 0.0)
    return K


def _gram_gram(grams: list[_Layer]) -> np.ndarray:
    """<K_i, K_j> for all pairs, accumulated in float64 over row blocks (one matmul per block)."""
    n = grams[0].n
    P = np.zeros((len(grams), len(grams)))
    rows = max(1, _BLOCK_BYTES // (8 * n * len(grams)))
    for s in range(0, n, rows):
        G = np.stack([g.K[s : s + rows].ravel() for g in grams]).astype(np.float64)
        P += G @ G.T
    return P


def _gram_feat(g: _Layer, f: _Layer) -> float:
    """<C(K), Y Yᵀ> = Σ (C(K) Y) ∘ Y in float64; equals <C(K), C(YYᵀ)> for both centrings used here."""
    rows = max(1, _BLOCK_BYTES // (8 * g.n))
    total = 0.0
    for s in range(0, g.n, rows):
        total += float(np.einsum("ij,ij->", g.K[s : s + rows].astype(np.float64) @ f.X, f.X[s : s + rows]))
    return total


def _feat_feat(a: _Layer, b: _Layer, debiased: bool) -> float:
    xty = np.linalg.norm(b.X.T @ a.X) ** 2
    return _dot_debiased(xty, a.r, b.r, a.s, b.s, a.n) if debiased else float(xty)


def linear_cka_matrix(
    acts_a: Sequence[Any],
    acts_b: Sequence[Any] | None = None,
    debiased: bool = False,
    *,
    exact: bool = False,
) -> np.ndarray:
    """Full-batch linear CKA between every layer of one network and every layer of another.

    Each layer is centred once (exactly, in float64) and then kept either as its centred Gram matrix
    (layers wider than n/4; the Gram costs n²p/2 flops via syrk) or as centred features (narrow layers);
    every pair is then an inner product: Gram·Gram as one blocked float64 matmul over all Gram layers,
    Gram·features as ``Σ (K Y) ∘ Y``, features·features as ``‖YᵀX‖²``. With ``exact=False`` the Gram
    products use float32 BLAS on the float64-centred data (safe: centring removed the offsets that
    cancel badly) and every sum and normalisation is float64; it matches :func:`linear_cka` to < 1e-6.

    Parameters
    ----------
    acts_a : sequence of array-like, each of shape (n_samples, ...)
        Activations of the layers of model A (numpy or torch), flattened per example.
    acts_b : sequence of array-like, each of shape (n_samples, ...), optional
        Layers of model B for the same examples; None compares model A with itself.
    debiased : bool, default=False
        Use the unbiased HSIC₁ (needs n >= 4), as ``linear_cka(..., debiased=True)``.
    exact : bool, default=False
        Use float64 for the Gram products too (about 2x slower).

    Returns
    -------
    ndarray of shape (len(acts_a), len(acts_b))
        ``out[i, j] = linear_cka(acts_a[i], acts_b[j], debiased)``.

    Notes
    -----
    Gram-form layers hold n² floats each: for n beyond ~10⁴ examples use :class:`MinibatchCKA`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 8))
    >>> linear_cka_matrix([X, X @ rng.normal(size=(8, 3))], [2 * X]).round(6).tolist()[0]
    [1.0]
    """
    same = acts_b is None
    if len(acts_a) == 0 or (not same and len(acts_b) == 0):
        raise ZooscopeInputError("linear_cka_matrix needs at least one layer on each side; got an empty list.")
    layers_a: list[_Layer] = []
    n = None
    for i, A in enumerate(acts_a):
        layers_a.append(_Layer(A, f"acts_a[{i}]", n, exact=exact, debiased=debiased))
        n = layers_a[0].n
    layers_b = layers_a if same else [
        _Layer(B, f"acts_b[{j}]", n, exact=exact, debiased=debiased) for j, B in enumerate(acts_b)
    ]
    everyone = layers_a if same else layers_a + layers_b
    grams = [layer for layer in everyone if layer.is_gram]
    gidx = {id(g): k for k, g in enumerate(grams)}
    P = _gram_gram(grams) if grams else np.zeros((0, 0))

    def inner(u: _Layer, v: _Layer) -> float:
        if u.is_gram and v.is_gram:
            return float(P[gidx[id(u)], gidx[id(v)]])
        if u.is_gram or v.is_gram:
            return _gram_feat(u, v) if u.is_gram else _gram_feat(v, u)
        return _feat_feat(u, v, debiased)

    self_a = np.array([inner(u, u) for u in layers_a])
    self_b = self_a if same else np.array([inner(v, v) for v in layers_b])
    for side, selfs in (("acts_a", self_a), ("acts_b", self_b)):
        bad = np.flatnonzero(~(selfs > 0))
        if bad.size:
            raise ZooscopeInputError(
                f"{side}[{bad[0]}] carries no variation after centring, so CKA is undefined. "
                "Choose another layer."
            )
    out = np.empty((len(layers_a), len(layers_b)))
    for i, u in enumerate(layers_a):
        for j, v in enumerate(layers_b):
            out[i, j] = self_a[i] if (same and i == j) else inner(u, v)
    return out / np.sqrt(np.outer(self_a, self_b))


# --------------------------------------------------------------------------------------------------
# Streamed: MinibatchCKA
# --------------------------------------------------------------------------------------------------


class MinibatchCKA:
    """Minibatch linear CKA for all layer pairs of two models, accumulated batch by batch.

    ``CKA_mb[i, j] = H₁(K_i, L_j) / sqrt(H₁(K_i, K_i) H₁(L_j, L_j))`` where H₁ is the per-batch unbiased
    HSIC₁ averaged over batches (Nguyen, Raghu, Kornblith 2021, eq. 3–4): the HSIC terms are summed
    first, the ratio is taken once at the end. It estimates *debiased* full-batch CKA, not biased CKA.

    Per batch, for each layer: subtract the batch mean of the flattened activations (HSIC₁ is exactly
    invariant to subtracting any fixed vector from every row, so this removes the offsets that make
    float32 Grams cancel — the NaNs of torch-cka — without changing the estimate), form the B × B Gram
    (float32 BLAS for float32 activations, float64 for float64 ones), U-centre it in float64, flatten it
    to B²; stack all layers of both models into G of shape (La + Lb, B²) and add ``G Gᵀ / (B − 3)`` to a
    float64 accumulator — ``<U(K), U(L)> / (B(B − 3))`` is HSIC₁, weighted by B.

    **Weighting.** Batch b enters with weight B_b / Σ B (its share of the examples), the inverse of the
    leading-order variance of a U-statistic; with equal batch sizes this is the plain mean of the paper,
    torch-cka and ckatorch. **Batches with B < 4** cannot give HSIC₁: they are skipped with a
    ``UserWarning`` and counted in ``n_skipped_`` (use ``drop_last=True`` to avoid it).

    Parameters
    ----------
    n_layers_a : int
        Number of layers of model A passed to every :meth:`update`.
    n_layers_b : int or None, default=None
        Number of layers of model B; None compares model A with itself (square result).
    gram_dtype : {"auto", "float32", "float64"}, default="auto"
        Precision of the B × B Gram products; "auto" follows the activations (float64 if any is float64).

    Attributes
    ----------
    n_batches_ : int
        Batches accumulated.
    n_examples_ : int
        Examples accumulated (skipped batches excluded).
    n_skipped_ : int
        Examples in skipped batches (B < 4).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> acc = MinibatchCKA(2)
    >>> for _ in range(3):
    ...     X = rng.normal(size=(16, 5))
    ...     _ = acc.update([X, 2 * X + 1])
    >>> acc.result().round(6).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """

    def __init__(
        self,
        n_layers_a: int,
        n_layers_b: int | None = None,
        *,
        gram_dtype: Literal["auto", "float32", "float64"] = "auto",
    ) -> None:
        for name, v in (("n_layers_a", n_layers_a), ("n_layers_b", n_layers_b)):
            if v is not None and (not isinstance(v, int | np.integer) or v < 1):
                raise ZooscopeInputError(f"'{name}' of MinibatchCKA must be an int >= 1; got {v!r}.")
        self.n_layers_a = int(n_layers_a)
        self.n_layers_b = None if n_layers_b is None else int(n_layers_b)
        self.gram_dtype = check_choice(gram_dtype, ("auto", "float32", "float64"), "gram_dtype", "MinibatchCKA")
        self.reset()

    def reset(self) -> MinibatchCKA:
        """Forget every batch seen so far; returns self."""
        L = self.n_layers_a + (self.n_layers_b or 0)
        self._acc = np.zeros((L, L))
        self.n_batches_ = 0
        self.n_examples_ = 0
        self.n_skipped_ = 0
        self._scratch: dict[tuple, np.ndarray] = {}
        return self

    def _u_gram(self, A: Any, name: str) -> np.ndarray:
        """Flattened U-centred B × B Gram (float64) of one layer's batch activations."""
        if _is_torch(A) and A.device.type != "cpu":  # stay on the accelerator for the big product
            X = A.detach().reshape(A.shape[0], -1)
            X = X.double() if self._want64(X.dtype.itemsize == 8) else X.float()
            X = X - X.mean(dim=0)
            K = (X @ X.T).double().cpu().numpy()
        else:
            X = _flat_numpy(A, name)
            dtype = np.float64 if self._want64(X.dtype == np.float64) else np.float32
            X = X.astype(dtype, copy=False)
            buf = self._scratch.get((X.shape, dtype))  # reused: no page faults for a fresh array per batch
            if buf is None:
                buf = self._scratch[(X.shape, dtype)] = np.empty(X.shape, dtype)
            np.subtract(X, X.mean(axis=0), out=buf)
            K = buf @ buf.T  # numpy recognises X Xᵀ and calls syrk (half the flops of gemm)
        if not np.isfinite(K).all():
            raise ZooscopeInputError(
                f"{name} gives a non-finite Gram matrix in batch {self.n_batches_}: the activations hold "
                "NaN/Inf or overflow float32. Check the checkpoint/inputs, or pass float64 activations."
            )
        return _center_unbiased(K.astype(np.float64, copy=False)).ravel()

    def _want64(self, is64: bool) -> bool:
        return self.gram_dtype == "float64" or (self.gram_dtype == "auto" and is64)

    def update(self, acts_a: Sequence[Any], acts_b: Sequence[Any] | None = None) -> MinibatchCKA:
        """Add one batch.

        Parameters
        ----------
        acts_a : sequence of n_layers_a tensors or arrays, each of shape (B, ...)
            Model A's activations for this batch (flattened per example).
        acts_b : sequence of n_layers_b tensors or arrays, each of shape (B, ...), optional
            Model B's activations for the same B examples; required iff ``n_layers_b`` was given.

        Returns
        -------
        MinibatchCKA
            self, for chaining.
        """
        if (acts_b is None) != (self.n_layers_b is None):
            raise ZooscopeInputError(
                "MinibatchCKA was built for "
                + ("one model (n_layers_b=None): call update(acts_a)." if self.n_layers_b is None
                   else f"two models: call update(acts_a, acts_b) with {self.n_layers_b} layers in acts_b.")
            )
        sides = [("acts_a", acts_a, self.n_layers_a)]
        if acts_b is not None:
            sides.append(("acts_b", acts_b, self.n_layers_b))
        sizes = set()
        for side, acts, expected in sides:
            if len(acts) != expected:
                raise ZooscopeInputError(f"{side} has {len(acts)} layers; MinibatchCKA expects {expected}.")
            sizes.update(int(a.shape[0]) for a in acts)
        if len(sizes) != 1:
            raise ZooscopeInputError(
                f"Every layer of a batch must hold the same examples; got batch sizes {sorted(sizes)}."
            )
        (B,) = sizes
        if B < 4:
            warnings.warn(
                f"MinibatchCKA skipped a batch of {B} examples: HSIC₁ needs at least 4 per batch. "
                "Use drop_last=True or a larger batch size.", UserWarning, stacklevel=2,
            )
            self.n_skipped_ += B
            return self
        G = np.stack([self._u_gram(a, f"{side}[{i}]") for side, acts, _ in sides for i, a in enumerate(acts)])
        self._acc += (G @ G.T) / (B - 3.0)  # Σ_b B_b · HSIC₁_b, HSIC₁_b = <U(K), U(L)> / (B_b (B_b − 3))
        self.n_batches_ += 1
        self.n_examples_ += B
        return self

    @property
    def hsic_(self) -> np.ndarray:
        """Example-weighted mean HSIC₁ of every pair of stacked layers, shape (La + Lb, La + Lb)."""
        if self.n_examples_ == 0:
            raise ZooscopeInputError("MinibatchCKA has no batches yet: call update() first.")
        return self._acc / self.n_examples_

    def result(self) -> np.ndarray:
        """CKA for every layer pair.

        Returns
        -------
        ndarray of shape (n_layers_a, n_layers_b or n_layers_a)
            ``out[i, j]`` compares layer i of model A with layer j of model B (or of A itself).
            Debiased: 1 for identical layers, may be slightly negative for unrelated ones.
        """
        H = self.hsic_
        d = np.diag(H)
        bad = np.flatnonzero(~(d > 0))
        if bad.size:
            k = int(bad[0])
            side, idx = ("acts_a", k) if k < self.n_layers_a else ("acts_b", k - self.n_layers_a)
            raise ZooscopeInputError(
                f"{side}[{idx}] was constant within every batch, so CKA is undefined for it. Choose "
                "another layer."
            )
        C = H / np.sqrt(np.outer(d, d))
        La = self.n_layers_a
        return C.copy() if self.n_layers_b is None else C[:La, La:].copy()
