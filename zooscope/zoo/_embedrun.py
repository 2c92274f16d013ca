"""The driver side of `Zoo.embed`: probe sets, planning (skip what is done), writing results, index rebuild.

Exactly-once. A job's identity is its *request* (kind version and parameters, probe set, checkpoint sha256 or
dataset sha256, probe network); its sha256 is stored in each row's ``params["request_hash"]``. Finished =
a row with that hash exists. The driver writes the vector file (temp + rename) and then one catalog row (one
transaction); a kill between the two leaves only an unreferenced file, which the next run deletes before it
starts (the driver is the zoo's only writer of vectors).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo import _vectors
from zooscope.zoo.catalog import params_hash as request_hash
from zooscope.zoo.parallel import load_kinds, run_jobs

if TYPE_CHECKING:
    from zooscope.zoo.zoo import Zoo

log = logging.getLogger(__name__)

T2V_MAX_SAMPLES = 2000


def probe_set(zoo: Zoo, shape: tuple[int, ...]) -> dict[str, Any]:
    """The probe set of ``shape``, materialised to ``<zoo>/probes/<id>.safetensors`` on first use."""
    from zooscope.zoo.zoo import DEFAULT_PROBE_N, shape_key

    cat = zoo.catalog
    key = shape_key(shape)
    sets = dict(cat.get_setting("probe_sets", {}))
    rec = sets.get(key)
    if rec and (zoo.root / rec["file"]).is_file():
        return rec
    cfg = cat.get_setting("probe", {}) or {}
    name = (cfg.get("datasets") or {}).get(key)
    if name is None:
        fits = [d for d in sorted(cat.datasets(), key=lambda d: d["id"])
                if d["input_shape"] and tuple(d["input_shape"]) == tuple(shape)]
        if not fits:
            raise ZooscopeInputError(
                f"No registered dataset has inputs of shape {tuple(shape)}, so models of that shape have no probe "
                "set. Add one (zoo.add_dataset(name, source=…)) or configure(probe_dataset=…).")
        name = fits[0]["name"]
    from safetensors.torch import save_file

    from zooscope.zoo.datasets import load_dataset, probe_subset, tensors_sha256

    d = cat.get_dataset(name)
    ds = load_dataset(d["source"], split=d["meta"].get("split", "train"), seed=int(d["meta"].get("seed", 0)))
    n, seed = int(cfg.get("n", DEFAULT_PROBE_N)), int(cfg.get("seed", 0))
    sub = probe_subset(ds, min(n, len(ds)), seed=seed, stratified=ds.y is not None)
    sha = tensors_sha256(sub.x, sub.y)
    pid = f"{name}-n{len(sub)}-s{seed}-{sha[:10]}"
    path = zoo.root / "probes" / f"{pid}.safetensors"
    tensors = {"x": sub.x.contiguous()} | ({"y": sub.y.contiguous()} if sub.y is not None else {})
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    rec = {"id": pid, "dataset": name, "n": len(sub), "seed": seed, "sha256": sha,
           "file": str(path.relative_to(zoo.root)), "input_shape": list(shape)}
    sets[key] = rec
    cat.set_setting("probe_sets", sets)
    return rec


def task2vec_probe(zoo: Zoo, shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The configured Task2Vec probe network of ``shape``, else the documented default (see `Zoo`)."""
    from zooscope.zoo.zoo import shape_key

    probes = zoo.catalog.get_setting("task2vec_probes", {}) or {}
    if shape_key(shape) in probes:
        return dict(probes[shape_key(shape)])
    if len(shape) == 3 and min(shape[1:]) >= 32:
        return {"arch": "timm:resnet10t", "kwargs": {"in_chans": shape[0], "num_classes": num_classes}}
    if len(shape) == 3 and shape[1] == shape[2]:
        return {"arch": "zooscope.zoo.models:small_cnn",
                "kwargs": {"in_chans": shape[0], "img_size": shape[1], "num_classes": num_classes, "seed": 0}}
    feats = int(shape[-1]) if len(shape) <= 2 else None
    if feats is None:
        raise ZooscopeInputError(f"No default Task2Vec probe for inputs of shape {shape}; configure(task2vec_probe="
                                 "{'arch': …}, input_shape=…).")
    return {"arch": "zooscope.zoo.models:mlp",
            "kwargs": {"in_features": feats, "num_classes": num_classes, "seed": 0}}


