"""Linear CKA for every layer pair of two networks: full batch (``linear_cka_matrix``) or streamed.

``MinibatchCKA`` is the streaming accumulator of Nguyen, Raghu & Kornblith 2021 ("Do Wide and Deep
Networks Learn the Same Things?"), built as their TF ``MinibatchCKA`` metric: per batch every layer's
Gram matrix is U-centred, flattened to B², all layers of both models are stacked into one (L, B²)
matrix G and ``G Gᵀ`` (every HSIC₁ term at once) is accumulated in float64.

Both run in torch, on the activations' device, in the activations' dtype for the Gram products (float64
inputs stay float64; float32 ones use float32 GEMMs on batch-centred data) with float64 centring means and
float64 accumulation of the L × L sums. numpy inputs are wrapped without a copy. Nothing here changes a thread
count: torch's intra-op pool is the only one that runs (no numpy BLAS call on the hot path).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.measures.cka import _dot_debiased
from zooscope.measures.kernels import _center

__all__ = ["MinibatchCKA", "linear_cka_matrix"]

_BLOCK_BYTES = 32 << 20  # float64 working set of the blocked products
_GRAM_BLOCK = 256  # rows per block of the triangular Gram (only blocks on or above the diagonal are computed)


def _as_matrix(A: Any, name: str) -> torch.Tensor:
    """(n, ...) torch/numpy -> (n, p) tensor on A's device, without a copy where possible.

    float32 and float64 stay as they are, half precisions become float32, everything else float64.
    """
    if not isinstance(A, torch.Tensor):
        A = np.asarray(A)
        if A.ndim == 0 or not (np.issubdtype(A.dtype, np.number) or A.dtype == np.bool_):
            raise ZooscopeInputError(f"{name} must be a numeric (n_examples, ...) array; got shape {A.shape}.")
        if A.dtype not in (np.float32, np.float64):
            A = A.astype(np.float64)
        if not (A.flags.c_contiguous and A.flags.writeable):
            A = np.array(A, order="C")
        A = torch.from_numpy(A)
    A = A.detach()
    if A.ndim == 0:
        raise ZooscopeInputError(f"{name} must be a numeric (n_examples, ...) array; got a scalar.")
    if A.dtype not in (torch.float32, torch.float64):
        A = A.float() if A.is_floating_point() and A.dtype.itemsize < 4 else A.double()
    return A.reshape(A.shape[0], -1)


def _col_mean(X: torch.Tensor) -> torch.Tensor:
    """Column means of (n, p) X in X's dtype, as one GEMV (torch's column reductions are far slower).

    Used only to condition the data before a Gram product: the Gram's own centring removes any offset left
    exactly, so the rounding of a float32 mean does not enter the result beyond round-off.
    """
    return (torch.ones((1, X.shape[0]), dtype=X.dtype, device=X.device) @ X).reshape(-1) / X.shape[0]


def _nonfinite(name: str, where: str) -> ZooscopeInputError:
    return ZooscopeInputError(
        f"{name} contains NaN or Inf{where}, or its Gram matrix overflows float32. Check the checkpoint/inputs, "
        "or pass float64 activations."
    )


def _tri_gram(X: torch.Tensor) -> torch.Tensor:
    """X Xᵀ from the blocks on and above the diagonal only (≈ half the GEMM flops of X @ X.T, like syrk)."""
    n = X.shape[0]
    if n <= 2 * _GRAM_BLOCK:
        return X @ X.T
    K = torch.empty((n, n), dtype=X.dtype, device=X.device)
    edges = [*range(0, n, _GRAM_BLOCK), n]
    for i in range(len(edges) - 1):
        r0, r1 = edges[i], edges[i + 1]
        Xi = X[r0:r1]
        for j in range(i, len(edges) - 1):
            c0, c1 = edges[j], edges[j + 1]
            K[r0:r1, c0:c1] = Xi @ X[c0:c1].T
            if j > i:
                K[c0:c1, r0:r1].copy_(K[r0:r1, c0:c1].T)
    return K


# --------------------------------------------------------------------------------------------------
# Full batch: linear_cka_matrix
# --------------------------------------------------------------------------------------------------


class _Layer:
    """One layer, centred, as a Gram matrix (wide layers) or as features (narrow ones)."""

    def __init__(self, A: Any, name: str, n: int | None, *, exact: bool, debiased: bool) -> None:
        X = _as_matrix(A, name)
        if n is not None and X.shape[0] != n:
            raise ZooscopeInputError(
                f"{name} has {X.shape[0]} examples but the first layer has {n}; every layer must hold "
                "the same examples in the same order (one DataLoader, shuffle=False)."
            )
        if X.shape[1] == 0:
            raise ZooscopeInputError(f"{name} has no features (shape {tuple(X.shape)}).")
        if X.shape[0] < (4 if debiased else 2):
            raise ZooscopeInputError(
                f"linear_cka_matrix needs at least {4 if debiased else 2} examples; got {X.shape[0]}."
            )
        self.n, p = X.shape
        # Gram form (≈ n²p flops) pays off as soon as the layer is not tiny next to n.
        self.is_gram = 4 * p > self.n
        work = torch.float64 if (exact or X.dtype == torch.float64 or not self.is_gram) else torch.float32
        X = X.to(work)
        mean = _col_mean(X)
        if not bool(torch.isfinite(mean).all()):  # a NaN/Inf anywhere makes its column mean non-finite
            bad = (~torch.isfinite(X)).any(dim=1).nonzero()
            raise _nonfinite(name, f" (first in row {int(bad[0, 0])})" if len(bad) else "")
        # (a constant layer is caught below: its centred self-inner-product is 0)
        Xc = X - mean
        del X
        if self.is_gram:
            self.K = _center(_tri_gram(Xc), debiased, inplace=True)
            if not bool(torch.isfinite(self.K.diagonal().sum())):
                raise _nonfinite(name, "")
        else:
            self.X = Xc
            self.r = (Xc * Xc).sum(dim=1)
            self.s = float(self.r.sum())


def _gram_gram(grams: list[_Layer]) -> torch.Tensor:
    """<K_i, K_j> for all pairs, accumulated in float64 over row blocks (one matmul per block)."""
    n = grams[0].n
    dev = grams[0].K.device
    P = torch.zeros((len(grams), len(grams)), dtype=torch.float64, device=dev)
    rows = max(1, _BLOCK_BYTES // (8 * n * len(grams)))
    for s in range(0, n, rows):
        G = torch.stack([g.K[s : s + rows].reshape(-1).to(dev, torch.float64) for g in grams])
        P += G @ G.T
    return P


def _gram_feat(g: _Layer, f: _Layer) -> float:
    """<C(K), Y Yᵀ> = Σ (C(K) Y) ∘ Y in float64; equals <C(K), C(YYᵀ)> for both centrings used here."""
    rows = max(1, _BLOCK_BYTES // (8 * g.n))
    Y = f.X.to(g.K.device)
    total = torch.zeros((), dtype=torch.float64, device=g.K.device)
    for s in range(0, g.n, rows):
        total += ((g.K[s : s + rows].to(torch.float64) @ Y) * Y[s : s + rows]).sum()
    return float(total)


def _feat_feat(a: _Layer, b: _Layer, debiased: bool) -> float:
    Y = b.X.to(a.X.device)
    xty = float(torch.linalg.matrix_norm(Y.T @ a.X) ** 2)
    if not debiased:
        return xty
    return _dot_debiased(xty, a.r, b.r.to(a.X.device), a.s, b.s, a.n)


class _Table:
    """Every inner product <C(K_u), C(K_v)> among a set of centred layers, each layer's Gram built once.

    ``groups`` are the layers of one or more models over the same n examples; ``block(g, h)`` is the (|g|, |h|)
    CKA table between groups g and h. All Gram·Gram products come from one stacked float64 matmul.
    """

    def __init__(self, groups: list[list[_Layer]], debiased: bool) -> None:
        self.groups, self.debiased = groups, debiased
        seen: dict[int, _Layer] = {}
        for layers in groups:
            for u in layers:
                seen.setdefault(id(u), u)
        everyone = list(seen.values())
        grams = [u for u in everyone if u.is_gram]
        self._gidx = {id(g): k for k, g in enumerate(grams)}
        self._P = _gram_gram(grams).cpu().numpy() if grams else np.zeros((0, 0))
        self._self = {id(u): self.inner(u, u) for u in everyone}

    def inner(self, u: _Layer, v: _Layer) -> float:
        if u.is_gram and v.is_gram:
            return float(self._P[self._gidx[id(u)], self._gidx[id(v)]])
        if u.is_gram or v.is_gram:
            return _gram_feat(u, v) if u.is_gram else _gram_feat(v, u)
        return _feat_feat(u, v, self.debiased)

    def check(self, g: int, side: str) -> None:
        for i, u in enumerate(self.groups[g]):
            if not self._self[id(u)] > 0:
                raise ZooscopeInputError(
                    f"{side}[{i}] carries no variation after centring, so CKA is undefined. Choose another layer."
                )

    def block(self, g: int, h: int) -> np.ndarray:
        A, B = self.groups[g], self.groups[h]
        out = np.empty((len(A), len(B)))
        for i, u in enumerate(A):
            for j, v in enumerate(B):
                out[i, j] = self._self[id(u)] if u is v else self.inner(u, v)
        sa = np.array([self._self[id(u)] for u in A])
        sb = np.array([self._self[id(v)] for v in B])
        return out / np.sqrt(np.outer(sa, sb))


def _layers(acts: Sequence[Any], side: str, n: int | None, *, exact: bool, debiased: bool,
            cache: dict[int, _Layer]) -> list[_Layer]:
    """One `_Layer` per activation; the same tensor object given twice is centred (and its Gram built) once."""
    out = []
    for i, A in enumerate(acts):
        if id(A) not in cache:
            cache[id(A)] = _Layer(A, f"{side}[{i}]", n, exact=exact, debiased=debiased)
        out.append(cache[id(A)])
        n = out[0].n
    return out


def linear_cka_matrix(
    acts_a: Sequence[Any],
    acts_b: Sequence[Any] | None = None,
    debiased: bool = False,
    *,
    exact: bool = False,
) -> np.ndarray:
    """Full-batch linear CKA between every layer of one network and every layer of another.

    Each layer is centred once (in its working dtype) and then kept either as its centred Gram matrix
    (layers wider than n/4; built once, from the blocks on and above the diagonal: ≈ n²p flops, like syrk)
    or as centred features (narrow layers); every pair is then an inner product: Gram·Gram as one blocked
    float64 matmul over all Gram layers, Gram·features as ``Σ (K Y) ∘ Y``, features·features as ``‖YᵀX‖²``.
    A layer passed twice (the same object) is processed once. The work runs in torch on the activations'
    device. float64 activations are multiplied in float64 (agreement with :func:`linear_cka` to ~1e-12);
    float32 ones use float32 GEMMs on batch-centred data (safe: centring removed the offsets that
    cancel badly; the Gram's own centring is float64-summed) with every sum and normalisation in float64,
    matching :func:`linear_cka` to < 1e-6.

    Parameters
    ----------
    acts_a : sequence of array-like, each of shape (n_samples, ...)
        Activations of the layers of model A (numpy or torch), flattened per example.
    acts_b : sequence of array-like, each of shape (n_samples, ...), optional
        Layers of model B for the same examples; None compares model A with itself.
    debiased : bool, default=False
        Use the unbiased HSIC₁ (needs n >= 4), as ``linear_cka(..., debiased=True)``.
    exact : bool, default=False
        Use float64 for the Gram products of float32 activations too (about 2x slower).

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
    cache: dict[int, _Layer] = {}
    layers_a = _layers(acts_a, "acts_a", None, exact=exact, debiased=debiased, cache=cache)
    layers_b = layers_a if same else _layers(acts_b, "acts_b", layers_a[0].n, exact=exact, debiased=debiased,
                                             cache=cache)
    table = _Table([layers_a] if same else [layers_a, layers_b], debiased)
    table.check(0, "acts_a")
    if not same:
        table.check(1, "acts_b")
    return table.block(0, 0 if same else 1)


# --------------------------------------------------------------------------------------------------
# Streamed: MinibatchCKA
# --------------------------------------------------------------------------------------------------


class MinibatchCKA:
    """Minibatch linear CKA for all layer pairs of two models, accumulated batch by batch.

    ``CKA_mb[i, j] = H₁(K_i, L_j) / sqrt(H₁(K_i, K_i) H₁(L_j, L_j))`` where H₁ is the per-batch unbiased
    HSIC₁ averaged over batches (Nguyen, Raghu, Kornblith 2021, eq. 3–4): the HSIC terms are summed
    first, the ratio is taken once at the end. It estimates *debiased* full-batch CKA, not biased CKA.

    Per batch, for each layer (once, even if the same tensor is passed for both models): subtract the batch
    mean of the flattened activations (HSIC₁ is exactly invariant to subtracting any fixed vector from every
    row, so this removes the offsets that make float32 Grams cancel — the NaNs of torch-cka — without
    changing the estimate), form the B × B Gram (a float32 GEMM for float32 activations, float64 for float64
    ones), U-centre it in float64, flatten it to B²; stack all layers of both models into G of shape
    (La + Lb, B²) and add ``G Gᵀ / (B − 3)`` to a float64 accumulator — ``<U(K), U(L)> / (B(B − 3))`` is
    HSIC₁, weighted by B. All of it runs in torch on the activations' device (numpy input is wrapped, not
    copied); only :meth:`result` leaves the device.

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
        self._acc: torch.Tensor | None = None  # float64 (L, L), on the device of the first batch
        self.n_batches_ = 0
        self.n_examples_ = 0
        self.n_skipped_ = 0
        return self

    def _u_gram(self, A: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened U-centred B × B Gram (float64) of one layer's batch activations, and its trace."""
        X = _as_matrix(A, name)
        X = X.to(torch.float64 if self._want64(X.dtype == torch.float64) else torch.float32)
        Xc = X - _col_mean(X)  # HSIC₁ is invariant to this shift (exactly); it only conditions the GEMM
        K = (Xc @ Xc.T).to(torch.float64)  # the GEMM in the activations' dtype; centring sums in float64
        trace = K.diagonal().sum()  # NaN/Inf anywhere in X or an overflowing Gram shows up here
        return _center(K, True, inplace=True).reshape(-1), trace

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
        grams: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # a tensor given twice is processed once
        flat, names = [], []
        for side, acts, _ in sides:
            for i, a in enumerate(acts):
                if id(a) not in grams:
                    grams[id(a)] = self._u_gram(a, f"{side}[{i}]")
                    names.append(f"{side}[{i}]")
                flat.append(grams[id(a)][0])
        dev = flat[0].device if self._acc is None else self._acc.device
        traces = torch.stack([g[1].to(dev) for g in grams.values()])
        finite = torch.isfinite(traces).cpu()  # the one host sync per batch
        if not bool(finite.all()):
            name = names[int((~finite).nonzero()[0, 0])]
            raise ZooscopeInputError(
                f"{name} gives a non-finite Gram matrix in batch {self.n_batches_}: the activations hold "
                "NaN/Inf or overflow float32. Check the checkpoint/inputs, or pass float64 activations."
            )
        G = torch.stack([g.to(dev) for g in flat])
        if self._acc is None:
            L = len(flat)
            self._acc = torch.zeros((L, L), dtype=torch.float64, device=dev)
        self._acc += (G @ G.T) / (B - 3.0)  # Σ_b B_b · HSIC₁_b, HSIC₁_b = <U(K), U(L)> / (B_b (B_b − 3))
        self.n_batches_ += 1
        self.n_examples_ += B
        return self

    @property
    def hsic_(self) -> np.ndarray:
        """Example-weighted mean HSIC₁ of every pair of stacked layers, shape (La + Lb, La + Lb)."""
        if self.n_examples_ == 0 or self._acc is None:
            raise ZooscopeInputError("MinibatchCKA has no batches yet: call update() first.")
        return self._acc.cpu().numpy() / self.n_examples_

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
