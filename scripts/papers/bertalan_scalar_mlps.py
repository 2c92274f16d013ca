"""Bertalan, Dietrich, Kevrekidis et al. 2020, first experiment in miniature: two MLPs, one scalar function.

Two small MLPs are trained (CPU, one thread, a few seconds) from different seeds on the same
non-monotonic function f(x) = x sin(3 pi x), x in [0, 1]. Each network is observed through its output
plus two hidden units of its last hidden layer (Whitney: 2d + 1 = 3 generic observations embed a
d = 1 input). Mahalanobis diffusion maps (C_i = J_i J_i^T from autodiff) give both networks the same
intrinsic coordinate; a NetworkTransform maps A's observations to B's, scored on held-out inputs.

Controls: the Euclidean metric (coordinates depend on each network's observation map), and observing B
through its scalar output alone (a folded, non-injective observation: no invertible transformation).

Run:  OMP_NUM_THREADS=1 python scripts/papers/bertalan_scalar_mlps.py      (about 10 s)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from zooscope.embed.covariances import jacobian_covariances
from zooscope.measures.transform import NetworkTransform, relative_error


def target(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sin(3 * torch.pi * x)


def train_mlp(seed: int, steps: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, 1)).double()
    x = torch.linspace(0, 1, 256, dtype=torch.float64)[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((net(x) - target(x)) ** 2)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def observer(net: torch.nn.Sequential, units: list[int] | None):
    """Observation map x -> (output, chosen last-hidden units); units=None: the output alone."""
    hidden, head = net[:-1], net[-1]

    def observe(x: torch.Tensor) -> torch.Tensor:
        h = hidden(x)
        return head(h) if units is None else torch.cat([head(h), h[:, units]], dim=1)

    return observe


def pick_units(net: torch.nn.Sequential, k: int = 2) -> list[int]:
    """The k last-hidden units that vary most over [0, 1] (a generic, data-driven choice)."""
    with torch.no_grad():
        h = net[:-1](torch.linspace(0, 1, 200, dtype=torch.float64)[:, None])
    return [int(i) for i in torch.argsort(h.std(dim=0), descending=True)[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per network")
    parser.add_argument("--n-train", type=int, default=300, help="inputs used to fit the transformation")
    parser.add_argument("--n-test", type=int, default=200, help="held-out inputs for the error")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    nets = {seed: train_mlp(seed, args.steps) for seed in (0, 1)}
    grid = torch.linspace(0, 1, 400, dtype=torch.float64)[:, None]
    with torch.no_grad():
        fit_err = {s: float(torch.sqrt(torch.mean((n(grid) - target(grid)) ** 2))) for s, n in nets.items()}
    print(f"trained two MLPs 1-32-32-1 (tanh), seeds 0 and 1: RMSE vs f = {fit_err[0]:.4f}, {fit_err[1]:.4f}")

    rng = np.random.default_rng(2020)
    x = rng.uniform(0, 1, size=(args.n_train + args.n_test, 1))
    tr, te = slice(0, args.n_train), slice(args.n_train, None)
    obs_a = observer(nets[0], pick_units(nets[0]))
    cases = {"output + 2 hidden units": observer(nets[1], pick_units(nets[1])),
             "output only (folded)": observer(nets[1], None)}
    ya = obs_a(torch.as_tensor(x)).detach().numpy()
    ca = jacobian_covariances(obs_a, x)

    print(f"\n{'B observed through':<26}{'metric':<13}{'held-out error':>15}  {'coord |corr|':<22}verdict")
    for label, obs_b in cases.items():
        yb = obs_b(torch.as_tensor(x)).detach().numpy()
        cb = jacobian_covariances(obs_b, x)
        for metric in ("mahalanobis", "euclidean"):
            nt = NetworkTransform(n_components=3, metric=metric)
            kw_fit = {"covariances_a": ca[tr], "covariances_b": cb[tr]} if metric == "mahalanobis" else {}
            kw_te = {"covariances_a": ca[te]} if metric == "mahalanobis" else {}
            nt.fit(ya[tr], yb[tr], **kw_fit)
            err = nt.score(ya[te], yb[te], **kw_te)
            agree = ", ".join(f"{c:.3f}" for c in nt.coordinate_agreement_)
            verdict = "equivalent" if nt.is_equivalent(threshold=0.05) else "not equivalent"
            print(f"{label:<26}{metric:<13}{err:>15.4f}  {agree:<22}{verdict}")

    # Whitney's point: from A's three observations, B's output (a different network) is a function of x.
    nt = NetworkTransform(n_components=3, metric="mahalanobis", align="none")
    yb_out = cases["output only (folded)"](torch.as_tensor(x)).detach().numpy()
    nt.fit(ya[tr], yb_out[tr], covariances_a=ca[tr])
    err_out = nt.score(ya[te], yb_out[te], covariances_a=ca[te])
    nt_x = NetworkTransform(n_components=3, metric="mahalanobis", align="none").fit(ya[tr], x[tr],
                                                                                   covariances_a=ca[tr])
    err_x = relative_error(nt_x.transform(ya[te], covariances_a=ca[te]), x[te])
    print(f"\nfrom A's observations (regressing directly on A's coordinates): B's output error {err_out:.4f}, "
          f"input x error {err_x:.4f}")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