def plan_job(zoo: Zoo, kind: str, meta: Any, subject: dict[str, Any]) -> dict[str, Any]:
    """The job (and its request) for one (kind, model|dataset) pair."""
    kind_params = {**meta.params, **((zoo.catalog.get_setting("kind_params", {}) or {}).get(kind, {}))}
    if meta.subject == "model":
        if not subject.get("input_shape"):
            raise ZooscopeInputError(f"Model {subject['name']!r} has no recorded input shape; re-add it with "
                                     "input_shape=(C, H, W).")
        probe = probe_set(zoo, tuple(subject["input_shape"]))
        request = {"kind": kind, "version": meta.version, "params": kind_params, "probe_set": probe["id"],
                   "spec": subject["spec"], "kwargs": subject["kwargs"],
                   "checkpoint_sha256": subject["checkpoint_sha256"]}
        job = {"subject": "model", "arch": subject["spec"], "kwargs": subject["kwargs"],
               "checkpoint": subject["checkpoint"], "probe_file": str(zoo.root / probe["file"])}
    else:
        if not subject.get("num_classes"):
            raise ZooscopeInputError(f"Dataset {subject['name']!r} has no labels; kind {kind!r} needs them.")
        net = task2vec_probe(zoo, tuple(subject["input_shape"]), int(subject["num_classes"]))
        request = {"kind": kind, "version": meta.version, "params": kind_params, "probe_net": net,
                   "dataset_sha256": subject["probe_sha256"], "max_samples": T2V_MAX_SAMPLES}
        job = {"subject": "dataset", "source": subject["source"], "split": subject["meta"].get("split", "train"),
               "seed": int(subject["meta"].get("seed", 0)), "max_samples": T2V_MAX_SAMPLES, "probe_net": net}
    job.update(kind=kind, name=subject["name"], kind_params=kind_params, request=request,
               request_hash=request_hash(request))
    return job


def drop_rows(zoo: Zoo, rows: list[dict[str, Any]]) -> None:
    """Delete the vector files of removed rows and take their ids out of the indices."""
    if not rows:
        return
    zoo.store.delete([r["vector_key"] for r in rows])
    kinds = sorted({r["kind"] for r in rows})
    load_kinds()
    _vectors.rebuild_indices(zoo, [k for k in kinds if _known(k)])


def _known(kind: str) -> bool:
    from zooscope.embed._kinds import EMBEDDINGS

    return kind in EMBEDDINGS


def remove_orphans(zoo: Zoo, kinds: Sequence[str]) -> list[str]:
    """Delete vector files of ``kinds`` that no catalog row names (left by a killed run); returns their keys."""
    orphans: list[str] = []
    for kind in kinds:
        used = {r["vector_key"] for r in zoo.catalog.embeddings(kind=kind)}
        orphans += [k for k in zoo.store.keys(kind) if k not in used]
    if orphans:
        log.info("removing %d orphan vector files from an interrupted run", len(orphans))
        zoo.store.delete(orphans)
    for p in zoo.store.stale_temp_files():
        p.unlink(missing_ok=True)
    return orphans


