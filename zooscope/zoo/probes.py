"""Probe sets (the fixed inputs every model of one input shape is embedded on) and input-shape rules.

Default probe set of a shape: a stratified, seeded subset of ``probe_n`` examples of the first registered
dataset (registration order) with that input shape, or the dataset ``configure(probe_dataset=…)`` named. Its id
is ``<dataset>-n<n>-s<seed>-<sha256[:10]>``: the same choice gives the same id and the same tensors.

Writers materialise it once (`materialise`: ``<zoo>/probes/<hash>.safetensors`` + the catalog's ``probe_sets``);
readers (`probe_inputs`) use the materialised file when there is one and otherwise compute the same tensors in
memory, keeping a copy only under the zoo's deletable cache.

Files are named by a hash of the probe set's id (`probe_file_name`), never by the dataset's name. The record keeps
the file's sha256 (``file_sha256``) and the tensors' (``sha256``); every read of a materialised file checks it
(`verified_probe`): a mismatch is a `zooscope.zoo.integrity.CorruptFileError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zooscope._io import atomic_write, write_cache
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog, DatasetRecord
from zooscope.zoo.integrity import CorruptFileError, verified_bytes, verify_file
from zooscope.zoo.settings import ZooPaths, ZooSettings, shape_key

__all__ = ["ProbeContext", "find_input_shape", "loadable_net", "materialise", "probe_file_name", "probe_inputs",
           "probe_net_untrained", "recorded", "shape_candidates", "store_task2vec_probe", "task2vec_net",
           "train_task2vec_probe", "untrained_note", "untrained_shapes", "verified_probe"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeContext:
    """What probe-set code reads: the catalog (datasets), the settings and the zoo's paths."""

    catalog: Catalog
    settings: ZooSettings
    paths: ZooPaths


def probe_file_name(probe_id: str) -> str:
    """Return the file name of a probe set: a hash of its id (which holds the dataset name: data, never a path)."""
    return hashlib.sha256(probe_id.encode("utf-8")).hexdigest()[:32] + ".safetensors"


def recorded(ctx: ProbeContext, shape: Sequence[int]) -> dict[str, Any] | None:
    """Return the materialised probe set of ``shape`` (its file exists, inside the zoo), else None."""
    rec = ctx.settings.probe_sets.get(shape_key(shape))
    if rec and _inside(ctx, rec["file"]).is_file():
        return dict(rec)
    return None


def _inside(ctx: ProbeContext, rel: str) -> Path:
    """``<zoo>/<rel>``, refusing a recorded path that leads out of the zoo folder."""
    root = ctx.paths.root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise ZooscopeInputError(f"The catalog's probe-set path {rel!r} leads outside the zoo; refusing it.")
    return path


def verified_probe(ctx: ProbeContext, rec: dict[str, Any]) -> dict[str, Any]:
    """Return the tensors of a materialised probe set, after checking the file (and the tensors) against the record.

    Raises
    ------
    CorruptFileError
        The file's sha256 (or, for records without one, the tensors' sha256) differs from the recorded one.
    """
    from safetensors.torch import load

    from zooscope.nets.datasets import tensors_sha256

    path = _inside(ctx, rec["file"])
    data = verified_bytes(path, rec.get("file_sha256"), "probe-set")
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types on a damaged header
        raise CorruptFileError(f"The probe-set file {path} cannot be read ({type(e).__name__}: {e}). Run "
                               "`zooscope check --fix` to re-make it.", path) from None
    if not rec.get("file_sha256") and rec.get("sha256") and \
            tensors_sha256(tensors["x"], tensors.get("y")) != rec["sha256"]:
        raise CorruptFileError(f"The probe-set file {path} is corrupt: its tensors' sha256 differs from the "
                               f"recorded {rec['sha256'][:12]}…. Run `zooscope check --fix` to re-make it.", path)
    return tensors


