"""The driver side of `Zoo.embed`: plan (skip what is done), compute, write results, update the indices.

Exactly-once. A job's identity is its *request* (kind version and parameters, probe set, checkpoint sha256 or
dataset sha256, probe network); its sha256 is stored in each row's ``params["request_hash"]``. Finished =
a row with that hash exists. The driver writes the vector file (atomically) and then one catalog row (one
transaction); a kill between the two leaves only an unreferenced file, which the next run deletes before it
starts (the driver is the zoo's only writer of vectors). The indices are then brought in step in place
(`zooscope.zoo.indices.IndexWriter.sync`), which also repairs indices a killed run left behind.

Several writers at once (two `zooscope embed` on one zoo, SQLite or PostgreSQL): each pair is *claimed* in the
catalog just before it is computed (`Catalog.claim`: a row with a lease, see `zooscope.zoo.catalog`), so two
writers split the work instead of racing; a killed writer's claims die with its process (same host) or its lease.
A writer commits its rows one by one and releases each claim after its row; orphan files are only swept when no
other writer holds a live claim; the index update at the end is serialised by `Catalog.lock` per kind.

With ``backend="ray"`` the claims are taken as task slots free (`zooscope.zoo.parallel.run_jobs` reads the
jobs lazily), this driver stays the zoo's only writer, and the progress bar counts done, failed and skipped pairs.

`plan_job` and `compute_missing` write nothing: read-only queries use them to compute, in memory, a vector the
zoo does not store yet (e.g. the task vector of a dataset added a moment ago).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zooscope._io import cached_array
from zooscope._progress import Progress
from zooscope._validation import ZooscopeInputError
from zooscope.index.store import VectorStore
from zooscope.zoo import parallel
from zooscope.zoo.catalog import (
    DEFAULT_LEASE_S,
    Catalog,
    DatasetRecord,
    EmbeddingRecord,
    ModelRecord,
    SubjectGoneError,
    new_owner,
)
from zooscope.zoo.catalog import params_hash as request_hash
from zooscope.zoo.indices import IndexWriter
from zooscope.zoo.pairs import plan_pair, resolve_pairs
from zooscope.zoo.parallel import EmbedJob, JobResult
from zooscope.zoo.probes import ProbeContext, materialise, task2vec_net
from zooscope.zoo.settings import ZooPaths, ZooSettings
from zooscope.zoo.vectors import VectorRepo

__all__ = ["T2V_MAX_SAMPLES", "EmbedContext", "compute_missing", "drop_rows", "embed", "index_locks", "plan_job"]

log = logging.getLogger(__name__)

T2V_MAX_SAMPLES = 2000
REPORT_COLUMNS = ["kind", "model", "dataset", "status", "seconds", "error"]


@dataclass(frozen=True)
class EmbedContext:
    """What embedding reads and writes: catalog, vector store, paths and settings."""

    catalog: Catalog
    store: VectorStore
    paths: ZooPaths
    settings: ZooSettings

    @property
    def probes(self) -> ProbeContext:
        """The probes."""
        return ProbeContext(self.catalog, self.settings, self.paths)

    @property
    def vectors(self) -> VectorRepo:
        """The vectors."""
        return VectorRepo(self.catalog, self.store)

    @property
    def indices(self) -> IndexWriter:
        """The indices."""
        return IndexWriter(self.catalog, self.paths, self.vectors, self.settings)


def _kind(kind: str) -> Any:
    from zooscope.embed._kinds import EMBEDDINGS

    return EMBEDDINGS.get(kind)


def plan_job(ctx: EmbedContext, kind: str, subject: ModelRecord | DatasetRecord, *,
             probe: dict[str, Any] | None = None) -> EmbedJob:
    """Return the job (and its request) for one (kind, model|dataset) pair.

    Model kinds need ``probe`` (the probe-set record with its ``file``); dataset kinds need nothing stored.
    """
    meta = _kind(kind).meta
    kind_params = ctx.settings.params_of(kind, meta.params)
    if meta.subject == "model":
        if not subject.input_shape:
            raise ZooscopeInputError(f"Model {subject.name!r} has no recorded input shape; re-add it with "
                                     "input_shape=(C, H, W).")
        if probe is None:
            raise ZooscopeInputError(f"No probe set given for model {subject.name!r}.")
        request = {"kind": kind, "version": meta.version, "params": kind_params, "probe_set": probe["id"],
                   "spec": subject.spec, "kwargs": subject.kwargs,
                   "checkpoint_sha256": subject.checkpoint_sha256}
        return EmbedJob(kind, "model", subject.name, kind_params, request, request_hash(request),
                        arch=subject.spec, kwargs=subject.kwargs, checkpoint=subject.checkpoint,
                        probe_file=str(ctx.paths.root / probe["file"]))
    if not subject.num_classes:
        raise ZooscopeInputError(f"Dataset {subject.name!r} has no labels; kind {kind!r} needs them.")
    net, loadable = task2vec_net(ctx.probes, subject.input_shape, int(subject.num_classes))
    request = {"kind": kind, "version": meta.version, "params": kind_params, "probe_net": net,
               "dataset_sha256": subject.probe_sha256, "max_samples": T2V_MAX_SAMPLES}
    return EmbedJob(kind, "dataset", subject.name, kind_params, request, request_hash(request),
                    source=subject.source, split=subject.meta.get("split", "train"),
                    seed=int(subject.meta.get("seed", 0)), max_samples=T2V_MAX_SAMPLES, probe_net=loadable)


def compute_missing(ctx: EmbedContext, kind: str, dataset: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(vector, request) of a dataset kind for ``dataset``: the stored vector, else computed in memory.

    The request is what it answers (its comparability group: `zooscope.zoo.vectors.request_group`).

    A computed vector is kept only in the cache folder (``<cache>/vectors/<kind>/<request_hash>.npy``); `embed`
    stores it for good. Writes nothing else.
    """
    rec = ctx.catalog.get_dataset(dataset)
    job = plan_job(ctx, kind, rec)
    for row in ctx.vectors.current_rows(kind, dataset=dataset):
        if row.params.get("request_hash") == job.request_hash:
            return ctx.vectors.read64(row), row.request
    cached = ctx.paths.cache / "vectors" / kind / f"{job.request_hash}.npy"
    vec = cached_array(cached, lambda: np.asarray(parallel.compute_job(job).vectors))
    return vec.astype(np.float64), job.request


