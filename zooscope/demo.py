"""`make demo`: build a small real zoo, embed and index it, and answer the two questions.

1. Compare two small CNNs trained from different seeds, layer by layer (``compare()``; heat-map PNG).
2. Build a zoo of ~12 small models trained on sklearn-digits / MNIST-5k / mnist1d tasks (checkpoints are cached
   in ``demo_out/checkpoints`` so a second run trains nothing), embed it (Task2Vec + CKA signatures), build the
   FAISS indices, and print a "most similar" table and a "select for this new task" table.
3. Write the zoo map (MDS of CKA distances) and a layer × layer heat-map of two zoo models.
4. Write the whole zoo as one HTML page, ``demo_out/report.html`` (`zooscope report`).

Run: ``python -m zooscope.demo [out_dir]`` (``make demo``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

console = Console()


#: every table the demo prints fits this many columns (or the terminal, if narrower)
TABLE_WIDTH = 100


def print_table(df: pd.DataFrame, *, title: str, index: bool = False) -> None:
    """Print a table under a title, one line per row, at most `TABLE_WIDTH` columns (the CLI's table rule)."""
    from zooscope._tables import fitted_table

    console.print(fitted_table(df, min(console.width, TABLE_WIDTH), title=title, index=index))


@dataclass(frozen=True)
class DemoModel:
    """One zoo member: its spec, training data and seed."""

    name: str
    arch: str
    dataset: str
    kwargs: dict = field(default_factory=dict)
    seed: int = 0
    epochs: int = 3
    copy_of: str | None = None  # a byte-identical checkpoint (a planted near-duplicate)


CNN = "zooscope.zoo.models:small_cnn"
MLP = "zooscope.zoo.models:mlp"

DATASETS = {
    "mnist": "builtin:mnist5k",
    "mnist-0to4": "builtin:mnist5k?classes=0,1,2,3,4",
    "mnist-5to9": "builtin:mnist5k?classes=5,6,7,8,9",
    "mnist-parity": "builtin:mnist5k?task=parity",
    "digits": "builtin:digits?size=28",
    "mnist1d": "builtin:mnist1d",
}
NEW_TASK = ("new-digits-0to4", "builtin:digits?size=28&classes=0,1,2,3,4")

MODELS = [
    DemoModel("cnn-mnist-a", CNN, "mnist", {"num_classes": 10}, seed=1),
    DemoModel("cnn-mnist-b", CNN, "mnist", {"num_classes": 10}, seed=2),
    DemoModel("cnn-mnist-a-copy", CNN, "mnist", {"num_classes": 10}, seed=1, copy_of="cnn-mnist-a"),
    DemoModel("cnn-0to4-a", CNN, "mnist-0to4", {"num_classes": 5}, seed=3),
    DemoModel("cnn-0to4-b", CNN, "mnist-0to4", {"num_classes": 5}, seed=4),
    DemoModel("cnn-5to9", CNN, "mnist-5to9", {"num_classes": 5}, seed=5),
    DemoModel("cnn-parity", CNN, "mnist-parity", {"num_classes": 2}, seed=6),
    DemoModel("cnn-digits", CNN, "digits", {"num_classes": 10}, seed=7, epochs=8),
    DemoModel("cnn-wide-mnist", CNN, "mnist", {"num_classes": 10, "width": 24}, seed=8),
    DemoModel("mnv3-mnist", "timm:mobilenetv3_small_050", "mnist", {"num_classes": 10, "in_chans": 1}, seed=9,
              epochs=2),
    DemoModel("mlp-mnist1d-a", MLP, "mnist1d", {"in_features": 40, "num_classes": 10}, seed=10, epochs=30),
    DemoModel("mlp-mnist1d-b", MLP, "mnist1d", {"in_features": 40, "num_classes": 10}, seed=11, epochs=30),
]
PROBE = DemoModel("probe-mnist", CNN, "mnist", {"num_classes": 10}, seed=99, epochs=3)
PROBE_1D = DemoModel("probe-mnist1d", MLP, "mnist1d", {"in_features": 40, "num_classes": 10}, seed=98, epochs=30)


def _checkpoint(m: DemoModel, ckpt_dir: Path) -> tuple[Path, float]:
    """Train ``m`` (or reuse its cached checkpoint); returns the path and the held-out accuracy."""
    from zooscope.nets.datasets import load_dataset
    from zooscope.nets.models import ModelSpec, load_checkpoint, save_checkpoint
    from zooscope.nets.training import split, train_classifier

    path = ckpt_dir / f"{m.copy_of or m.name}.safetensors"
    ds = load_dataset(DATASETS[m.dataset])
    x, y = ds.x, ds.y
    model = ModelSpec(m.arch, m.kwargs).build()
    if path.exists():
        load_checkpoint(model, path)
        from zooscope.nets.training import accuracy

        _, _, xv, yv = split(x, y, seed=m.seed)
        return path, accuracy(model, xv, yv)
    torch.manual_seed(m.seed)
    model = ModelSpec(m.arch, m.kwargs).build()
    xt, yt, xv, yv = split(x, y, seed=m.seed)
    res = train_classifier(model, xt, yt, epochs=m.epochs, seed=m.seed, x_val=xv, y_val=yv)
    save_checkpoint(model, path)
    return path, float(res.val_acc or 0.0)


def build_zoo(out: Path):
    """Create (or reopen) the demo zoo under ``out/zoo`` with every model and dataset registered."""
    import zooscope as zs

    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    zoo = zs.Zoo.create(out / "zoo")
    have_ds = set(zoo.datasets()["name"])
    for name, source in [*DATASETS.items(), NEW_TASK]:
        if name not in have_ds:
            zoo.add_dataset(name, source)
    have = set(zoo.models()["name"])
    for m in [PROBE, PROBE_1D, *MODELS]:
        t0 = time.perf_counter()
        path, acc = _checkpoint(m, ckpt_dir)
        if m in (PROBE, PROBE_1D):
            continue
        if m.name not in have:
            zoo.add_model(m.name, arch=m.arch, checkpoint=str(path), kwargs=m.kwargs, trained_on=m.dataset,
                          metrics={"val_acc": round(acc, 4)})
            console.print(f"  {m.name:<18} {m.arch:<32} on {m.dataset:<13} val acc {acc:.3f} "
                          f"({time.perf_counter() - t0:.1f} s)", highlight=False)
    probe_cfg = [(PROBE, (1, 28, 28)), (PROBE_1D, (1, 40))]
    for p, shape in probe_cfg:
        zoo.configure(task2vec_probe={"arch": p.arch, "kwargs": p.kwargs,
                                      "checkpoint": str(ckpt_dir / f"{p.name}.safetensors")}, input_shape=shape)
    return zoo


def main(out_dir: str | os.PathLike[str] = "demo_out") -> None:
    """Run the whole demo; every artefact goes under ``out_dir``."""
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    console.rule("[bold]1. compare(): two small CNNs trained from different seeds on sklearn digits")
    from zooscope import _demo_compare

    table = _demo_compare.main(out)
    print_table(table.round(3), title="linear CKA, layers of A × layers of B", index=True)

    console.rule("[bold]2. a zoo of small models (cached after the first run)")
    zoo = build_zoo(out)
    t0 = time.perf_counter()
    summary = zoo.embed(kinds=("task2vec", "cka"), progress=True)
    new = 0 if summary is None or not len(summary) else int((summary["status"] == "embedded").sum())
    console.print(f"embedded and indexed in {time.perf_counter() - t0:.1f} s "
                  + (f"({new} new pairs)" if new else "(nothing new: every pair was cached)"))
    failed = zoo.failures()
    if len(failed):
        print_table(failed, title="failed pairs")

    console.rule("[bold]3. which zoo model is most like cnn-mnist-a?")
    print_table(zoo.similar("cnn-mnist-a", k=5, by="cka"), title="similar('cnn-mnist-a', by='cka')")

    console.rule(f"[bold]4. which model should I transfer from for {NEW_TASK[0]}?")
    print_table(zoo.select(NEW_TASK[0], k=5), title=f"select('{NEW_TASK[0]}')")

    console.rule("[bold]5. curation")
    from zooscope.zoo import curate

    print_table(curate.duplicates(zoo, threshold=0.995), title="near-duplicate groups (CKA ≥ 0.995)")
    curate.zoo_map(zoo, by="cka", path=out / "zoo_map.png")
    curate.pair_heatmap(zoo, "cnn-mnist-a", "cnn-wide-mnist", out / "heatmap_zoo_pair.png")
    console.print(f"wrote {out / 'compare_heatmap.png'}, {out / 'zoo_map.png'}, {out / 'heatmap_zoo_pair.png'}")
    console.print(f"wrote {zoo.report(out / 'report.html')} (the whole zoo on one page: open it in a browser)")
    console.print(f"demo finished in {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