def _compute(ctx: ProbeContext, shape: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record without "file", tensors {"x", "y"?}) of the default probe set of ``shape``, in memory."""
    from zooscope.nets.datasets import load_dataset, probe_subset, tensors_sha256

    key = shape_key(shape)
    name = ctx.settings.probe_datasets.get(key)
    if name is None:
        fits = [d for d in sorted(ctx.catalog.datasets(), key=lambda d: d.id)
                if d.input_shape and tuple(d.input_shape) == tuple(shape)]
        if not fits:
            raise ZooscopeInputError(
                f"No registered dataset has inputs of shape {tuple(shape)}, so models of that shape have no probe "
                "set. Add one (zoo.add_dataset(name, source=…)) or configure(probe_dataset=…).")
        name = fits[0].name
    d = ctx.catalog.get_dataset(name)
    ds = load_dataset(d.source, split=d.meta.get("split", "train"), seed=int(d.meta.get("seed", 0)))
    n, seed = ctx.settings.probe_n, ctx.settings.probe_seed
    sub = probe_subset(ds, min(n, len(ds)), seed=seed, stratified=ds.y is not None)
    sha = tensors_sha256(sub.x, sub.y)
    pid = f"{name}-n{len(sub)}-s{seed}-{sha[:10]}"
    tensors = {"x": sub.x.contiguous()} | ({"y": sub.y.contiguous()} if sub.y is not None else {})
    rec = {"id": pid, "dataset": name, "n": len(sub), "seed": seed, "sha256": sha, "input_shape": list(shape)}
    return rec, tensors


def materialise(ctx: ProbeContext, shape: Sequence[int]) -> dict[str, Any]:
    """Return the probe set of ``shape``, written to ``<zoo>/probes/<id>.safetensors`` and recorded on first use."""
    from safetensors.torch import save

    shape = tuple(int(s) for s in shape)
    rec = recorded(ctx, shape)
    if rec is not None:
        if rec.get("file_sha256"):
            verify_file(_inside(ctx, rec["file"]), rec["file_sha256"], "probe-set")
        else:
            verified_probe(ctx, rec)
        return rec
    rec, tensors = _compute(ctx, shape)
    path = ctx.paths.probes / probe_file_name(rec["id"])
    rec["file_sha256"] = atomic_write(path, save(tensors))
    rec["file"] = str(path.relative_to(ctx.paths.root))
    sets = dict(ctx.catalog.get_setting("probe_sets", {}) or {})
    sets[shape_key(shape)] = rec
    ctx.catalog.set_setting("probe_sets", sets)
    return rec


def probe_inputs(ctx: ProbeContext, shape: Sequence[int]) -> tuple[dict[str, Any], Any]:
    """(record, x tensor) of ``shape``'s probe set without writing the zoo (read-only queries).

    The materialised file when there is one; else the same tensors computed in memory (a copy is kept under
    the cache folder, keyed by the probe-set id).
    """
    from safetensors.torch import save

    shape = tuple(int(s) for s in shape)
    rec = recorded(ctx, shape)
    if rec is not None:
        return rec, verified_probe(ctx, rec)["x"]
    rec, tensors = _compute(ctx, shape)
    cached = ctx.paths.cache / "probes" / probe_file_name(rec["id"])
    write_cache(cached, save(tensors))
    return rec, tensors["x"]


def shape_candidates(datasets: list[DatasetRecord], explicit: Sequence[int] | None, trained_on: str | None,
                     kwargs: dict | None, model: Any) -> list[tuple[int, ...]]:
    """Input shapes to try for a model, in order: explicit; its ``trained_on`` dataset's.

    The kwargs' (``in_features``, ``in_chans`` × ``img_size``²); every registered dataset's; timm's default.
    """
    if explicit is not None:
        return [tuple(int(s) for s in explicit)]
    out: list[tuple[int, ...]] = []
    datasets = sorted(datasets, key=lambda d: d.id)
    out += [tuple(d.input_shape) for d in datasets if d.name == trained_on and d.input_shape]
    kw = dict(kwargs or {})
    if "in_features" in kw:
        out.append((int(kw["in_features"]),))
    if "in_chans" in kw and "img_size" in kw:
        side = kw["img_size"]
        hw = tuple(side) if isinstance(side, list | tuple) else (side, side)
        out.append((int(kw["in_chans"]), *map(int, hw)))
    out += [tuple(d.input_shape) for d in datasets if d.input_shape]
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if cfg.get("input_size"):
        out.append((int(kw.get("in_chans", cfg["input_size"][0])), *map(int, cfg["input_size"][1:])))
    return list(dict.fromkeys(out))


def find_input_shape(model: Any, candidates: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Return the first candidate shape that a dry forward pass (batch of 2 zeros, eval, no grad) accepts."""
    import torch

    was_training = model.training
    model.eval()
    errors = []
    try:
        for shape in candidates:
            try:
                with torch.no_grad():
                    model(torch.zeros((2, *shape)))
                return shape
            except Exception as e:  # any failure means "not this shape"
                errors.append(f"{shape}: {type(e).__name__}")
    finally:
        model.train(was_training)
    tried = "; ".join(errors) if errors else "none (no registered dataset and no in_chans/img_size kwargs)"
    raise ZooscopeInputError(
        f"Could not find an input shape this model accepts (tried {tried}). Pass input_shape=(C, H, W), "
        "register a dataset it fits first, or give trained_on.")


