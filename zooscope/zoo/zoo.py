"""`Zoo`: the facade over a model zoo's catalog, vector store, probe sets and FAISS indices.

Folder layout (``Zoo.open(path)`` creates it)::

    <zoo>/catalog.sqlite                   SQLAlchemy Core (or a postgresql:// catalog with <zoo> as storage)
    <zoo>/vectors/<kind>/<key>.npy         one stack per (model, kind) or vector per (dataset, kind)
    <zoo>/indices/<kind>__<policy>.faiss   sha256 recorded in the catalog, checked before every load
    <zoo>/probes/<probe_set>.safetensors   the fixed probe inputs (x, y) per input shape
    <zoo>/cache/                           re-computable: JL projections, features

Probe sets. Model embeddings (``cka``) are computed on one fixed probe set per input shape, so their vectors are
comparable. Default: a stratified, seeded subset of ``probe_n`` = 512 examples of the first registered dataset
(registration order) whose inputs have that shape; it is materialised once and then fixed (``configure`` can
name another dataset, which re-embeds the models of that shape on the next ``embed``).

Task2Vec probe network, per input shape: ``configure(task2vec_probe={"arch": …, "kwargs": …, "checkpoint": …})``;
default ``timm:resnet10t`` (random init: no weights are downloaded) for images of side >= 32, zooscope's
``small_cnn`` for smaller images and ``mlp`` for 1-D inputs. Configure a trained probe for meaningful task vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zooscope._validation import ZooscopeInputError
from zooscope.zoo import _embedrun, _similar
from zooscope.zoo.catalog import Catalog

__all__ = ["Zoo", "shape_key"]

log = logging.getLogger(__name__)

DEFAULT_PROBE_N = 512
DEFAULT_JL = (256, 0)


def shape_key(shape: Sequence[int]) -> str:
    """``(1, 8, 8)`` -> ``"1x8x8"``: the settings key of an input shape."""
    return "x".join(str(int(s)) for s in shape)


class Zoo:
    """A model zoo: models, datasets, their embeddings and indices (open with `Zoo.open`).

    Examples
    --------
    >>> import tempfile
    >>> zoo = Zoo.open(tempfile.mkdtemp())
    >>> zoo.models().empty
    True
    """

    def __init__(self, catalog: Catalog, root: Path) -> None:
        self.catalog = catalog
        self.root = Path(root)
        from zooscope.index.store import VectorStore

        self.store = VectorStore(self.root / "vectors")

    @classmethod
    def open(cls, path_or_url: str | os.PathLike[str], *, storage: str | os.PathLike[str] | None = None) -> Zoo:
        """Open (creating if missing) the zoo at a folder, or at a catalog URL plus a storage folder.

        Parameters
        ----------
        path_or_url : path or str
            A folder (``catalog.sqlite`` inside), or an SQLAlchemy URL such as ``postgresql://user@host/zoo``.
        storage : path, optional
            Required with a URL: the folder (shared storage) for vectors, indices, probes and cache.
        """
        text = str(path_or_url)
        if "://" in text:
            if storage is None:
                raise ZooscopeInputError(
                    f"A catalog URL ({text.split('://')[0]}://…) needs a storage folder for vectors and indices: "
                    "Zoo.open(url, storage='/shared/zoo').")
            root = Path(storage).expanduser().resolve()
            catalog = Catalog(text)
        else:
            root = Path(text).expanduser().resolve()
            if root.exists() and not root.is_dir():
                raise ZooscopeInputError(f"{root} is a file; a zoo is a folder. Choose another path.")
            catalog = Catalog.for_folder(root)
        for sub in ("vectors", "indices", "probes", "cache"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(catalog, root)

    def __repr__(self) -> str:
        return f"Zoo({str(self.root)!r}, models={len(self.catalog.models())})"

    @property
    def path(self) -> Path:
        """The zoo's storage folder (same as ``root``)."""
        return self.root

    # -- contents -------------------------------------------------------------------------------------------
    def add_model(self, name: str, arch: str, checkpoint: str | os.PathLike[str] | None = None,
                  kwargs: dict | None = None, trained_on: str | None = None, metrics: dict | None = None,
                  tags: list | dict | None = None, *, input_shape: Sequence[int] | None = None,
                  replace: bool = False) -> int:
        """Register a model after checking that its spec builds and its checkpoint loads (safe loaders only).

        Records the checkpoint's absolute path and sha256 and the input shape: ``input_shape`` if given, else
        the first that a dry forward pass accepts among the ``trained_on`` dataset's shape, the kwargs'
        (``in_chans`` × ``img_size``², ``in_features``), the registered datasets' shapes and timm's default.

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
        from zooscope.zoo.models import build_model, sha256_file

        ckpt = None if checkpoint is None else Path(checkpoint).expanduser().resolve()
        model = build_model(arch, kwargs, ckpt)
        shape = _find_input_shape(model, self._shape_candidates(input_shape, trained_on, kwargs, model))
        if replace:
            old = [m for m in self.catalog.models() if m["name"] == name]
            if old:
                self.remove_model(name)
        return self.catalog.add_model(
            name, spec=arch, kwargs=kwargs, checkpoint=None if ckpt is None else str(ckpt),
            checkpoint_sha256=None if ckpt is None else sha256_file(ckpt), trained_on=trained_on,
            metrics=metrics, tags=tags, input_shape=shape)

    def _shape_candidates(self, explicit: Sequence[int] | None, trained_on: str | None, kwargs: dict | None,
                          model: Any) -> list[tuple[int, ...]]:
        if explicit is not None:
            return [tuple(int(s) for s in explicit)]
        out: list[tuple[int, ...]] = []
        datasets = sorted(self.catalog.datasets(), key=lambda d: d["id"])
        out += [tuple(d["input_shape"]) for d in datasets if d["name"] == trained_on and d["input_shape"]]
        kw = dict(kwargs or {})
        if "in_features" in kw:
            out.append((int(kw["in_features"]),))
        if "in_chans" in kw and "img_size" in kw:
            side = kw["img_size"]
            hw = tuple(side) if isinstance(side, list | tuple) else (side, side)
            out.append((int(kw["in_chans"]), *map(int, hw)))
        out += [tuple(d["input_shape"]) for d in datasets if d["input_shape"]]
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        if cfg.get("input_size"):
            out.append((int(kw.get("in_chans", cfg["input_size"][0])), *map(int, cfg["input_size"][1:])))
        return list(dict.fromkeys(out))

    def add_dataset(self, name: str, source: str, *, split: str = "train", seed: int = 0,
                    replace: bool = False) -> int:
        """Register a dataset: it is loaded once to record its size, classes, input shape and sha256.

        Parameters
        ----------
        name : str
        source : str
            Anything `zooscope.zoo.datasets.load_dataset` reads: ``"builtin:digits"``, a ``.npz`` path, an
            ImageFolder directory, …
        split : str, default="train"
        seed : int, default=0
        replace : bool, default=False
        """
        from zooscope.zoo.datasets import load_dataset, tensors_sha256

        ds = load_dataset(source, split=split, seed=seed)
        if replace and any(d["name"] == name for d in self.catalog.datasets()):
            self.remove_dataset(name)
        return self.catalog.add_dataset(
            name, source=source, size=len(ds.x), num_classes=ds.num_classes, input_shape=ds.input_shape,
            probe_sha256=tensors_sha256(ds.x, ds.y),
            meta={"split": split, "seed": seed, "classes": ds.classes}, replace=False)

    def remove_model(self, name: str) -> None:
        """Delete a model, its vectors and its index entries."""
        rows = self.catalog.remove_model(name)
        _embedrun.drop_rows(self, rows)

    def remove_dataset(self, name: str) -> None:
        """Delete a dataset, its vectors and its index entries (models trained on it stay)."""
        rows = self.catalog.remove_dataset(name)
        _embedrun.drop_rows(self, rows)

    def models(self) -> pd.DataFrame:
        """One row per model: name, spec, trained_on, input_shape, checkpoint, metrics, tags, …"""
        cols = ["name", "spec", "trained_on", "input_shape", "checkpoint", "checkpoint_sha256", "kwargs",
                "metrics", "tags", "created"]
        return pd.DataFrame(self.catalog.models(), columns=cols)

    def datasets(self) -> pd.DataFrame:
        """One row per dataset: name, source, size, num_classes, input_shape, probe_sha256, …"""
        cols = ["name", "source", "size", "num_classes", "input_shape", "probe_sha256", "meta", "created"]
        return pd.DataFrame(self.catalog.datasets(), columns=cols)

    def failures(self) -> pd.DataFrame:
        """Embedding jobs that failed (kind, model, dataset, error, attempts)."""
        return pd.DataFrame(self.catalog.failures(),
                            columns=["kind", "model", "dataset", "error", "attempts", "created"])

    # -- settings -------------------------------------------------------------------------------------------
    def configure(self, *, probe_n: int | None = None, probe_seed: int | None = None,
                  probe_dataset: str | None = None, task2vec_probe: dict | None = None,
                  input_shape: Sequence[int] | None = None, jl_dim: int | None = None,
                  jl_seed: int | None = None, kind_params: dict[str, dict] | None = None) -> dict[str, Any]:
        """Change the zoo's settings; returns them all.

        Parameters
        ----------
        probe_n, probe_seed : int, optional
            Size and seed of new probe sets (default 512, 0). Existing probe sets stay fixed.
        probe_dataset : str, optional
            Use this registered dataset as the probe set of its input shape (replaces that shape's probe set).
        task2vec_probe : dict, optional
            ``{"arch": spec, "kwargs": {...}, "checkpoint": path}``: the Task2Vec probe network for
            ``input_shape`` (required with it).
        jl_dim, jl_seed : int, optional
            JL projection of long vectors for the index (default 256, 0).
        kind_params : dict, optional
            Per kind parameter overrides, e.g. ``{"cka": {"debiased": True}}`` (changes re-embed that kind).
        """
        cat = self.catalog
        probe = dict(cat.get_setting("probe", {}))
        if probe_n is not None:
            if int(probe_n) < 4:
                raise ZooscopeInputError(f"'probe_n' must be an int >= 4; got {probe_n!r}.")
            probe["n"] = int(probe_n)
        if probe_seed is not None:
            probe["seed"] = int(probe_seed)
        if probe_dataset is not None:
            rec = cat.get_dataset(probe_dataset)
            key = shape_key(rec["input_shape"])
            probe.setdefault("datasets", {})[key] = probe_dataset
            sets = dict(cat.get_setting("probe_sets", {}))
            sets.pop(key, None)
            cat.set_setting("probe_sets", sets)
        cat.set_setting("probe", probe)
        if task2vec_probe is not None:
            if input_shape is None or "arch" not in task2vec_probe:
                raise ZooscopeInputError("configure(task2vec_probe={'arch': …, 'kwargs': …, 'checkpoint': …}, "
                                         "input_shape=(C, H, W)) needs both the spec and the input shape.")
            from zooscope.zoo.models import build_model

            build_model(task2vec_probe["arch"], task2vec_probe.get("kwargs"), task2vec_probe.get("checkpoint"))
            probes = dict(cat.get_setting("task2vec_probes", {}))
            probes[shape_key(input_shape)] = dict(task2vec_probe)
            cat.set_setting("task2vec_probes", probes)
        if jl_dim is not None or jl_seed is not None:
            dim, seed = self.jl_settings()
            cat.set_setting("jl", {"dim": int(jl_dim if jl_dim is not None else dim),
                                   "seed": int(jl_seed if jl_seed is not None else seed)})
        if kind_params is not None:
            current = dict(cat.get_setting("kind_params", {}))
            current.update({k: dict(v) for k, v in kind_params.items()})
            cat.set_setting("kind_params", current)
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """All zoo settings (probe, probe_sets, task2vec_probes, jl, kind_params)."""
        keys = ("probe", "probe_sets", "task2vec_probes", "jl", "kind_params")
        return {k: self.catalog.get_setting(k) for k in keys}

    def jl_settings(self) -> tuple[int, int]:
        """(dim, seed) of the JL projection used by the indices."""
        jl = self.catalog.get_setting("jl") or {}
        return int(jl.get("dim", DEFAULT_JL[0])), int(jl.get("seed", DEFAULT_JL[1]))

    def probe_set(self, input_shape: Sequence[int]) -> dict[str, Any]:
        """The probe set for ``input_shape`` (materialised on first use): id, dataset, n, seed, sha256, file."""
        return _embedrun.probe_set(self, tuple(int(s) for s in input_shape))

    # -- work -----------------------------------------------------------------------------------------------
    def embed(self, kinds: Sequence[str] | str = ("task2vec", "cka"), backend: str = "local",
              models: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
              progress: bool = False, address: str | None = None) -> pd.DataFrame:
        """Embed every (model | dataset, kind) pair not embedded yet, then rebuild the FAISS indices.

        Resumable: each finished pair is one vector file (written atomically) and then one catalog row (one
        transaction), so a run killed at any point (even SIGKILL) restarts where it stopped and embeds each pair
        once. A pair that fails is recorded (`failures`) and the run continues.

        Parameters
        ----------
        kinds : sequence of str or str, default=("task2vec", "cka")
            Embedding kinds (`zooscope.embed._kinds.EMBEDDINGS`).
        backend : {"local", "ray"}, default="local"
            ``"ray"`` runs one task per pair (see `zooscope.zoo.parallel`); this process stays the only writer.
        models, datasets : sequence of str, optional
            Restrict to these names (default: all).
        progress : bool, default=False
            Progress bar on stderr.
        address : str, optional
            Ray cluster address (``"auto"``).

        Returns
        -------
        pandas.DataFrame
            One row per planned pair: kind, model, dataset, status ("embedded", "skipped", "failed"), seconds,
            error.
        """
        return _embedrun.embed(self, kinds, backend=backend, models=models, datasets=datasets,
                               progress=progress, address=address)

    def similar(self, model: str, k: int = 10, by: str = "cka", *, arch: str | None = None,
                checkpoint: str | os.PathLike[str] | None = None, kwargs: dict | None = None,
                layer: str = "penultimate", rule: str = "layer", oversample: int = 4,
                exact: bool = False) -> pd.DataFrame:
        """The ``k`` zoo models most similar to ``model``; see `zooscope.zoo._similar.similar`."""
        return _similar.similar(self, model, k, by, arch=arch, checkpoint=checkpoint, kwargs=kwargs,
                                layer=layer, rule=rule, oversample=oversample, exact=exact)

    def select(self, dataset: str, k: int = 10, **options: Any) -> pd.DataFrame:
        """The ``k`` zoo models to transfer from for ``dataset``; see `zooscope.zoo.select.select`."""
        from zooscope.zoo.select import select

        return select(self, dataset, k, **options)

    def check(self, *, fix: bool = False) -> pd.DataFrame:
        """Problems: catalog ↔ vector files ↔ FAISS indices, changed or missing checkpoints, orphan vectors.

        Returns
        -------
        pandas.DataFrame
            Columns problem, subject, detail, fix; empty when the zoo is consistent. ``fix=True`` deletes orphan
            vectors and rebuilds the indices (changed checkpoints are only reported: re-add those models).
        """
        from zooscope.zoo._check import check

        return check(self, fix=fix)


def _find_input_shape(model: Any, candidates: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The first candidate shape that a dry forward pass (batch of 2 zeros, eval, no grad) accepts."""
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
