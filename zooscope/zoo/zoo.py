"""`Zoo`: the facade over a model zoo's catalog, vector store, probe sets and FAISS indices.

The facade imports the pipeline's modules and nothing imports it; each query gets a narrow context dataclass::

    catalog → settings → probes → vectors → indices → embedrun → similar / select / check / curate → zoo

Folder layout (``Zoo.create(path)`` or ``zooscope init`` makes it; ``Zoo.open`` only opens)::

    <zoo>/zoo.json                         the marker (zoo id, schema version, created): a zoo whose catalog is
                                           then missing, empty or damaged is refused, never re-initialised
    <zoo>/catalog.sqlite                   SQLAlchemy Core (or a postgresql:// catalog with <zoo> as storage)
    <zoo>/vectors/<kind>/<key>.npy         one stack per (model, kind) or vector per (dataset, kind)
    <zoo>/indices/<kind>__<policy>@<group>__<sha>.faiss   content-addressed; the catalog row names the file
    <zoo>/probes/<hash>.safetensors        the fixed probe inputs (x, y) per input shape (named by a hash of the
                                           probe set's id, never by a dataset name)
    <zoo>/cache/                           re-computable, safe to delete: JL projections, vectors computed for
                                           queries (a read-only zoo uses $ZOOSCOPE_CACHE or ~/.cache/zooscope)

Writes. Only ``add_*``, ``remove_*``, ``configure``, ``embed`` and ``check(fix=True)`` write the catalog, vectors,
probes or indices; ``similar``, ``select``, ``check``, the curation functions and listings only read, and
``report`` writes only its HTML page (a zoo whose folder is not writable opens read-only and answers them).

Probe sets. Model embeddings (``cka``) are computed on one fixed probe set per input shape, so their vectors are
comparable. Default: a stratified, seeded subset of ``probe_n`` = 512 examples of the first registered dataset
(registration order) whose inputs have that shape; it is materialised once and then fixed (``configure`` can
name another dataset, which re-embeds the models of that shape on the next ``embed``).

Task2Vec probe network, per input shape: trained once, by the first ``embed`` of task vectors (or by
``configure(task2vec_probe="trained")``), on the registered labelled datasets of that shape
(`zooscope.zoo.probes.train_task2vec_probe`: ``timm:resnet10t`` for images of side >= 32, ``small_cnn`` for
smaller images, ``mlp`` for 1-D inputs; a few epochs on CPU), stored under ``probes/`` with its sha256; or named
by the user: ``configure(task2vec_probe={"arch": …, "kwargs": …, "checkpoint": …|"pretrained": True})``. It then
stays fixed, so task vectors stay comparable. Queries never train it: a zoo whose probe is still untrained says so
(`task2vec_probe_note`) in ``ls``, ``check`` and every answer built on task vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.index.store import VectorStore
from zooscope.zoo import embedrun, integrity, opening, ownership, settings, shapes
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.contexts import ZooContexts
from zooscope.zoo.probes import find_input_shape, materialise, shape_candidates
from zooscope.zoo.settings import DEFAULT_JL, DEFAULT_PROBE_N, ZooPaths, shape_key

__all__ = ["DEFAULT_JL", "DEFAULT_PROBE_N", "Zoo", "shape_key"]

log = logging.getLogger(__name__)

_SUBDIRS = ("vectors", "indices", "probes", "cache")


class Zoo(ZooContexts):
    """A model zoo.

    Models, datasets, their embeddings and indices (`Zoo.open` an existing one, `Zoo.create` a new one).
    """

    def __init__(self, catalog: Catalog, root: Path, *, writable: bool = True) -> None:
        self.catalog = catalog
        self.root = Path(root)
        self.store = VectorStore(self.root / "vectors")
        self.paths = ZooPaths.for_root(self.root, writable and not catalog.readonly)

    @classmethod
    def open(cls, path_or_url: str | os.PathLike[str], *, storage: str | os.PathLike[str] | None = None,
             create: bool = False) -> Zoo:
        """Open the zoo at a folder, or at a catalog URL plus a storage folder.

        Parameters
        ----------
        path_or_url : path or str
            A folder (``catalog.sqlite`` inside), or an SQLAlchemy URL such as ``postgresql://user@host/zoo``.
        storage : path, optional
            Required with a URL: the folder (shared storage) for vectors, indices, probes and cache.
        create : bool, default=False
            Create the zoo when it does not exist (as `Zoo.create`).

        Raises
        ------
        ZooscopeInputError
            No zoo at the path (without ``create``), naming the path; a file where the folder should be; an
            empty (0-byte) catalog; a URL without its storage folder; a storage folder other than the zoo folder.
        """
        text = str(path_or_url)
        if "://" in text:
            root = opening.storage_of_url(text, storage, create)
            writable = create or opening.writable(root)
            catalog = ownership.open_url_catalog(text, root, create=create, writable=writable)
        else:
            root = opening.folder_of_zoo(text, storage, create)
            marker = integrity.check_folder(root, create=create)  # a damaged zoo is refused, never re-made
            if not (root / "catalog.sqlite").is_file() and not create:
                what = "nothing" if not root.exists() else "a folder without a zoo catalog (catalog.sqlite)"
                raise ZooscopeInputError(
                    f"No zoo at {root} (there is {what}). Check the path (--zoo / $ZOOSCOPE_ZOO), or create "
                    "one with `zooscope init --zoo PATH` / Zoo.create(path).")
            writable = create or opening.writable(root)
            fresh = not (root / "catalog.sqlite").exists()
            catalog = opening.open_catalog(root, lambda: Catalog.for_folder(root, readonly=not writable))
            try:
                integrity.check_catalog_matches(root, marker, catalog)
            except ZooscopeInputError:
                catalog.close()
                raise
            if fresh:  # Zoo.create of a new zoo: the marker, and its id in the catalog
                marker = integrity.write_marker(root)
                catalog.set_setting("zoo_id", marker["zoo_id"])
        if writable:
            for sub in _SUBDIRS:
                (root / sub).mkdir(parents=True, exist_ok=True)
        ownership.own_subfolders(root, catalog, writable=writable)  # a vectors/ linked into two zoos: refused
        return cls(catalog, root, writable=writable)

    @classmethod
    def create(cls, path_or_url: str | os.PathLike[str], *, storage: str | os.PathLike[str] | None = None) -> Zoo:
        """Create a zoo (or open the one already there) at a folder, or a catalog URL plus a storage folder.

        Examples
        --------
        >>> import tempfile
        >>> zoo = Zoo.create(tempfile.mkdtemp())
        >>> zoo.models().empty
        True
        """
        return cls.open(path_or_url, storage=storage, create=True)

    def __repr__(self) -> str:
        """Return a short description."""
        return f"Zoo({str(self.root)!r}, models={len(self.catalog.models())})"

    @property
    def path(self) -> Path:
        """The zoo's storage folder (same as ``root``)."""
        return self.root

    @property
    def writable(self) -> bool:
        """False when the zoo was opened read-only (its folder is not writable): only queries work."""
        return self.paths.writable

    # -- contents -------------------------------------------------------------------------------------------
    def add_model(self, name: str, arch: str, checkpoint: str | os.PathLike[str] | None = None,
                  kwargs: dict | None = None, trained_on: str | None = None, metrics: dict | None = None,
                  tags: list | dict | None = None, *, input_shape: Sequence[int] | None = None,
                  replace: bool = False) -> int:
        """Register a model after checking that its spec builds and its checkpoint loads (safe loaders only).

        Records the checkpoint's absolute path and sha256, the cost (`zooscope.nets.cost`, in ``metrics``) and the
        input shape: ``input_shape`` if given, else
        the first that a dry forward pass accepts among the ``trained_on`` dataset's shape, the kwargs'
        (``in_chans`` × ``img_size``², ``in_features``) and the registered datasets' shapes. When none of those
        exists yet (models added before their datasets), the shape is left open and settled by the next `embed`
        from the datasets registered then (said in one warning line). A ``trained_on`` dataset that is not
        registered yet is accepted with a warning.

        Returns
        -------
        int
            The model's catalog id.

        Raises
        ------
        ZooscopeInputError
            Bad spec or kwargs, a checkpoint that does not fit or would need unpickling code (refused), no
            input shape found, or a name already used (pass ``replace=True``).
        """
        from zooscope._io import file_sha256
        from zooscope.nets.models import build_model

        integrity.validate_name(name, "model")
        ckpt = None if checkpoint is None else Path(checkpoint).expanduser().resolve()
        model = build_model(arch, kwargs, ckpt)
        datasets = self.catalog.datasets()
        if trained_on is not None and not any(d.name == trained_on for d in datasets):
            log.warning("trained_on %r: dataset not registered yet; register it (add-dataset %s --source …) so "
                        "that select and similar --by task2vec can use it", trained_on, trained_on)
        firm = shapes.firm_shapes(datasets, input_shape, trained_on, kwargs, model)
        if firm:
            shape: tuple[int, ...] | None = find_input_shape(model, firm)
        else:  # no dataset to fit yet: check that the model runs, settle the shape at embed time
            find_input_shape(model, shape_candidates(datasets, None, None, kwargs, model))
            shape = None
        values = dict(spec=arch, kwargs=kwargs, checkpoint=None if ckpt is None else str(ckpt), tags=tags,
                      checkpoint_sha256=None if ckpt is None else file_sha256(ckpt), trained_on=trained_on,
                      metrics=shapes.with_cost(metrics, model, shape), input_shape=shape)
        if replace and self.catalog.has_model(name):  # one transaction: the old model or the new, never neither
            rid, rows = self.catalog.replace_model(name, **values)
            embedrun.drop_rows(self.embed_context(), rows)
            return rid
        return self.catalog.add_model(name, **values)

    def add_dataset(self, name: str, source: str, *, split: str = "train", seed: int = 0,
                    replace: bool = False) -> int:
        """Register a dataset: it is loaded once to record its size, classes, input shape and sha256.

        Parameters
        ----------
        name : str
        source : str
            Anything `zooscope.nets.datasets.load_dataset` reads: ``"builtin:digits"``, a ``.npz`` path, an
            ImageFolder directory, … A path is stored absolute (resolved now, against the current folder).
        split : str, default="train"
        seed : int, default=0
        replace : bool, default=False
        """
        from zooscope.nets.datasets import absolute_source, load_dataset, tensors_sha256

        integrity.validate_name(name, "dataset")
        source = absolute_source(source)  # stored absolute: embed from any folder reads the same files
        ds = load_dataset(source, split=split, seed=seed)
        integrity.check_labels(ds.y, name, source)  # a one-class dataset is refused now, not after a long embed
        if replace and any(d.name == name for d in self.catalog.datasets()):
            self.remove_dataset(name)
        return self.catalog.add_dataset(
            name, source=source, size=len(ds.x), num_classes=ds.num_classes, input_shape=ds.input_shape,
            probe_sha256=tensors_sha256(ds.x, ds.y),
            meta={"split": split, "seed": seed, "classes": ds.classes}, replace=False)

    def remove_model(self, name: str) -> None:
        """Delete a model, its vectors and its index entries."""
        embedrun.drop_rows(self.embed_context(), self.catalog.remove_model(name))

    def remove_dataset(self, name: str) -> None:
        """Delete a dataset, its vectors and its index entries (models trained on it stay)."""
        embedrun.drop_rows(self.embed_context(), self.catalog.remove_dataset(name))

    def models(self) -> pd.DataFrame:
        """Return one row per model: name, spec, trained_on, input_shape, checkpoint, metrics, tags, and so on."""
        cols = ["name", "spec", "trained_on", "input_shape", "checkpoint", "checkpoint_sha256", "kwargs",
                "metrics", "tags", "created"]
        return pd.DataFrame(self.catalog.models(), columns=cols)

    def datasets(self) -> pd.DataFrame:
        """Return one row per dataset: name, source, size, num_classes, input_shape, probe_sha256, and so on."""
        cols = ["name", "source", "size", "num_classes", "input_shape", "probe_sha256", "meta", "created"]
        return pd.DataFrame(self.catalog.datasets(), columns=cols)

    def failures(self) -> pd.DataFrame:
        """Embedding jobs that failed (kind, model, dataset, error, attempts)."""
        return pd.DataFrame(self.catalog.failures(),
                            columns=["kind", "model", "dataset", "error", "attempts", "created"])

    # -- settings -------------------------------------------------------------------------------------------
    def configure(self, *, probe_n: int | None = None, probe_seed: int | None = None,
                  probe_dataset: str | None = None, task2vec_probe: dict | str | None = None,
                  input_shape: Sequence[int] | None = None, jl_dim: int | None = None,
                  jl_seed: int | None = None, kind_params: dict[str, dict] | None = None,
                  cka_dtype: str | None = None) -> dict[str, Any]:
        """Change the zoo's settings; returns them all.

        Parameters
        ----------
        probe_n, probe_seed : int, optional
            Size and seed of new probe sets (default 512, 0). Existing probe sets stay fixed.
        probe_dataset : str, optional
            Use this registered dataset as the probe set of its input shape (replaces that shape's probe set).
        task2vec_probe : dict or "trained", optional
            ``{"arch": spec, "kwargs": {...}, "checkpoint": path}`` (or ``"pretrained": True`` for a timm name
            whose weights can be downloaded): the Task2Vec probe network for ``input_shape`` (required with it);
            its checkpoint is copied under ``probes/``. ``"trained"``: (re)train it now on the registered
            labelled datasets of ``input_shape`` (of every shape when ``input_shape`` is None); see
            `zooscope.zoo.probes.train_task2vec_probe`.
        jl_dim, jl_seed : int, optional
            JL projection of long vectors for the index (default 256, 0).
        kind_params : dict, optional
            Per kind parameter overrides, e.g. ``{"cka": {"debiased": True}}`` (changes re-embed that kind).
        cka_dtype : {"float32", "float16"}, optional
            dtype of CKA signatures stored from now on: float16 halves them (CKA within 2⁻¹⁰; benchmarks/RESULTS.md).
        """
        from zooscope.zoo import probes

        if task2vec_probe == "trained":
            shapes = [tuple(input_shape)] if input_shape is not None else list(dict.fromkeys(
                tuple(d.input_shape) for d in self.catalog.datasets()
                if d.input_shape and int(d.num_classes or 0) >= 2))
            if not shapes:
                raise ZooscopeInputError("configure(task2vec_probe='trained') needs a registered labelled dataset "
                                         "to train on; add one first (zoo.add_dataset).")
            for shape in shapes:
                probes.train_task2vec_probe(self.probe_context(), shape)
        elif task2vec_probe is not None:
            if input_shape is None or not isinstance(task2vec_probe, dict):
                raise ZooscopeInputError("configure(task2vec_probe={'arch': …, 'kwargs': …, 'checkpoint': …}, "
                                         "input_shape=(C, H, W)) needs both the spec and the input shape; or "
                                         "task2vec_probe='trained'.")
            probes.store_task2vec_probe(self.probe_context(), input_shape, task2vec_probe)
        settings.configure(self.catalog, probe_n=probe_n, probe_seed=probe_seed, probe_dataset=probe_dataset,
                           jl_dim=jl_dim, jl_seed=jl_seed, kind_params=kind_params, cka_dtype=cka_dtype)
        if jl_dim is not None or jl_seed is not None:  # the indices hold JL views: rebuilt now, under the locks
            embedrun.rebuild_indices(self.embed_context())
        return self.settings()

    def task2vec_probe_note(self) -> str | None:
        """One line when the task vectors of some registered data would come from an untrained probe network."""
        from zooscope.zoo import probes

        shapes = probes.untrained_shapes(self.probe_context())
        if not shapes:
            return None
        st = self.typed_settings()
        note = probes.untrained_note([st.task2vec_probe(s, 2) for s in shapes])
        return f"{note} [input shapes {', '.join(map(shape_key, shapes))}]" if note else None

    def settings(self) -> dict[str, Any]:
        """All zoo settings (probe, probe_sets, task2vec_probes, jl, kind_params), defaults filled in."""
        return self.typed_settings().as_dict()

    def jl_settings(self) -> tuple[int, int]:
        """(dim, seed) of the JL projection used by the indices."""
        st = self.typed_settings()
        return st.jl_dim, st.jl_seed

    def probe_set(self, input_shape: Sequence[int]) -> dict[str, Any]:
        """Return the probe set for ``input_shape`` (materialised on first use, so this writes).

        Id, dataset, n, seed, sha256, file.
        """
        return materialise(self.probe_context(), tuple(int(s) for s in input_shape))

    # -- work -----------------------------------------------------------------------------------------------
    def embed(self, kinds: Sequence[str] | str = ("task2vec", "cka", "fisher"), backend: str = "local",
              models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
              progress: bool = False, address: str | None = None, workers: int | None = None,
              retries: int = 2, lease_s: float | None = None, pairs: str | Sequence[str] | None = None,
              ) -> pd.DataFrame:
        """Embed every (model | dataset, kind) pair not embedded yet, then update the FAISS indices in place.

        Resumable: each finished pair is one vector file (written atomically) and then one catalog row (one
        transaction), so a run killed at any point (even SIGKILL) restarts where it stopped and embeds each pair
        once. A pair that fails is recorded (`failures`) and the run continues.

        Parameters
        ----------
        kinds : sequence of str or str, default=("task2vec", "cka", "fisher")
            Embedding kinds (`zooscope.embed._kinds.EMBEDDINGS`).
        backend : {"local", "ray"}, default="local"
            ``"ray"`` runs one task per pair (see `zooscope.zoo.parallel`); this process stays the only writer.
        models, datasets : sequence of str, optional
            Restrict to these names (default: all).
        progress : bool, default=False
            Progress bar on stderr.
        address : str, optional
            Ray only: ``None`` (a local cluster started here, or the Ray already initialised in this process),
            ``"auto"`` (a ``ray start --head`` cluster on this machine) or ``"ray://host:10001"``.
        workers : int, optional
            Ray only: at most this many tasks at once (and the CPUs of a local cluster started here).
        retries : int, default=2
            Ray only: extra attempts for a pair whose task raised or whose worker died, before it is recorded
            as failed (`failures`, ``zooscope ls --failed``) and the run goes on.
        lease_s : float, optional
            Seconds a claim on a pair lasts without renewal (default
            `zooscope.zoo.catalog.DEFAULT_LEASE_S`): several writers on one zoo split the pairs through claims,
            and a dead writer's pairs are taken over after this (at once on the same host).
        pairs : str or sequence of str, optional
            (model, dataset) pairs of pair kinds (``fisher``): "trained-on" (default), "all", "MODEL:DATASET"…
            (`zooscope.zoo.pairs`).

        Returns
        -------
        pandas.DataFrame
            One row per planned pair: kind, model, dataset, status ("embedded", "skipped", "failed"), seconds,
            error.
        """
        shapes.settle_input_shapes(self.catalog, models)
        from zooscope.zoo.probes import train_missing_probes

        train_missing_probes(self.probe_context(), kinds, datasets)
        from zooscope.zoo.catalog import DEFAULT_LEASE_S

        return embedrun.embed(self.embed_context(), kinds, backend=backend, models=models, datasets=datasets,
                               progress=progress, address=address, workers=workers, retries=retries,
                               lease_s=DEFAULT_LEASE_S if lease_s is None else lease_s, pairs=pairs)

    def similar(self, model: str, k: int = 10, by: str = "cka", *, arch: str | None = None,
                checkpoint: str | os.PathLike[str] | None = None, kwargs: dict | None = None,
                layer: str = "penultimate", rule: str = "layer", oversample: int = 4,
                exact: bool = False, dataset: str | None = None) -> pd.DataFrame:
        """Return the ``k`` zoo models most similar to ``model`` (reads only); see `zooscope.zoo.similar.similar`."""
        from zooscope.zoo.similar import similar

        return similar(self.similar_context(), model, k, by, arch=arch, checkpoint=checkpoint, kwargs=kwargs,
                                layer=layer, rule=rule, oversample=oversample, exact=exact, dataset=dataset)

    def select(self, dataset: str, k: int = 10, *, method: str | None = None, methods: Sequence[str] | None = None,
               candidates: Sequence[str] | None = None, pool: int | None = None, alpha: float = 0.15,
               max_examples: int = 1000, seed: int = 0, history: bool = True, metric: str = "accuracy",
               finetune_top: int = 0, epochs: int = 1, progress: bool = False, **budget: Any) -> pd.DataFrame:
        """Return the ``k`` zoo models to transfer from for ``dataset`` (reads only).

        See `zooscope.zoo.select.select` (``budget``: its ``budget_s``, ``backend``, ``address``).
        """
        from zooscope.zoo.select import select

        return select(self.select_context(), dataset, k, method=method, methods=methods, candidates=candidates,
                      pool=pool, alpha=alpha, max_examples=max_examples, seed=seed, history=history,
                      metric=metric, finetune_top=finetune_top, epochs=epochs, progress=progress, **budget)

    def record_result(self, model: str, dataset: str, value: float, metric: str = "accuracy") -> None:
        """Record a fine-tuning outcome (larger = better); `select` uses it for OTHER datasets, never this one."""
        from zooscope.zoo.history import record_result

        record_result(self.catalog, model, dataset, value, metric)

    def remove_result(self, model: str, dataset: str, metric: str = "accuracy") -> None:
        """Delete a recorded fine-tuning outcome."""
        from zooscope.zoo.history import remove_result

        remove_result(self.catalog, model, dataset, metric)

    def results(self) -> pd.DataFrame:
        """Return recorded fine-tuning outcomes: model, dataset, metric, value, created."""
        from zooscope.zoo.history import results

        return results(self.catalog)

    def check(self, *, fix: bool = False) -> pd.DataFrame:
        """Problems: catalog ↔ vector files ↔ FAISS indices, changed or missing checkpoints, orphan vectors.

        Returns
        -------
        pandas.DataFrame
            Columns problem, subject, detail, fix; empty when the zoo is consistent. ``fix=True`` drops rows whose
            vector file is gone, deletes orphan vectors, rebuilds the indices and re-queues changed checkpoints
            (records their new sha256), so that the next `embed` re-embeds what is missing or stale.
        """
        from zooscope.zoo.check import check

        return check(self.check_context(), fix=fix)

    # -- curation (reads only) ------------------------------------------------------------------------------
    def duplicates(self, threshold: float = 0.995, by: str = "cka", *, progress: bool = False) -> pd.DataFrame:
        """Near-duplicate groups; see `zooscope.zoo.curate.duplicates` (``progress``: a bar on stderr)."""
        from zooscope.zoo.curate import duplicates

        return duplicates(self.curate_context(), threshold=threshold, by=by, progress=progress)

    def clusters(self, n_clusters: int | None = None, by: str = "cka", **options: Any) -> pd.DataFrame:
        """Clusters of models; see `zooscope.zoo.curate.clusters`."""
        from zooscope.zoo.curate import clusters

        return clusters(self.curate_context(), n_clusters, by, **options)

    def zoo_map(self, by: str = "cka", path: str | os.PathLike[str] | None = None, **options: Any) -> pd.DataFrame:
        """2-D map of the zoo; see `zooscope.zoo.curate.zoo_map`."""
        from zooscope.zoo.curate import zoo_map

        return zoo_map(self.curate_context(), by, path, **options)


    # -- the report (reads only; writes the one page) ------------------------------------------------------
    def report(self, path: str | os.PathLike[str] = "zoo.html", by: str = "cka") -> Path:
        """Write the zoo as one self-contained HTML page; see `zooscope.report` (returns the path)."""
        from zooscope.report import write_report

        return write_report(self, path, by=by)
