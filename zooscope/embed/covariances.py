"""Per-example output covariances C_i = J_i J_i^T of a network (the inputs of the Mahalanobis measures).

``jacobian_covariances`` gets C_i from torch autodiff; ``burst_covariances`` estimates it from short "bursts" of
perturbed inputs, for black-box networks. They run networks (``nn.Module`` or any callable), so they live in
``embed/``; the distances on their results are pure math in :mod:`zooscope.measures.mahalanobis`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from zooscope._validation import ZooscopeInputError, _to_numpy, check_positive
from zooscope.measures.mahalanobis import _check_inputs, _outputs_2d

__all__ = ["burst_covariances", "jacobian_covariances"]


def _torch_inputs(x: Any, fn: Callable[..., Any], dtype: Any) -> Any:
    """``x`` as a tensor in ``fn``'s dtype and device (float64 for plain functions)."""
    import torch

    xt = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    params = list(fn.parameters()) if isinstance(fn, torch.nn.Module) else []
    if dtype is None:
        dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float64
    return xt.to(dtype=dtype, device=params[0].device if params else xt.device)


def jacobian_covariances(
    fn: Callable[..., Any], x: npt.ArrayLike, *, batch_size: int = 256, dtype: Any = None
) -> np.ndarray:
    """Output covariances C_i = J_i J_i^T from the Jacobian J_i = d fn(x_i) / d x_i (torch autodiff).

    Parameters
    ----------
    fn : callable
        A torch function or ``nn.Module`` mapping a batch (b, *input_shape) to outputs (b, *output_shape);
        the samples of a batch must not interact (call ``model.eval()`` first if it has batch norm).
    x : array-like or torch.Tensor of shape (n_samples, *input_shape)
        The inputs at which to differentiate.
    batch_size : int, default=256
        Inputs per forward pass.
    dtype : torch.dtype, optional
        Dtype for the forward pass; default: that of ``fn``'s first parameter, else float64.

    Returns
    -------
    np.ndarray of shape (n_samples, m, m)
        float64 covariances, m = prod(output_shape); rank <= min(m, prod(input_shape)).

    Notes
    -----
    One backward pass per output unit (m passes per batch): cheap for the small m of network outputs or
    a few selected neurons. J_i is cast to float64 before the product, so C_i has exact rank <= d up to
    float64 round-off even when ``fn`` runs in float32.

    Examples
    --------
    >>> import torch
    >>> C = jacobian_covariances(lambda x: torch.cat([x, 2 * x], dim=1), np.zeros((3, 1)))
    >>> C[0].tolist()
    [[1.0, 2.0], [2.0, 4.0]]
    """
    import torch

    if not callable(fn):
        raise ZooscopeInputError(f"fn must be a callable (a torch function or nn.Module); got {type(fn)}.")
    _check_inputs(x)
    if int(batch_size) < 1:
        raise ZooscopeInputError(f"'batch_size' of jacobian_covariances must be >= 1; got {batch_size}.")
    xt = _torch_inputs(x, fn, dtype)
    out = []
    for start in range(0, xt.shape[0], int(batch_size)):
        xb = xt[start : start + int(batch_size)].clone().requires_grad_(True)
        with torch.enable_grad():
            y = _outputs_2d(fn(xb), xb.shape[0])
            rows = []
            for k in range(y.shape[1]):  # d y_k / d x for every sample at once: samples are independent
                (g,) = torch.autograd.grad(y[:, k].sum(), xb, retain_graph=k + 1 < y.shape[1],
                                           allow_unused=True)
                rows.append(torch.zeros_like(xb) if g is None else g)
        J = torch.stack(rows, dim=1).reshape(xb.shape[0], y.shape[1], -1).detach().cpu().double().numpy()
        out.append(J @ J.transpose(0, 2, 1))
    return np.concatenate(out, axis=0)


def _apply_numpy(fn: Callable[..., Any], X: np.ndarray) -> np.ndarray:
    """Call ``fn`` on a float64 batch: torch modules get a tensor in their dtype, others numpy."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(fn, torch.nn.Module):
        with torch.no_grad():
            y = fn(_torch_inputs(X, fn, None))
        return _to_numpy(y).astype(np.float64).reshape(X.shape[0], -1)
    y = _to_numpy(fn(X)).astype(np.float64)
    return _outputs_2d(y, X.shape[0])


def burst_covariances(
    fn: Callable[..., Any],
    x: npt.ArrayLike,
    radius: float,
    n_burst: int = 32,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Output covariances from short input "bursts": C_i ~ Cov[fn(x_i + radius * xi)] / radius^2.

    Parameters
    ----------
    fn : callable
        Maps a batch of inputs (b, *input_shape) to outputs (b, *output_shape): a numpy function, or a torch
        ``nn.Module`` (called under ``no_grad`` in its own dtype). No gradients are needed.
    x : array-like of shape (n_samples, *input_shape)
        Burst centres.
    radius : float
        Standard deviation of the isotropic Gaussian burst, xi ~ N(0, I). Small compared with the scale on
        which fn curves, large compared with the output noise.
    n_burst : int, default=32
        Perturbed inputs per centre; use at least input_dim + 1 (more gives a less noisy estimate).
    seed : int or np.random.Generator, default=0
        Randomness of the bursts.

    Returns
    -------
    np.ndarray of shape (n_samples, m, m)
        float64 estimates of J_i J_i^T (the 1/radius^2 puts them on the scale of ``jacobian_covariances``).

    Notes
    -----
    Cov[J xi radius] = radius^2 J J^T, so dividing by radius^2 estimates J J^T with a bias O(radius^2) from
    curvature. Curvature and sampling noise also fill the directions normal to the output manifold with
    small eigenvalues: pass ``rank=input_dim`` to :func:`mahalanobis_sq_distances` so they are not inverted.
    """
    if not callable(fn):
        raise ZooscopeInputError(f"fn must be a callable; got {type(fn)}.")
    _check_inputs(x)
    radius = check_positive(radius, "radius", "burst_covariances")
    if int(n_burst) < 2:
        raise ZooscopeInputError(f"'n_burst' of burst_covariances must be >= 2; got {n_burst}.")
    X = _to_numpy(x).astype(np.float64)
    n, shape = X.shape[0], X.shape[1:]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        burst = X[i][None] + radius * rng.standard_normal((int(n_burst), *shape))
        Yb = _apply_numpy(fn, burst)
        Yb = Yb - Yb.mean(axis=0)
        out.append(Yb.T @ Yb / ((int(n_burst) - 1) * radius**2))
    return np.stack(out)
