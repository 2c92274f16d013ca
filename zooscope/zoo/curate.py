"""Curating a zoo: near-duplicate groups, clusters, a 2-D map, and a layer × layer heat-map of two models.

All of them start from `similarity_matrix`: ``by="cka"`` is linear CKA between the models' penultimate-layer
signatures (NaN between models on different probe sets), ``by="task2vec"`` is 1 − d_sym between the task vectors
of the datasets the models were trained on (models with no task vector are left out), ``by="fisher"`` is the
cosine of the models' stored Fisher on their own training sets (`zooscope.embed.pairfisher`; NaN between models of
different architectures, which are never compared: the map puts them at the largest distance).

Reads only. Each function takes a `CurateContext` (or a `Zoo`, whose ``curate_context()`` gives one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope._progress import track
from zooscope._validation import ZooscopeInputError, check_choice
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.probes import ProbeContext, probe_inputs
from zooscope.zoo.vectors import VectorRepo, comparability_group

__all__ = ["CurateContext", "clusters", "duplicates", "pair_heatmap", "similarity_matrix", "task_distances",
           "zoo_map"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurateContext:
    """What curation reads: stored vectors and probe sets (and, through them, the catalog)."""

    vectors: VectorRepo
    probes: ProbeContext

    @property
    def catalog(self) -> Catalog:
        """The catalog."""
        return self.vectors.catalog


def _ctx(zoo: Any) -> CurateContext:
    return zoo if isinstance(zoo, CurateContext) else zoo.curate_context()


def similarity_matrix(zoo: Any, by: str = "cka", *, progress: bool = False) -> pd.DataFrame:
    """Model × model similarity (larger = more similar; 1 on the diagonal).

    ``progress=True`` draws a progress bar on stderr while the vectors are read.

    Returns
    -------
    pandas.DataFrame of shape (n_models, n_models)
        Index and columns are model names (embedded models only).
    """
    check_choice(by, ("cka", "task2vec", "gradsketch", "fisher"), "by", "similarity_matrix")
    ctx = _ctx(zoo)
    if by == "task2vec":
        from zooscope.embed.task2vec import task_distance

        vecs = {r.dataset: ctx.vectors.read64(r)
                for r in track(ctx.vectors.current_rows("task2vec"), description="reading task vectors",
                               enabled=progress, transient=True)}
        src = {m.name: m.trained_on for m in ctx.catalog.models() if m.trained_on in vecs}
        names = sorted(src)
        S = np.array([[1.0 - task_distance(vecs[src[a]], vecs[src[b]]) if src[a] != src[b] else 1.0
                       for b in names] for a in names]).reshape(len(names), len(names))
    else:
        rows = sorted(ctx.vectors.current_rows(by), key=lambda r: r.model)
        if by == "fisher":  # one pair per model: its Fisher on its own training set, as a unit vector
            own = {m.name: m.trained_on for m in ctx.catalog.models()}
            rows = [r for r in rows if r.dataset is not None and own.get(r.model) == r.dataset]
        names = [r.model for r in rows]
        V = [ctx.vectors.layer_vector(r) for r in track(rows, description=f"reading {len(rows)} {by} vectors",
                                                        enabled=progress, transient=True)]
        if by == "fisher":
            V = [v / max(float(np.linalg.norm(v)), 1e-300) for v in V]
        probe = np.array([comparability_group(r) for r in rows], dtype=object)
        S = np.full((len(rows), len(rows)), np.nan)
        for g in dict.fromkeys(probe):  # one matrix product per comparability group
            idx = np.flatnonzero(probe == g)
            M = np.stack([V[i] for i in idx])
            S[np.ix_(idx, idx)] = M @ M.T
    if len(names) < 2:
        raise ZooscopeInputError(f"Curation needs at least two models with a {by!r} embedding; found {len(names)}. "
                                 f"Run zoo.embed(kinds=('{by}',)) first.")
    return pd.DataFrame(S, index=names, columns=names)


def task_distances(zoo: Any) -> pd.DataFrame:
    """Dataset × dataset Task2Vec distance d_sym (smaller = more similar tasks; 0 on the diagonal).

    Returns
    -------
    pandas.DataFrame of shape (n_datasets, n_datasets)
        Index and columns are the names of the datasets with a task vector (sorted); empty when none has one.
        NaN between datasets whose task vectors come from different probe networks (other input shapes): those
        vectors live in different parameter spaces.
    """
    from zooscope.embed.task2vec import task_distance

    ctx = _ctx(zoo)
    rows = ctx.vectors.current_rows("task2vec")
    vecs = {r.dataset: ctx.vectors.read64(r) for r in rows}
    group = {r.dataset: comparability_group(r) for r in rows}
    names = sorted(vecs)
    D = np.array([[0.0 if a == b else task_distance(vecs[a], vecs[b]) if group[a] == group[b] else np.nan
                   for b in names] for a in names])
    return pd.DataFrame(D.reshape(len(names), len(names)), index=names, columns=names)


def duplicates(zoo: Any, threshold: float = 0.995, by: str = "cka", *, progress: bool = False) -> pd.DataFrame:
    """Return groups of near-identical models: connected components of the graph "similarity >= threshold".

    Returns
    -------
    pandas.DataFrame
        Columns group, model, min_similarity (the smallest similarity inside the group); one row per model of
        every group with at least two models.
    """
    from scipy.sparse.csgraph import connected_components

    if not 0 < float(threshold) <= 1:
        raise ZooscopeInputError(f"'threshold' of duplicates must be in (0, 1]; got {threshold!r}.")
    S = similarity_matrix(zoo, by, progress=progress)
    A = np.nan_to_num(S.to_numpy(), nan=-np.inf) >= float(threshold)
    _, labels = connected_components(A, directed=False)
    out, g = [], 0
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        if len(members) < 2:
            continue
        g += 1
        inner = float(np.nanmin(S.to_numpy()[np.ix_(members, members)]))
        out += [{"group": g, "model": S.index[i], "min_similarity": inner} for i in members]
    return pd.DataFrame(out, columns=["group", "model", "min_similarity"])


def clusters(zoo: Any, n_clusters: int | None = None, by: str = "cka", *, method: str = "agglomerative",
             distance_threshold: float = 0.5, progress: bool = False) -> pd.DataFrame:
    """Cluster the models on the distance 1 − similarity (scikit-learn).

    Parameters
    ----------
    n_clusters : int, optional
        None: agglomerative clustering cut at ``distance_threshold`` (average linkage).
    method : {"agglomerative", "spectral"}, default="agglomerative"
        "spectral" uses the clipped similarity as a precomputed affinity and needs ``n_clusters``.

    Returns
    -------
    pandas.DataFrame
        Columns model, cluster.
    """
    check_choice(method, ("agglomerative", "spectral"), "method", "clusters")
    S = similarity_matrix(zoo, by, progress=progress)
    sim = np.clip(np.nan_to_num(S.to_numpy(), nan=0.0), 0.0, 1.0)
    if method == "spectral":
        from sklearn.cluster import SpectralClustering

        if n_clusters is None:
            raise ZooscopeInputError("method='spectral' needs n_clusters.")
        labels = SpectralClustering(n_clusters=int(n_clusters), affinity="precomputed",
                                    random_state=0).fit_predict(sim)
    else:
        from sklearn.cluster import AgglomerativeClustering

        kw = ({"n_clusters": int(n_clusters)} if n_clusters is not None
              else {"n_clusters": None, "distance_threshold": float(distance_threshold)})
        labels = AgglomerativeClustering(metric="precomputed", linkage="average", **kw).fit_predict(1.0 - sim)
    return pd.DataFrame({"model": S.index, "cluster": labels.astype(int)})


def zoo_map(zoo: Any, by: str = "cka", path: str | Path | None = None, *, seed: int = 0,
            progress: bool = False) -> pd.DataFrame:
    """2-D map of the zoo: metric MDS (scikit-learn, ``dissimilarity="precomputed"``, seeded) of 1 − similarity.

    Returns
    -------
    pandas.DataFrame
        Columns model, x, y, trained_on; also drawn to ``path`` (PNG) via `zooscope.plot.zoo_map` when given.
    """
    from sklearn.manifold import MDS

    S = similarity_matrix(zoo, by, progress=progress)
    D = 1.0 - np.clip(np.nan_to_num(S.to_numpy(), nan=0.0), 0.0, 1.0)
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    import inspect

    if "metric_mds" in inspect.signature(MDS).parameters:  # scikit-learn >= 1.8 deprecates dissimilarity=
        mds = MDS(n_components=2, metric="precomputed", init="random", random_state=seed, n_init=4)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", random_state=seed, n_init=4)
    xy = mds.fit_transform(D)
    src = {m.name: m.trained_on for m in _ctx(zoo).catalog.models()}
    df = pd.DataFrame({"model": S.index, "x": xy[:, 0], "y": xy[:, 1], "trained_on": [src.get(n) for n in S.index]})
    if path is not None:
        from zooscope.plot import zoo_map as draw

        draw(df, path, title=f"zoo map ({by})")
    return df


def pair_heatmap(zoo: Any, a: str, b: str, path: str | Path, *, measure: str = "linear_cka") -> pd.DataFrame:
    """Layer × layer comparison of two zoo models on the probe set of their input shape, drawn to ``path``."""
    from zooscope.embed.compare import compare
    from zooscope.nets.models import ModelSpec
    from zooscope.plot import heatmap

    ctx = _ctx(zoo)
    ra, rb = ctx.catalog.get_model(a), ctx.catalog.get_model(b)
    if tuple(ra.input_shape or ()) != tuple(rb.input_shape or ()):
        raise ZooscopeInputError(f"{a!r} takes inputs {ra.input_shape} and {b!r} takes {rb.input_shape}; "
                                 "a layer × layer comparison needs the same inputs.")
    _, x = probe_inputs(ctx.probes, tuple(ra.input_shape))
    ma = ModelSpec.from_row(ra).build()
    mb = ModelSpec.from_row(rb).build()
    table = compare(ma, mb, x, measure=measure)
    heatmap(table, path, title=f"{a} vs {b}")
    return table
