"""``select --backend ray``.

The first halving round's feature passes as jobs of the one job runner (`zooscope.zoo.parallel.run_jobs`, the
mechanism of ``embed --backend ray``).

The driver writes the round's inputs once to ``cache/select_inputs/<hash>.safetensors`` (workers read it from the
zoo's shared storage, as they read ``probes/``), submits one `zooscope.zoo.parallel.FEATURES_KIND` job per
candidate whose features are not cached yet, and stores each result in the feature cache that the later rounds
(in this process) read. Nothing goes to the catalog: a query writes only under ``cache/``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zooscope._io import cached_array, write_cache
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.parallel import FEATURES_KIND, EmbedJob, run_jobs

__all__ = ["remote_round"]


def remote_round(backend: str, address: str | None) -> Callable[[list[Any], list[Any], Callable], None]:
    """``first_round(models, chunks, path_of)`` for `zooscope.zoo.select.budget.halving` on ``backend``."""
    if backend not in ("local", "ray"):
        raise ZooscopeInputError(f"'backend' of Zoo.select must be 'local' or 'ray'; got {backend!r}.")

    def first_round(models: list[Any], chunks: list[Any], path_of: Callable[[Any, int], Path]) -> None:
        import torch
        from safetensors.torch import save

        todo = [m for m in models if not all(path_of(m, j).is_file() for j in range(len(chunks)))]
        if not todo:
            return
        x = torch.cat([c.x for c in chunks]).contiguous()
        h = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:32]
        probe = path_of(todo[0], 0).parent.parent / "select_inputs" / f"{h}.safetensors"
        if not probe.is_file():
            write_cache(probe, save({"x": x}))
        by_name = {m.name: m for m in todo}
        jobs = [EmbedJob(FEATURES_KIND, "model", m.name, arch=m.spec, kwargs=m.kwargs, checkpoint=m.checkpoint,
                         probe_file=str(probe)) for m in todo]
        bounds = np.cumsum([0, *(len(c.x) for c in chunks)])
        for job, res, err in run_jobs(jobs, backend=backend, address=address):
            if res is None:  # computed again in this process by the round itself; say why once per model
                import logging

                logging.getLogger(__name__).warning("select feature pass of %s on Ray failed: %s", job.name,
                                                    (err or "").splitlines()[0])
                continue
            probs = _softmax(res.logits)
            for j, (a, b) in enumerate(itertools.pairwise(bounds)):
                part = {"features": res.vectors[a:b], "probs": probs[a:b] if probs.size else probs}
                cached_array(path_of(by_name[job.name], j), lambda part=part: part, keys=("features", "probs"))

    return first_round


def _softmax(logits: np.ndarray | None) -> np.ndarray:
    """Return the source head's softmax, as `zooscope.zoo.select.scores.features` stores it (empty without a head)."""
    if logits is None:
        return np.zeros(0)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
