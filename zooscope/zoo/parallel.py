"""Run embedding jobs: in this process (``backend="local"``) or as Ray tasks (``backend="ray"``).

A job is a picklable `EmbedJob` planned by the driver (`zooscope.zoo.Zoo.embed`): what to build, which probe file
or dataset to read, and the embedding kind with its parameters. `compute_job` turns one job into vectors and
touches no catalog; the driver is the only catalog writer, so workers on other machines need only read access to
the checkpoints, the dataset sources and the zoo's ``probes/`` folder (shared storage).

Ray is an optional extra (``pip install 'zooscope[ray]'``) imported only when ``backend="ray"``. Each Ray task asks
for one CPU and sets one torch thread (two torch processes with two threads each on two cores run ~10× slower).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from zooscope._validation import ZooscopeInputError
from zooscope.nets.models import penultimate_layer

__all__ = ["FEATURES_KIND", "EmbedJob", "JobResult", "compute_job", "penultimate_layer", "run_jobs"]

#: select's feature pass as a job (`zooscope.zoo.select.remote`): pre-logits features (n, p) of the model on the
#: job's ``probe_file`` inputs, and the logits; not an embedding kind (nothing of it goes to the catalog)
FEATURES_KIND = "select-prelogits"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJob:
    """One planned (kind, model | dataset | (model, dataset)) job.

    All a worker needs to compute its vectors (no catalog access).

    ``request`` is what the stored row remembers (and `request_hash` its hash): a changed request re-embeds.
    Model kinds fill ``arch``, ``kwargs``, ``checkpoint`` and ``probe_file`` (the zoo's probe inputs); dataset kinds
    fill ``source``, ``split``, ``seed``, ``max_samples`` and ``probe_net`` (``{"arch", "kwargs", "checkpoint"}``).
    Pair kinds (``subject="pair"``: ``name`` is the model, ``dataset`` the dataset) fill the model's fields and the
    dataset's ``source``, ``split`` and ``seed``.
    """

    kind: str
    subject: Literal["model", "dataset", "pair"]
    name: str
    kind_params: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    request_hash: str = ""
    arch: str | None = None
    kwargs: dict[str, Any] | None = None
    checkpoint: str | None = None
    probe_file: str | None = None
    source: str | None = None
    split: str = "train"
    seed: int = 0
    max_samples: int | None = None
    probe_net: dict[str, Any] | None = None
    dataset: str | None = None  # pair kinds: the dataset of the (model, dataset) pair

    @property
    def who(self) -> dict[str, str]:
        """The catalog's key of the job's subject: ``{"model": name}``, ``{"dataset".

        Name}`` or (pairs) ``{"model": name, "dataset": dataset}``.
        """
        if self.subject == "pair":
            return {"model": self.name, "dataset": str(self.dataset)}
        return {self.subject: self.name}


@dataclass(frozen=True)
class JobResult:
    """The vectors of one job.

    Shape (n_layers, dim) for model kinds (``layers`` names the rows, ``penultimate`` is the one the
    penultimate index takes), (dim,) for dataset kinds; ``seconds`` of compute.
    """

    vectors: np.ndarray
    layers: list[str] | None
    penultimate: str | None
    seconds: float
    logits: np.ndarray | None = None  # kind `FEATURES_KIND` only: the source head's logits (or None)


def _load_probe(path: str) -> Any:
    from safetensors.torch import load_file

    return load_file(path)["x"]


def compute_job(job: EmbedJob) -> JobResult:
    """Compute the vectors of one planned job (no catalog access).

    Every layer the kind captures for model kinds (the catalog keeps them all, for the ``layers`` index
    policy), one vector for dataset kinds.
    """
    from zooscope.embed._kinds import EMBEDDINGS
    from zooscope.nets.models import build_model

    t0 = time.perf_counter()
    if job.kind == FEATURES_KIND:
        from zooscope.embed.prelogits import prelogits_features

        feats, logits = prelogits_features(build_model(job.arch, job.kwargs, job.checkpoint).eval(),
                                           _load_probe(job.probe_file))
        return JobResult(np.asarray(feats), None, None, time.perf_counter() - t0, logits)
    fn = EMBEDDINGS.get(job.kind).fn
    params = dict(job.kind_params)
    if job.subject == "model":
        model = build_model(job.arch, job.kwargs, job.checkpoint).eval()
        out = fn(model, _load_probe(job.probe_file), layers=None, **params)
        layers = list(out)
        dims = {np.asarray(v).shape for v in out.values()}
        if len(dims) != 1:
            raise ZooscopeInputError(f"Kind {job.kind!r} returned vectors of different shapes {sorted(dims)}.")
        return JobResult(np.stack([np.asarray(v, dtype=np.float32) for v in out.values()]), layers,
                         penultimate_layer(model, layers), time.perf_counter() - t0)
    from zooscope.nets.datasets import load_dataset, probe_subset

    ds = load_dataset(job.source, split=job.split, seed=int(job.seed))
    if ds.y is None:
        raise ZooscopeInputError(f"Dataset {job.dataset or job.name!r} has no labels; kind {job.kind!r} needs "
                                 "labels.")
    if job.subject == "pair":  # the kind draws its own seeded subset of the dataset
        model = build_model(job.arch, job.kwargs, job.checkpoint).eval()
        vec = np.asarray(fn(model, ds.x, ds.y, **params), dtype=np.float32).reshape(-1)
        return JobResult(vec, None, None, time.perf_counter() - t0)
    if job.max_samples and len(ds.x) > int(job.max_samples):
        ds = probe_subset(ds, int(job.max_samples), seed=int(job.seed))
    net = job.probe_net or {}
    probe = build_model(net["arch"], net.get("kwargs"), net.get("checkpoint"), pretrained=bool(net.get("pretrained")))
    vec = np.asarray(fn(ds.x, ds.y, probe=probe, **params), dtype=np.float32).reshape(-1)
    return JobResult(vec, None, None, time.perf_counter() - t0)


def _safe(job: EmbedJob) -> tuple[EmbedJob, JobResult | None, str | None]:
    """Run one job; an exception becomes its message (with the last frames) instead of stopping the run."""
    try:
        return job, compute_job(job), None
    except Exception as e:  # one bad pair must not stop the others: the driver records it
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-3))
        return job, None, f"{type(e).__name__}: {e}\n{tb}"


@dataclass(frozen=True)
class Permanent:
    """A Ray task's failure that a retry cannot fix (a missing file, a bad checkpoint, a bad input).

    Returned, not raised, so Ray does not retry it.
    """

    message: str


def _permanent_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ZooscopeInputError, FileNotFoundError, PermissionError, IsADirectoryError,
                                        NotADirectoryError, ValueError, KeyError]
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    return tuple(types)


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _ray_task(job: EmbedJob) -> JobResult | Permanent:
    """One Ray task: one pair, one torch thread.

    A permanent error is returned (not retried); any other exception propagates so Ray retries it.
    """
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        return compute_job(job)
    except _permanent_types() as e:
        return Permanent(f"{type(e).__name__}: {_first_line(e)}")


def _ray_error(e: BaseException) -> str:
    """One line for a task that failed for good (exception after retries, or a dead worker): no traceback."""
    import ray.exceptions as rex

    if isinstance(e, rex.RayTaskError):
        cause = e.cause if getattr(e, "cause", None) is not None else e
        return f"{type(cause).__name__}: {_first_line(cause)}"
    if isinstance(e, rex.WorkerCrashedError | rex.NodeDiedError | rex.ActorDiedError):
        return (f"{type(e).__name__}: the Ray worker running this pair died (crash, out of memory or killed) "
                f"on every attempt: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    return f"{type(e).__name__}: {e}"


def run_jobs(jobs: Iterable[EmbedJob], *, backend: str = "local", address: str | None = None,
             max_in_flight: int = 256, max_retries: int = 2, workers: int | None = None,
             progress: Callable[[int, int, int], None] | None = None, total: int | None = None,
             ) -> Iterator[tuple[EmbedJob, JobResult | None, str | None]]:
    """Yield ``(job, result, error)`` as jobs finish (``result`` None and ``error`` set on failure).

    Parameters
    ----------
    jobs : iterable of EmbedJob
        Planned jobs (see `compute_job`). Read lazily, one job as a slot frees: a generator may claim each job
        just before it runs (what `zooscope.zoo.embedrun` does for concurrent writers).
    backend : {"local", "ray"}, default="local"
        ``"local"`` runs them one by one in this process; ``"ray"`` submits one task per job (1 CPU, 1 torch
        thread) to the cluster at ``address`` and yields each result as it arrives (``ray.wait``), so the caller
        can commit it at once; a killed driver loses at most the tasks in flight.
    address : str, optional
        Ray only: ``"auto"`` (a ``ray start --head`` cluster on this machine), ``"ray://host:10001"``, or None:
        the Ray already initialised in this process, else a new local one.
    max_in_flight : int, default=256
        Ray only: tasks submitted ahead of the driver's writes (bounds object-store memory).
    max_retries : int, default=2
        Ray only: extra attempts for a pair whose task raised or whose worker process died; after that the
        pair is yielded as failed and the run goes on.
    workers : int, optional
        Ray only: CPUs of the local cluster started here (default: all), and at most this many tasks at once.
    progress : callable, optional
        ``progress(done, failed, total)`` after each finished job.
    total : int, optional
        The number of jobs, for ``progress`` (default: ``len(jobs)`` when it has one).
    """
    if total is None:
        total = len(jobs) if hasattr(jobs, "__len__") else 0
    n_done, n_failed = 0, 0

    def tick(item: tuple[EmbedJob, JobResult | None, str | None]) -> tuple[EmbedJob, JobResult | None, str | None]:
        nonlocal n_done, n_failed
        n_done += 1
        n_failed += item[2] is not None
        if progress is not None:
            progress(n_done, n_failed, total)
        return item

    if backend == "local":
        for job in jobs:
            yield tick(_safe(job))
        return
    if backend != "ray":
        raise ZooscopeInputError(f"'backend' of Zoo.embed must be 'local' or 'ray'; got {backend!r}.")
    if workers is not None and int(workers) < 1:
        raise ZooscopeInputError(f"'workers' must be >= 1; got {workers!r}.")
    if int(max_retries) < 0:
        raise ZooscopeInputError(f"'max_retries' must be >= 0; got {max_retries!r}.")
    try:
        import ray
    except ImportError:
        raise ZooscopeInputError(
            "backend='ray' needs Ray, an optional extra: pip install 'zooscope[ray]' (or pip install ray), "
            "then start a cluster (ray start --head) or pass address=None for a local one."
        ) from None
    started = not ray.is_initialized()
    if started:
        init: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False}
        if address is None and workers is not None:
            init["num_cpus"] = int(workers)
        try:
            ray.init(**init)
        except ValueError as e:  # --workers (num_cpus) while a `ray start --head` cluster runs here
            if "existing cluster" not in str(e):
                raise
            raise ZooscopeInputError(
                "a Ray cluster is already running on this machine (`ray start --head`), so --workers cannot size a "
                "new one: add --address auto to run on it (its CPUs were set by `ray start --num-cpus`), or stop "
                "it with `ray stop` first."
            ) from None
        except ConnectionError as e:
            raise ZooscopeInputError(
                f"Cannot reach the Ray cluster at address={address!r} ({str(e).splitlines()[0]}). Start one with "
                "`ray start --head` (then address='auto'), give its ray://host:10001 address, or pass "
                "address=None for a local cluster in this process."
            ) from None
    limit = max_in_flight if workers is None else min(max_in_flight, int(workers))
    task = ray.remote(num_cpus=1, max_retries=int(max_retries), retry_exceptions=True)(_ray_task)
    owner: dict[Any, EmbedJob] = {}
    queue = iter(jobs)

    def submit() -> bool:
        job = next(queue, None)
        if job is None:
            return False
        owner[task.remote(job)] = job
        return True

    while len(owner) < limit and submit():
        pass
    try:
        while owner:
            done, _ = ray.wait(list(owner), num_returns=1)
            for ref in done:
                job = owner.pop(ref)
                try:
                    res = ray.get(ref)
                    item = (job, None, res.message) if isinstance(res, Permanent) else (job, res, None)
                except ray.exceptions.RayError as e:
                    item = (job, None, _ray_error(e))
                submit()  # refill the freed slot before the caller spends time committing
                yield tick(item)
    finally:
        for ref in owner:  # the caller stopped early (or failed): do not leave work running
            ray.cancel(ref, force=True)
        if started:  # shut down here, not at exit: a Ctrl-C during the shutdown is then the verb's (exit 130)
            ray.shutdown()
