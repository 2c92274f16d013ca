"""A model's cost on this machine.

FLOPs per example at its input shape (torch's own counter, `torch.utils.flop_counter.FlopCounterMode`, no
hand-written table) and measured seconds per batch of a forward pass.

Recorded once at ``add-model`` (or when `embed` settles an input shape left open) in the model's ``metrics`` JSON
under the key `COST_KEY` (no schema change: ``metrics`` travels with the model through export/import); ``zooscope ls
models`` shows ``gflops`` and ``s_per_batch``. `select`'s budget (`zooscope.zoo.select.budget`) plans successive
halving from it, so the plan is the same on every run (no timing inside a query).

FlopCounterMode counts a multiply-add as 2 FLOPs; convolutions, matmuls and attention are counted, elementwise
ops are not (they are a few percent on the nets of the zoo).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["COST_BATCH", "COST_KEY", "measure_cost", "seconds_per_example"]

COST_KEY = "cost"  # metrics[COST_KEY] = {"flops_per_example", "s_per_batch", "batch", "threads"}
COST_BATCH = 16  # the batch timed for ``s_per_batch``


def measure_cost(model: nn.Module, input_shape: Sequence[int], *, batch: int = COST_BATCH,
                 seed: int = 0) -> dict[str, Any]:
    """``{"flops_per_example", "s_per_batch", "batch", "threads"}`` of an inference forward pass.

    One pass of one example under `FlopCounterMode` (it also warms the model up), then one timed pass of ``batch``
    random examples (the best of two when the first is under 0.1 s, to damp a loaded machine's noise).
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(s) for s in input_shape)
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            counter = FlopCounterMode(display=False)
            with counter:
                model(torch.randn((1, *shape), generator=g))
            flops = int(counter.get_total_flops())
            x = torch.randn((int(batch), *shape), generator=g)
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
                if times[0] >= 0.1:
                    break
    finally:
        model.train(was_training)
    return {"flops_per_example": flops, "s_per_batch": float(min(times)), "batch": int(batch),
            "threads": int(torch.get_num_threads())}


def seconds_per_example(cost: dict[str, Any] | None) -> float | None:
    """Measured forward seconds per example of a recorded cost (None when none is recorded)."""
    if not isinstance(cost, dict) or not cost.get("batch") or cost.get("s_per_batch") is None:
        return None
    return float(cost["s_per_batch"]) / int(cost["batch"])