def drop_rows(ctx: EmbedContext, rows: list[EmbeddingRecord]) -> None:
    """Delete the vector files of removed rows and take their ids out of the indices (in place)."""
    from zooscope.embed._kinds import EMBEDDINGS

    if not rows:
        return
    kinds = sorted({r.kind for r in rows})
    with index_locks(ctx.catalog, kinds):  # an embed updating these indices reads no file we delete under it
        ctx.store.delete([r.vector_key for r in rows])
        for kind in kinds:
            if kind in EMBEDDINGS:
                ctx.indices.sync(kind)


def rebuild_indices(ctx: EmbedContext) -> None:
    """Rebuild every recorded index from the vector store, under the index locks (after a settings change)."""
    from zooscope.embed._kinds import EMBEDDINGS

    kinds = sorted({i.kind for i in ctx.catalog.indices()} & set(EMBEDDINGS.available()))
    with index_locks(ctx.catalog, kinds):
        ctx.indices.rebuild(kinds)


@contextmanager
def index_locks(catalog: Catalog, kinds: Sequence[str]) -> Iterator[None]:
    """Hold the index lock of every kind in ``kinds`` (taken in sorted order: two holders never deadlock).

    Every writer that deletes vector files or changes an index (embed's index update, remove, --replace,
    check --fix) does so under these locks.
    """
    with ExitStack() as stack:
        for kind in sorted(set(kinds)):
            stack.enter_context(catalog.lock(f"zooscope-index:{kind}"))
        yield


def remove_orphans(ctx: EmbedContext, kinds: Sequence[str], *, owner: str | None = None) -> list[str]:
    """Delete vector files of ``kinds`` that no catalog row names (left by a killed run); returns their keys.

    With other writers at work a file may be written and its row not committed yet: files are listed first, then
    the live claims read; a writer between its vector file and its row holds a live claim at that moment, so when
    any claim other than ``owner``'s is live nothing is deleted (the next quiet run does it). Else the rows are
    read last, so a row committed meanwhile still protects its file.
    """
    listed = {kind: ctx.store.keys(kind) for kind in kinds}
    temps = ctx.store.stale_temp_files()
    others = [c for c in ctx.catalog.claims(live_only=True) if c.owner != owner]
    if others:
        log.info("%d pairs are being embedded by another writer: orphan vector files are left for later",
                 len(others))
        return []
    orphans: list[str] = []
    for kind in kinds:
        used = {r.vector_key for r in ctx.catalog.embeddings(kind=kind)}
        orphans += [k for k in listed[kind] if k not in used]
    if orphans:
        log.info("removing %d orphan vector files from an interrupted run", len(orphans))
        ctx.store.delete(orphans)
    for p in temps:
        p.unlink(missing_ok=True)
    return orphans


