"""The zoo's settings as one typed value (`ZooSettings`), and where a zoo's files and cache live (`ZooPaths`).

Settings are stored in the catalog's ``settings`` table (JSON, one key per group: ``probe``, ``probe_sets``,
``task2vec_probes``, ``jl``, ``kind_params``, ``storage``); `ZooSettings.load` reads them all at once and
`configure` is the only writer. Everything downstream (probes, vectors, indices, queries) receives a
`ZooSettings`, never the catalog's raw dicts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zooscope._io import user_cache_dir
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog

__all__ = ["CKA_DTYPES", "DEFAULT_JL", "DEFAULT_PROBE_N", "ZooPaths", "ZooSettings", "configure", "shape_key",
           "user_cache_dir"]

DEFAULT_PROBE_N = 512
DEFAULT_JL = (256, 0)
_KEYS = ("probe", "probe_sets", "task2vec_probes", "jl", "kind_params", "storage")
#: dtypes a zoo may store its CKA signatures in: float16 halves the files, moving a CKA value by at most 2⁻¹⁰
#: (each unit-vector entry rounded to 11 significant bits; see `zooscope.embed.signature`)
CKA_DTYPES = ("float32", "float16")


def shape_key(shape: Sequence[int]) -> str:
    """``(1, 8, 8)`` -> ``"1x8x8"``: the settings key of an input shape."""
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class ZooPaths:
    """Where a zoo keeps its files.

    ``cache`` is ``<root>/cache`` for a writable zoo; for a read-only one it is a folder per zoo under
    `user_cache_dir` (``$ZOOSCOPE_CACHE`` or ``~/.cache/zooscope``), so queries never write the zoo itself.
    Everything under ``cache`` is re-computable and safe to delete.
    """

    root: Path
    writable: bool
    cache: Path

    @classmethod
    def for_root(cls, root: str | os.PathLike[str], writable: bool) -> ZooPaths:
        """Return the paths of the zoo at ``root``."""
        root = Path(root)
        if writable:
            return cls(root, True, root / "cache")
        tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return cls(root, False, user_cache_dir() / "zoos" / tag)

    @property
    def vectors(self) -> Path:
        """The vectors."""
        return self.root / "vectors"

    @property
    def indices(self) -> Path:
        """The indices."""
        return self.root / "indices"

    @property
    def probes(self) -> Path:
        """The probes."""
        return self.root / "probes"


@dataclass(frozen=True)
class ZooSettings:
    """Every setting of a zoo (read once from the catalog).

    Attributes
    ----------
    probe_n, probe_seed : int
        Size and seed of new probe sets.
    probe_datasets : dict
        shape key -> the dataset chosen as that shape's probe set (``configure(probe_dataset=…)``).
    probe_sets : dict
        shape key -> the materialised probe set's record (id, dataset, n, seed, sha256, file, input_shape).
    task2vec_probes : dict
        shape key -> ``{"arch", "kwargs", "checkpoint", "checkpoint_sha256", "pretrained"?, "trained"?}`` of the
        Task2Vec probe network (checkpoint: a file under ``<zoo>/probes/``; "trained": what it was trained on).
    jl_dim, jl_seed : int
        JL projection of long vectors for the indices.
    kind_params : dict
        kind -> parameter overrides.
    cka_dtype : {"float32", "float16"}
        dtype of newly stored CKA signatures (`CKA_DTYPES`); vectors stored before keep theirs.
    """

    probe_n: int = DEFAULT_PROBE_N
    probe_seed: int = 0
    probe_datasets: Mapping[str, str] = field(default_factory=dict)
    probe_sets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    task2vec_probes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    jl_dim: int = DEFAULT_JL[0]
    jl_seed: int = DEFAULT_JL[1]
    kind_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cka_dtype: str = "float32"

    @classmethod
    def load(cls, catalog: Catalog) -> ZooSettings:
        """Read the settings from the catalog (defaults for what is unset)."""
        probe = catalog.get_setting("probe") or {}
        jl = catalog.get_setting("jl") or {}
        return cls(probe_n=int(probe.get("n", DEFAULT_PROBE_N)), probe_seed=int(probe.get("seed", 0)),
                   probe_datasets=dict(probe.get("datasets") or {}),
                   probe_sets=dict(catalog.get_setting("probe_sets") or {}),
                   task2vec_probes=dict(catalog.get_setting("task2vec_probes") or {}),
                   jl_dim=int(jl.get("dim", DEFAULT_JL[0])), jl_seed=int(jl.get("seed", DEFAULT_JL[1])),
                   kind_params=dict(catalog.get_setting("kind_params") or {}),
                   cka_dtype=str((catalog.get_setting("storage") or {}).get("cka_dtype", "float32")))

    def as_dict(self) -> dict[str, Any]:
        """Return the stored form (what `Zoo.settings` returns): probe, probe_sets, task2vec_probes, jl, kind_params."""
        probe: dict[str, Any] = {"n": self.probe_n, "seed": self.probe_seed}
        if self.probe_datasets:
            probe["datasets"] = dict(self.probe_datasets)
        return {"probe": probe, "probe_sets": dict(self.probe_sets), "task2vec_probes": dict(self.task2vec_probes),
                "jl": {"dim": self.jl_dim, "seed": self.jl_seed}, "kind_params": dict(self.kind_params),
                "storage": {"cka_dtype": self.cka_dtype}}

    def params_of(self, kind: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Return a kind's parameters: its defaults updated with the configured overrides."""
        return {**dict(defaults), **dict(self.kind_params.get(kind, {}))}

    def task2vec_probe(self, shape: Sequence[int], num_classes: int) -> dict[str, Any]:
        """Return the configured (or trained) Task2Vec probe network of ``shape``.

        Else `default_task2vec_probe` (untrained: `zooscope.zoo.probes.train_task2vec_probe` trains one at the
        first `embed`).
        """
        shape = tuple(int(s) for s in shape)
        if shape_key(shape) in self.task2vec_probes:
            return dict(self.task2vec_probes[shape_key(shape)])
        return self.default_task2vec_probe(shape, num_classes)

    @staticmethod
    def default_task2vec_probe(shape: Sequence[int], num_classes: int) -> dict[str, Any]:
        """Return the architecture of ``shape``'s probe network.

        ``timm:resnet10t`` for images of side >= 32, ``small_cnn`` for smaller square images, ``mlp`` for 1-D
        inputs (random weights).
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) == 3 and min(shape[1:]) >= 32:
            return {"arch": "timm:resnet10t", "kwargs": {"in_chans": shape[0], "num_classes": num_classes}}
        if len(shape) == 3 and shape[1] == shape[2]:
            return {"arch": "zooscope.zoo.models:small_cnn",
                    "kwargs": {"in_chans": shape[0], "img_size": shape[1], "num_classes": num_classes, "seed": 0}}
        if len(shape) > 2:
            raise ZooscopeInputError(f"No default Task2Vec probe for inputs of shape {shape}; "
                                     "configure(task2vec_probe={'arch': …}, input_shape=…).")
        return {"arch": "zooscope.zoo.models:mlp",
                "kwargs": {"in_features": int(shape[-1]), "num_classes": num_classes, "seed": 0}}


def configure(catalog: Catalog, *, probe_n: int | None = None, probe_seed: int | None = None,
              probe_dataset: str | None = None, jl_dim: int | None = None, jl_seed: int | None = None,
              kind_params: dict[str, dict] | None = None, cka_dtype: str | None = None) -> ZooSettings:
    """Change the stored settings (see `Zoo.configure`); returns the new `ZooSettings`.

    The Task2Vec probe network (a file under ``<zoo>/probes/`` plus its record) is set by
    `zooscope.zoo.probes.store_task2vec_probe` / `~zooscope.zoo.probes.train_task2vec_probe`.
    """
    cat = catalog
    probe = dict(cat.get_setting("probe", {}) or {})
    if probe_n is not None:
        if isinstance(probe_n, bool) or int(probe_n) < 4:
            raise ZooscopeInputError(f"'probe_n' must be an int >= 4; got {probe_n!r}.")
        probe["n"] = int(probe_n)
    if probe_seed is not None:
        probe["seed"] = int(probe_seed)
    if probe_dataset is not None:
        rec = cat.get_dataset(probe_dataset)
        key = shape_key(rec.input_shape)
        probe.setdefault("datasets", {})[key] = probe_dataset
        sets = dict(cat.get_setting("probe_sets", {}) or {})
        sets.pop(key, None)
        cat.set_setting("probe_sets", sets)
    if probe_n is not None or probe_seed is not None or probe_dataset is not None:
        cat.set_setting("probe", probe)
    if jl_dim is not None or jl_seed is not None:
        now = ZooSettings.load(cat)
        cat.set_setting("jl", {"dim": int(jl_dim if jl_dim is not None else now.jl_dim),
                               "seed": int(jl_seed if jl_seed is not None else now.jl_seed)})
    if cka_dtype is not None:
        if cka_dtype not in CKA_DTYPES:
            raise ZooscopeInputError(f"'cka_dtype' must be one of {', '.join(CKA_DTYPES)}; got {cka_dtype!r}.")
        cat.set_setting("storage", {**dict(cat.get_setting("storage", {}) or {}), "cka_dtype": cka_dtype})
    if kind_params is not None:
        current = dict(cat.get_setting("kind_params", {}) or {})
        current.update({k: dict(v) for k, v in kind_params.items()})
        cat.set_setting("kind_params", current)
    return ZooSettings.load(cat)
