"""(model, dataset) pairs of the pair embedding kinds (``fisher``).

Which pairs `Zoo.embed` computes, their jobs, and the architecture that keys their index.

Which pairs (``pairs=`` of `Zoo.embed`, ``zooscope embed --pairs``):

* ``"trained-on"`` (default): every model with the dataset it was trained on, when that dataset is registered; a
  model without a registered training set has no default pair (one report row says so);
* ``"all"``: every model with every labelled dataset;
* ``"MODEL:DATASET"`` (several allowed, mixed with the two words above): that pair. Names may hold ``:``; the split
  that names a registered model and a registered dataset is taken (an ambiguous one is refused).

A pair's request holds its ``architecture`` (`zooscope.embed.pairfisher.architecture_of`), the checkpoint's and
the dataset's sha256 and the kind's parameters; the architecture is part of the index key
(`zooscope.zoo.vectors.request_group`), so vectors of different architectures never share an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zooscope._validation import ZooscopeInputError, unknown_name_error
from zooscope.zoo.catalog import Catalog, DatasetRecord, ModelRecord
from zooscope.zoo.catalog import params_hash as request_hash
from zooscope.zoo.parallel import EmbedJob
from zooscope.zoo.settings import ZooSettings
from zooscope.zoo.vectors import VectorRepo

__all__ = ["DEFAULT_PAIRS", "arch_label", "parse_pairs", "plan_pair", "resolve_pairs", "stored_pair_vector"]

DEFAULT_PAIRS = "trained-on"
_WORDS = ("trained-on", "all")


def arch_label(request: dict[str, Any]) -> str:
    """Return a short readable name of a pair vector's architecture: the spec, with its non-head kwargs."""
    a = request.get("architecture") or {}
    kw = ", ".join(f"{k}={v}" for k, v in (a.get("kwargs") or {}).items())
    return f"{a.get('spec')}({kw})" if kw else str(a.get("spec"))


def parse_pairs(pairs: str | Sequence[str] | None) -> list[str]:
    """Return the items of ``pairs`` (a comma-separated string or a sequence): words and ``MODEL:DATASET`` strings."""
    if pairs is None:
        return [DEFAULT_PAIRS]
    items = [p.strip() for p in (pairs.split(",") if isinstance(pairs, str) else pairs) if str(p).strip()]
    if not items:
        raise ZooscopeInputError("'pairs' must be trained-on, all or MODEL:DATASET items; got nothing.")
    for p in items:
        if p not in _WORDS and ":" not in p:
            raise ZooscopeInputError(f"Pair {p!r}: expected trained-on, all, or MODEL:DATASET (e.g. cnn0:digits).")
    return items


def _split(item: str, models: dict[str, ModelRecord], datasets: dict[str, DatasetRecord]) -> tuple[str, str]:
    cuts = [(item[:i], item[i + 1:]) for i, c in enumerate(item) if c == ":"]
    hits = [(m, d) for m, d in cuts if m in models and d in datasets]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        readings = " or ".join(f"(model {m!r}, dataset {d!r})" for m, d in hits)
        raise ZooscopeInputError(f"Pair {item!r} can be read as {readings}; rename the model or the dataset so that "
                                 "one ':' separates them.")
    m, d = cuts[0]
    if m not in models:
        raise unknown_name_error("model", m, list(models))
    raise unknown_name_error("dataset", d, list(datasets))


def resolve_pairs(catalog: Catalog, pairs: str | Sequence[str] | None, *, models: Sequence[str] | None = None,
                  datasets: Sequence[str] | None = None,
                  ) -> tuple[list[tuple[ModelRecord, DatasetRecord]], list[str]]:
    """(pairs to embed, models left without a default pair because no training set of theirs is registered).

    ``models`` / ``datasets`` (of `Zoo.embed`) restrict the pairs further; each pair appears once.
    """
    all_models = {m.name: m for m in catalog.models()}
    all_data = {d.name: d for d in catalog.datasets()}
    out: dict[tuple[str, str], tuple[ModelRecord, DatasetRecord]] = {}
    orphans: list[str] = []
    for item in parse_pairs(pairs):
        if item == "trained-on":
            for m in all_models.values():
                if m.trained_on in all_data:
                    out.setdefault((m.name, m.trained_on), (m, all_data[m.trained_on]))
                elif m.name not in orphans:
                    orphans.append(m.name)
        elif item == "all":
            for m in all_models.values():
                for d in all_data.values():
                    if d.num_classes:
                        out.setdefault((m.name, d.name), (m, d))
        else:
            mn, dn = _split(item, all_models, all_data)
            out.setdefault((mn, dn), (all_models[mn], all_data[dn]))
    keep = [p for p in out.values() if (models is None or p[0].name in models)
            and (datasets is None or p[1].name in datasets)]
    orphans = [n for n in orphans if models is None or n in models]
    return keep, orphans


def plan_pair(settings: ZooSettings, kind: str, meta: Any, model: ModelRecord, data: DatasetRecord,
              max_samples: int | None = None) -> EmbedJob:
    """Return the job (and its request) of one pair kind on (model, dataset); no catalog access.

    Raises
    ------
    ZooscopeInputError
        The dataset has no labels.
    """
    from zooscope.embed.pairfisher import architecture_of

    if not data.num_classes:
        raise ZooscopeInputError(f"Dataset {data.name!r} has no labels; kind {kind!r} needs them.")
    params = settings.params_of(kind, meta.params)
    request = {"kind": kind, "version": meta.version, "params": params,
               "architecture": architecture_of(model.spec, model.kwargs), "spec": model.spec,
               "kwargs": model.kwargs, "checkpoint_sha256": model.checkpoint_sha256,
               "dataset_sha256": data.probe_sha256, "source": data.source, "split": data.meta.get("split", "train"),
               "dataset_seed": int(data.meta.get("seed", 0))}
    return EmbedJob(kind, "pair", model.name, params, request, request_hash(request), arch=model.spec,
                    kwargs=model.kwargs, checkpoint=model.checkpoint, source=data.source,
                    split=data.meta.get("split", "train"), seed=int(data.meta.get("seed", 0)),
                    max_samples=max_samples, dataset=data.name)


def stored_pair_vector(vectors: VectorRepo, kind: str, model: ModelRecord, data: DatasetRecord,
                       params: dict[str, Any]) -> np.ndarray | None:
    """Return the stored ``kind`` vector of (model.

    Dataset) computed with exactly ``params`` from the checkpoint and the dataset contents the catalog records
    now (float64), else None. Reads only.
    """
    for row in reversed(vectors.current_rows(kind, model=model.name, dataset=data.name)):
        req = row.request
        if (req.get("params") == params and req.get("checkpoint_sha256") == model.checkpoint_sha256
                and req.get("dataset_sha256") == data.probe_sha256 and vectors.problem(row) is None):
            return vectors.read64(row)
    return None