def _key(x: EmbedJob | EmbeddingRecord) -> tuple[str | None, str | None]:
    """(model, dataset) of a job or row: a model, a dataset or a pair."""
    if isinstance(x, EmbedJob):
        return x.who.get("model"), x.who.get("dataset")
    return x.model, x.dataset


def _done(ctx: EmbedContext, job: EmbedJob) -> bool:
    """Whether a row of this exact request exists (e.g. written by another writer since we planned)."""
    return any(r.params.get("request_hash") == job.request_hash
               for r in ctx.catalog.embeddings(kind=job.kind, **job.who) if _key(r) == _key(job))


def embed(ctx: EmbedContext, kinds: Sequence[str] | str, *, backend: str, models: Sequence[str] | None,
          datasets: Sequence[str] | None, progress: bool, address: str | None, workers: int | None = None,
          retries: int = 2, lease_s: float = DEFAULT_LEASE_S, pairs: str | Sequence[str] | None = None,
          ) -> pd.DataFrame:
    """See `Zoo.embed`; ``pairs`` chooses the (model, dataset) pairs of pair kinds (`zooscope.zoo.pairs`)."""
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ZooscopeInputError("Zoo.embed needs at least one kind, e.g. kinds=('cka',).")
    if float(lease_s) <= 0:
        raise ZooscopeInputError(f"'lease_s' must be > 0 seconds; got {lease_s!r}.")
    metas = {k: _kind(k).meta for k in kinds}
    for k, m in metas.items():
        if m.pending:
            raise ZooscopeInputError(f"Embedding kind {k!r} cannot run yet: {m.pending}")
    cat = ctx.catalog
    owner = new_owner()
    model_recs = cat.models() if models is None else [cat.get_model(n) for n in models]
    data_recs = cat.datasets() if datasets is None else [cat.get_dataset(n) for n in datasets]
    report: list[dict[str, Any]] = []
    jobs: list[EmbedJob] = []
    for kind, meta in metas.items():
        rows = cat.embeddings(kind=kind)
        done = {(*_key(r), r.params.get("request_hash")) for r in rows}
        subjects: list[Any] = model_recs if meta.subject == "model" else data_recs
        if meta.subject == "pair":
            subjects, orphans = resolve_pairs(cat, pairs, models=models, datasets=datasets)
            report += [{"kind": kind, "model": n, "dataset": None, "status": "skipped (no registered training set)",
                        "seconds": 0.0, "error": None} for n in orphans]
        for s in subjects:
            entry = {"kind": kind, "model": s.name if meta.subject == "model" else None,
                     "dataset": s.name if meta.subject == "dataset" else None, "seconds": 0.0, "error": None}
            if meta.subject == "pair":
                entry |= {"model": s[0].name, "dataset": s[1].name}
            if meta.subject == "dataset" and not s.num_classes:
                report.append(entry | {"status": "skipped (no labels)"})
                continue
            try:
                probe = materialise(ctx.probes, s.input_shape) if meta.subject == "model" else None
                job = plan_pair(ctx.settings, kind, meta, *s) if meta.subject == "pair" else \
                    plan_job(ctx, kind, s, probe=probe)
            except Exception as e:  # e.g. no probe set for its input shape: record, go on
                _fail(ctx, entry, f"{type(e).__name__}: {e}")
                report.append(entry)
                continue
            if (*_key(job), job.request_hash) in done:
                report.append(entry | {"status": "skipped"})
                stale = [r for r in rows if _key(r) == _key(job)
                         and r.params.get("request_hash") != job.request_hash]
                if stale:  # a run killed between writing a new row and retiring the old one
                    cat.remove_embeddings([r.id for r in stale])
                    ctx.store.delete([r.vector_key for r in stale])
            else:
                jobs.append(job)
    remove_orphans(ctx, kinds, owner=owner)

    def claimed() -> Iterator[EmbedJob]:
        """Each job, claimed just before it is handed to a worker.

        Pairs another writer holds or finished are reported as skipped.
        """
        for job in jobs:
            if not cat.claim(kind=job.kind, owner=owner, lease_s=lease_s, **job.who):
                report.append(_entry(job) | {"status": "skipped (another writer)"})
                bar.advance(skipped=1)
                continue
            if _done(ctx, job):
                cat.release_claims(owner, kind=job.kind, **job.who)
                report.append(_entry(job) | {"status": "skipped (another writer)"})
                bar.advance(skipped=1)
                continue
            yield job

    bar = Progress("embedding", len(jobs), enabled=progress and bool(jobs), counters=("failed", "skipped"))
    try:
        with bar:
            results = parallel.run_jobs(claimed(), backend=backend, address=address, workers=workers,
                                        max_retries=retries, total=len(jobs))
            for job, res, error in results:
                entry = _entry(job) | {"seconds": 0.0 if res is None else float(res.seconds)}
                if error is None:
                    try:
                        entry["status"] = "embedded" if _write(ctx, job, res, metas[job.kind]) \
                            else "skipped (another writer)"
                    except Exception as e:  # a bad vector (NaN) must not stop the run
                        error = f"{type(e).__name__}: {e}"
                if error is not None:
                    _fail(ctx, entry, error)
                cat.release_claims(owner, kind=job.kind, **job.who)
                cat.renew_claims(owner, lease_s)
                bar.advance(failed=int(error is not None))
                report.append(entry)
    finally:
        cat.release_claims(owner)
    for kind in kinds:
        with index_locks(cat, [kind]):  # two writers must not interleave their index updates
            ctx.indices.sync(kind)
    return pd.DataFrame(report, columns=REPORT_COLUMNS)