def embed(zoo: Zoo, kinds: Sequence[str] | str, *, backend: str, models: Sequence[str] | None,
          datasets: Sequence[str] | None, progress: bool, address: str | None) -> pd.DataFrame:
    """See `Zoo.embed`."""
    from rich.console import Console
    from rich.progress import track

    from zooscope.embed._kinds import EMBEDDINGS

    load_kinds()
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ZooscopeInputError("Zoo.embed needs at least one kind, e.g. kinds=('cka',).")
    metas = {k: EMBEDDINGS.get(k).meta for k in kinds}
    for k, m in metas.items():
        if m.pending:
            raise ZooscopeInputError(f"Embedding kind {k!r} cannot run yet: {m.pending}")
    cat = zoo.catalog
    model_recs = cat.models() if models is None else [cat.get_model(n) for n in models]
    data_recs = cat.datasets() if datasets is None else [cat.get_dataset(n) for n in datasets]
    report: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for kind, meta in metas.items():
        rows = cat.embeddings(kind=kind)
        done = {(r["model"] or r["dataset"], r["params"].get("request_hash")) for r in rows}
        subjects = model_recs if meta.subject == "model" else data_recs
        for s in subjects:
            entry = {"kind": kind, "model": s["name"] if meta.subject == "model" else None,
                     "dataset": s["name"] if meta.subject == "dataset" else None, "seconds": 0.0, "error": None}
            if meta.subject == "dataset" and not s.get("num_classes"):
                report.append(entry | {"status": "skipped (no labels)"})
                continue
            try:
                job = plan_job(zoo, kind, meta, s)
            except Exception as e:  # e.g. no probe set for its input shape: record, go on
                _fail(zoo, entry, f"{type(e).__name__}: {e}")
                report.append(entry)
                continue
            if (s["name"], job["request_hash"]) in done:
                report.append(entry | {"status": "skipped"})
                stale = [r for r in rows if (r["model"] or r["dataset"]) == s["name"]
                         and r["params"].get("request_hash") != job["request_hash"]]
                if stale:  # a run killed between writing a new row and retiring the old one
                    cat.remove_embeddings([r["id"] for r in stale])
                    zoo.store.delete([r["vector_key"] for r in stale])
            else:
                jobs.append(job)
    remove_orphans(zoo, kinds)
    results = run_jobs(jobs, backend=backend, address=address)
    for job, res, error in track(results, total=len(jobs), description=f"embedding {len(jobs)} pairs",
                                 disable=not progress, console=Console(stderr=True)):
        entry = {"kind": job["kind"], "model": job["name"] if job["subject"] == "model" else None,
                 "dataset": job["name"] if job["subject"] == "dataset" else None,
                 "seconds": 0.0 if res is None else float(res["seconds"]), "error": None}
        if error is None:
            try:
                _write(zoo, job, res, metas[job["kind"]])
                entry["status"] = "embedded"
            except Exception as e:  # a bad vector (NaN) must not stop the run
                error = f"{type(e).__name__}: {e}"
        if error is not None:
            _fail(zoo, entry, error)
        report.append(entry)
    _vectors.rebuild_indices(zoo, kinds)
    return pd.DataFrame(report, columns=["kind", "model", "dataset", "status", "seconds", "error"])


def _fail(zoo: Zoo, entry: dict[str, Any], error: str) -> None:
    entry["status"], entry["error"] = "failed", error.splitlines()[0]
    log.warning("embedding %s of %s failed: %s", entry["kind"], entry["model"] or entry["dataset"], entry["error"])
    zoo.catalog.record_failure(kind=entry["kind"], model=entry["model"], dataset=entry["dataset"], error=error)


def _write(zoo: Zoo, job: dict[str, Any], res: dict[str, Any], meta: Any) -> None:
    """Vector file first (atomic), then the one catalog row; then retire older rows of the same pair."""
    kind, name = job["kind"], job["name"]
    who = {"model": name} if job["subject"] == "model" else {"dataset": name}
    old = [r for r in zoo.catalog.embeddings(kind=kind, **who) if (r["model"] or r["dataset"]) == name]
    key = zoo.store.put(res["vectors"], kind=kind)
    params = {"request_hash": job["request_hash"], "request": json.loads(json.dumps(job["request"], default=str)),
              "layers": res["layers"], "penultimate": res["penultimate"]}
    zoo.catalog.add_embedding(kind=kind, params=params, vector_key=key, dim=int(res["vectors"].shape[-1]),
                              code_version=str(meta.version), **who)
    if old:  # e.g. the checkpoint changed: the new vector replaces the stale one
        zoo.catalog.remove_embeddings([r["id"] for r in old])
        zoo.store.delete([r["vector_key"] for r in old])
    zoo.catalog.clear_failure(kind=kind, **who)