# -- the Task2Vec probe network per input shape ------------------------------------------------------------------
T2V_PROBE_PER_DATASET = 1000  # training examples per registered dataset (stratified, seeded subset of its train split)
T2V_PROBE_EPOCHS = 3


def probe_net_untrained(net: dict[str, Any] | None) -> bool:
    """Return true for a Task2Vec probe network with random weights (no checkpoint, not ``pretrained``)."""
    return bool(net) and not net.get("checkpoint") and not net.get("pretrained")


def untrained_note(nets: Sequence[dict[str, Any] | None]) -> str | None:
    """One line for answers built on task vectors of an untrained probe network, else None."""
    bad = sorted({n["arch"] for n in nets if probe_net_untrained(n)})
    if not bad:
        return None
    return (f"task vectors come from an UNTRAINED probe network ({', '.join(bad)}): task distances are not "
            "meaningful; train one on the registered data (`zooscope configure --task2vec-probe trained`, or the next "
            "`zooscope embed` when none was configured) or name one (`zooscope configure --task2vec-probe SPEC "
            "--task2vec-probe-checkpoint F --input-shape C,H,W`)")


def task2vec_net(ctx: ProbeContext, shape: Sequence[int], num_classes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request form, loadable form) of ``shape``'s Task2Vec probe network (`ZooSettings.task2vec_probe`).

    The request form is what identifies task vectors (arch, kwargs, the checkpoint's zoo-relative path and
    sha256, pretrained); the loadable form has the checkpoint's absolute path, after checking its sha256.
    """
    net = ctx.settings.task2vec_probe(tuple(int(s) for s in shape), int(num_classes))
    request = {k: net[k] for k in ("arch", "kwargs", "checkpoint", "checkpoint_sha256", "pretrained") if k in net}
    return request, loadable_net(ctx, request)


def loadable_net(ctx: ProbeContext, net: dict[str, Any]) -> dict[str, Any]:
    """``net`` with its checkpoint as an absolute path (a zoo file is checked against its sha256 first)."""
    out = dict(net)
    ckpt = net.get("checkpoint")
    if ckpt and not Path(ckpt).is_absolute():  # a file under <zoo>/probes/ (absolute: set before zoo files existed)
        path = _inside(ctx, ckpt)
        verify_file(path, net.get("checkpoint_sha256"), "Task2Vec probe network")
        out["checkpoint"] = str(path)
    return out


def _labelled(ctx: ProbeContext, shape: tuple[int, ...]) -> list[dict[str, Any]]:
    return [d for d in sorted(ctx.catalog.datasets(), key=lambda d: d.id)
            if d.input_shape and tuple(d.input_shape) == shape and int(d.num_classes or 0) >= 2]


def untrained_shapes(ctx: ProbeContext) -> list[tuple[int, ...]]:
    """Input shapes of registered labelled datasets whose Task2Vec probe network would be untrained."""
    shapes = dict.fromkeys(tuple(d.input_shape) for d in ctx.catalog.datasets()
                           if d.input_shape and int(d.num_classes or 0) >= 2)
    out = []
    for shape in shapes:
        try:
            net = ctx.settings.task2vec_probe(shape, 2)
        except ZooscopeInputError:  # no default network for this shape: its task2vec pairs fail with that message
            continue
        if probe_net_untrained(net):
            out.append(shape)
    return out


def _record(ctx: ProbeContext, shape: tuple[int, ...], rec: dict[str, Any]) -> dict[str, Any]:
    probes = dict(ctx.catalog.get_setting("task2vec_probes", {}) or {})
    probes[shape_key(shape)] = rec
    ctx.catalog.set_setting("task2vec_probes", probes)
    return rec


def store_task2vec_probe(ctx: ProbeContext, shape: Sequence[int], spec: dict[str, Any]) -> dict[str, Any]:
    """Record a user-named Task2Vec probe network for ``shape`` (a write).

    ``spec``: ``{"arch", "kwargs", "checkpoint"?, "pretrained"?}``. The network is built (and the checkpoint
    loaded) first; a checkpoint is copied to ``<zoo>/probes/`` under its sha256, which the record keeps and every
    use checks (`loadable_net`, ``check``).
    """
    from zooscope.nets.models import build_model

    shape = tuple(int(s) for s in shape)
    if "arch" not in spec:
        raise ZooscopeInputError("A Task2Vec probe network needs an 'arch' (e.g. 'timm:resnet18').")
    pretrained = bool(spec.get("pretrained"))
    build_model(spec["arch"], spec.get("kwargs"), spec.get("checkpoint"), pretrained=pretrained)
    rec: dict[str, Any] = {"arch": spec["arch"], "kwargs": dict(spec.get("kwargs") or {})}
    if pretrained:
        rec["pretrained"] = True
    if spec.get("checkpoint"):
        src = Path(spec["checkpoint"])
        data = src.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        suffix = ".safetensors" if src.suffix == ".safetensors" else ".pt"  # the loader goes by the suffix
        path = ctx.paths.probes / f"task2vec-{sha[:32]}{suffix}"
        rec["checkpoint_sha256"] = atomic_write(path, data)
        rec["checkpoint"] = str(path.relative_to(ctx.paths.root))
    return _record(ctx, shape, rec)


def train_task2vec_probe(ctx: ProbeContext, shape: Sequence[int], *, epochs: int = T2V_PROBE_EPOCHS,
                         per_dataset: int = T2V_PROBE_PER_DATASET, seed: int = 0) -> dict[str, Any]:
    """Train ``shape``'s Task2Vec probe network on the zoo's registered data, store and record it (a write).

    The network is the shape's default architecture (`ZooSettings.default_task2vec_probe`: ``timm:resnet10t``
    for images of side >= 32, ``small_cnn`` below, ``mlp`` for 1-D inputs). Its training set is the union of the
    registered labelled datasets of that shape (registration order), each a stratified, seeded subset of at most
    ``per_dataset`` examples of its train split, labelled by (dataset, class): one classifier over all their
    classes. ``epochs`` of `zooscope.nets.training.train_classifier` (AdamW, seeded: the same data give the same
    weights). The weights go to ``<zoo>/probes/task2vec-<sha256[:32]>.safetensors``; the record keeps the sha256.
    """
    import torch
    from safetensors.torch import save

    from zooscope.nets.datasets import load_dataset, probe_subset
    from zooscope.nets.models import build_model
    from zooscope.nets.training import train_classifier

    shape = tuple(int(s) for s in shape)
    fits = _labelled(ctx, shape)
    if not fits:
        raise ZooscopeInputError(f"No registered labelled dataset has inputs of shape {shape}, so there is nothing "
                                 "to train a Task2Vec probe network on. Add one, or name a trained network with "
                                 "configure(task2vec_probe={'arch': …, 'checkpoint': …}, input_shape=…).")
    xs, ys, offset = [], [], 0
    for d in fits:
        ds = load_dataset(d.source, split=d.meta.get("split", "train"), seed=int(d.meta.get("seed", 0)))
        sub = probe_subset(ds, min(per_dataset, len(ds)), seed=seed, stratified=True)
        xs.append(sub.x.float())
        ys.append(sub.y.long() + offset)
        offset += int(d.num_classes)
    x, y = torch.cat(xs), torch.cat(ys)
    spec = ctx.settings.default_task2vec_probe(shape, offset)
    log.info("training the Task2Vec probe network %s for %s on %d examples of %d datasets (%d epochs; once)",
             spec["arch"], shape_key(shape), len(x), len(fits), epochs)
    torch.manual_seed(seed)
    net = build_model(spec["arch"], spec["kwargs"])
    result = train_classifier(net, x, y, epochs=epochs, seed=seed)
    data = save({k: v.detach().contiguous() for k, v in net.state_dict().items()})
    path = ctx.paths.probes / f"task2vec-{hashlib.sha256(data).hexdigest()[:32]}.safetensors"
    rec = {"arch": spec["arch"], "kwargs": spec["kwargs"], "checkpoint_sha256": atomic_write(path, data),
           "checkpoint": str(path.relative_to(ctx.paths.root)),
           "trained": {"datasets": [d.name for d in fits], "examples": len(x), "epochs": epochs, "seed": seed,
                       "train_acc": round(result.train_acc, 4)}}
    return _record(ctx, shape, rec)


def train_missing_probes(ctx: ProbeContext, kinds: Sequence[str] | str, datasets: Sequence[str] | None) -> None:
    """Train the Task2Vec probe network of each input shape about to get task vectors that has none.

    Once per shape; a network named with `configure` (even an untrained one) is kept. A failure is logged and the
    embedding goes on with the rest.
    """
    if "task2vec" not in ([kinds] if isinstance(kinds, str) else list(kinds)):
        return
    wanted = {tuple(d.input_shape) for d in ctx.catalog.datasets()
              if d.input_shape and (datasets is None or d.name in set(datasets))}
    for shape in untrained_shapes(ctx):
        if shape in wanted and shape_key(shape) not in ctx.settings.task2vec_probes:
            try:
                train_task2vec_probe(ctx, shape)
            except ZooscopeInputError as e:  # e.g. a dataset that no longer loads: embed the rest anyway
                log.warning("could not train the Task2Vec probe network of %s: %s", shape_key(shape), e)
