"""Kernel math of the gradient-kernel similarity (Tang et al. 2020): kernels and the xfer indices.

Public names are re-exported by :mod:`zooscope.measures.sketch`, which documents the method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, as_matrix, check_choice, check_finite
from zooscope.measures.kernels import _center, psd_sqrt

Index = Literal["cka", "nbs", "euclidean"]
_CHUNK = 1 << 22  # entries per float64 chunk when a float32 matrix is multiplied in float64


def _gram(A: np.ndarray) -> np.ndarray:
    """Return a Aᵀ in float64; a float32 A is promoted chunk by chunk over columns (memory O(M·chunk))."""
    if A.dtype == np.float64:
        return A @ A.T
    step = max(1, _CHUNK // max(A.shape[0], 1))
    K = np.zeros((A.shape[0], A.shape[0]))
    for j in range(0, A.shape[1], step):
        a = A[:, j : j + step].astype(np.float64)
        K += a @ a.T
    return K


def gradient_kernel(F: npt.ArrayLike, G: npt.ArrayLike) -> np.ndarray:
    """Return the exact gradient kernel K = (F Fᵀ) ∘ (G Gᵀ), i.e. K_ij = <f_i, f_j> <g_i, g_j>.

    Parameters
    ----------
    F : array-like of shape (n, d_f)
        Features of one layer, one row per example.
    G : array-like of shape (n, d_g)
        Activation gradients of the same examples.

    Returns
    -------
    ndarray of shape (n, n), float64
        Symmetric positive semi-definite.  For z = W f it equals <∂ℓ/∂W(x_i), ∂ℓ/∂W(x_j)>_F with g = ∂ℓ/∂z.

    Examples
    --------
    >>> gradient_kernel([[1.0, 0.0], [0.0, 2.0]], [[3.0], [1.0]])
    array([[9., 0.],
           [0., 4.]])
    """
    F, G = as_matrix(F, "F"), as_matrix(G, "G")
    if F.shape[0] != G.shape[0]:
        raise ZooscopeInputError(
            f"F and G must hold the same examples in the same order; got {F.shape[0]} and {G.shape[0]} rows."
        )
    check_finite(F, "F")
    check_finite(G, "G")
    return _gram(F) * _gram(G)


def sketched_kernel(SF: npt.ArrayLike, SG: npt.ArrayLike, T: int = 1) -> np.ndarray:
    """Return the xfer sketched kernel K̃ = (SF)(SF)ᵀ/T ∘ (SG)(SG)ᵀ/T, in float64.

    Parameters
    ----------
    SF : array-like of shape (M, d_f)
        Sketched features S F, with S's entries 0/±1 (no 1/√T factor).
    SG : array-like of shape (M, d_g)
        Sketched gradients S G with the same S.
    T : int, default=1
        Non-zeros per column of S; each factor is divided by T (the reference scales S by 1/√T).

    Returns
    -------
    ndarray of shape (M, M)
        Not S (FFᵀ ∘ GGᵀ) Sᵀ: examples sharing a bucket add cross terms.
    """
    SF, SG = np.asarray(SF), np.asarray(SG)
    if SF.ndim != 2 or SG.ndim != 2 or SF.shape[0] != SG.shape[0]:
        raise ZooscopeInputError(f"SF and SG must be (M, d) with the same M; got {SF.shape} and {SG.shape}.")
    if SF.dtype not in (np.float32, np.float64):
        SF = SF.astype(np.float64)
    if SG.dtype not in (np.float32, np.float64):
        SG = SG.astype(np.float64)
    if not (isinstance(T, (int, np.integer)) and T >= 1):
        raise ZooscopeInputError(f"'T' of sketched_kernel must be an int >= 1; got {T!r}.")
    return (_gram(SF) / T) * (_gram(SG) / T)


def center_kernel(K: npt.ArrayLike) -> np.ndarray:
    """Biased double centring H K H of a symmetric kernel (xfer's centering), float64: ``kernels._center``."""
    return _center(np.array(K, dtype=np.float64), False, inplace=True)


def check_kernel_stack(Ks_a: Sequence[npt.ArrayLike], Ks_b: Sequence[npt.ArrayLike], owner: str,
                       names: tuple[str, str] = ("Ks_a", "Ks_b")) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate two lists of kernels: square, finite, symmetric, one common size; float64, symmetrised."""
    out = []
    for side, Ks in zip(names, (Ks_a, Ks_b), strict=True):
        checked = []
        for i, K in enumerate(Ks):
            what = side if len(Ks) == 1 and not side.startswith("Ks") else f"{side}[{i}]"
            K = as_matrix(K, what)
            if K.shape[0] == 0:
                raise ZooscopeInputError(f"{owner}: {what} is empty (no examples).")
            if K.shape[0] != K.shape[1]:
                raise ZooscopeInputError(f"{owner}: {what} must be a square kernel; got shape {K.shape}.")
            check_finite(K, what)
            scale = max(float(np.abs(K).max(initial=0.0)), 1e-300)
            if not np.allclose(K, K.T, rtol=1e-5, atol=1e-7 * scale):
                raise ZooscopeInputError(f"{owner}: {what} is not symmetric; pass a Gram/kernel matrix.")
            checked.append((K + K.T) / 2)
        out.append(checked)
    sizes = {K.shape[0] for K in out[0] + out[1]}
    if len(sizes) > 1:
        raise ZooscopeInputError(
            f"{owner}: kernels must share one size (the same examples, or the same M buckets); got sizes "
            f"{sorted(sizes)}. Use the same sketch_dim for both models."
        )
    if not out[0] or not out[1]:
        raise ZooscopeInputError(f"{owner}: got no kernels.")
    return out[0], out[1]


def _nbs_from_root(R: np.ndarray, tr_a: float, Kc_b: np.ndarray) -> float:
    # eig(K̄a K̄b) = eig(K̄a^½ K̄b K̄a^½), the symmetric form: eigvalsh instead of xfer's general eigvals
    lam = np.linalg.eigvalsh(R @ Kc_b @ R)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum() / np.sqrt(tr_a * np.trace(Kc_b)))


def _check_nondegenerate(Kc: np.ndarray, what: str) -> None:
    if not np.abs(Kc).max(initial=0.0) > 0:
        raise ZooscopeInputError(
            f"{what} is constant after centring (all features or all gradients identical, e.g. beta=1 makes "
            "every gradient zero), so CKA/NBS are undefined. Choose another layer or beta."
        )


def kernel_index(K: np.ndarray, L: np.ndarray, index: Index) -> float:
    """One xfer index between two clean, symmetric kernels of equal size (see :func:`kernel_index_matrix`)."""
    return float(kernel_index_matrix([K], [L], index)[0, 0])


def kernel_index_matrix(Ks_a: Sequence[npt.ArrayLike], Ks_b: Sequence[npt.ArrayLike],
                        index: Index = "cka") -> np.ndarray:
    """Xfer's similarity indices between every kernel of A and every kernel of B (a layer × layer heat-map).

    Parameters
    ----------
    Ks_a : sequence of array-like of shape (m, m)
        Kernels of model A's layers (exact n × n, or sketched M × M).
    Ks_b : sequence of array-like of shape (m, m)
        Kernels of model B's layers, over the same examples or buckets.
    index : {"cka", "nbs", "euclidean"}
        "cka": <K̄a, K̄b>_F / (‖K̄a‖_F ‖K̄b‖_F) with K̄ = HKH; in [0, 1], larger is more similar.
        "nbs": Σ√max(0, λ(K̄a K̄b)) / √(tr K̄a · tr K̄b); in [0, 1], larger is more similar.
        "euclidean": ‖Ka − Kb‖_F of the raw kernels; >= 0, smaller is more similar.

    Returns
    -------
    ndarray of shape (len(Ks_a), len(Ks_b)), float64

    Examples
    --------
    >>> K = gradient_kernel(np.eye(4)[:, :3], np.ones((4, 1)))
    >>> kernel_index_matrix([K], [K, 2 * K], "cka").round(12).tolist()
    [[1.0, 1.0]]
    """
    check_choice(index, ("cka", "nbs", "euclidean"), "index", "kernel_index_matrix")
    A, B = check_kernel_stack(Ks_a, Ks_b, "kernel_index_matrix")
    out = np.empty((len(A), len(B)))
    if index == "euclidean":
        for i, Ka in enumerate(A):
            for j, Kb in enumerate(B):
                out[i, j] = np.linalg.norm(Ka - Kb)
        return out
    Ca, Cb = [center_kernel(K) for K in A], [center_kernel(K) for K in B]
    for side, Cs in (("Ks_a", Ca), ("Ks_b", Cb)):
        for i, C in enumerate(Cs):
            _check_nondegenerate(C, f"{side}[{i}]")
    if index == "cka":
        Va = np.stack([C.ravel() / np.linalg.norm(C) for C in Ca])
        Vb = np.stack([C.ravel() / np.linalg.norm(C) for C in Cb])
        return np.clip(Va @ Vb.T, -1.0, 1.0)
    for i, C in enumerate(Ca):
        R, tr_a = psd_sqrt(C), float(np.trace(C))  # the root of K̄a, computed once for every K̄b
        for j, D in enumerate(Cb):
            out[i, j] = _nbs_from_root(R, tr_a, D)
    return np.clip(out, 0.0, 1.0)