def _entry(job: EmbedJob) -> dict[str, Any]:
    model, dataset = _key(job)
    return {"kind": job.kind, "model": model, "dataset": dataset, "seconds": 0.0, "error": None}


def _fail(ctx: EmbedContext, entry: dict[str, Any], error: str) -> None:
    entry["status"], entry["error"] = "failed", error.splitlines()[0]
    log.warning("embedding %s of %s failed: %s", entry["kind"], entry["model"] or entry["dataset"], entry["error"])
    ctx.catalog.record_failure(kind=entry["kind"], model=entry["model"], dataset=entry["dataset"], error=error)


def _write(ctx: EmbedContext, job: EmbedJob, res: JobResult, meta: Any) -> bool:
    """Vector file first (atomic), then the one catalog row; then retire older rows of the same pair.

    Returns False (and keeps nothing) when another writer recorded this request first.
    """
    kind, who = job.kind, job.who
    old = [r for r in ctx.catalog.embeddings(kind=kind, **who) if _key(r) == _key(job)]
    if any(r.params.get("request_hash") == job.request_hash for r in old):
        return False
    vectors = res.vectors
    if kind == "cka" and ctx.settings.cka_dtype != "float32":  # a compact zoo (configure cka_dtype)
        vectors = np.asarray(vectors).astype(ctx.settings.cka_dtype)
    key, sha = ctx.store.put_hashed(vectors, kind=kind)  # the sha256 is verified on every read
    params = {"request_hash": job.request_hash, "request": json.loads(json.dumps(job.request, default=str)),
              "layers": res.layers, "penultimate": res.penultimate}
    try:
        ctx.catalog.add_embedding(kind=kind, params=params, vector_key=key, dim=int(res.vectors.shape[-1]),
                                  code_version=str(meta.version), sha256=sha, **who)
    except SubjectGoneError as e:  # removed (or replaced) while we computed it: nothing to record
        ctx.store.delete([key])
        log.info("%s", e)
        return False
    except Exception:
        ctx.store.delete([key])  # never leave our file behind
        if _done(ctx, job):  # the unique constraint: another writer (whose lease we took over) won the race
            return False
        raise
    if old:  # e.g. the checkpoint changed: the new vector replaces the stale one
        ctx.catalog.remove_embeddings([r.id for r in old])
        ctx.store.delete([r.vector_key for r in old])
    ctx.catalog.clear_failure(kind=kind, **who)
    return True
