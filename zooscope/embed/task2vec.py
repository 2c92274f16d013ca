"""Task2Vec: a dataset's vector is the diagonal Fisher of a fixed probe network refit to it (Achille et al. 2019).

``Task2Vec(probe).embed(x, y)``:

1. **Order-free.** Examples are put in a canonical order (sorted by a hash of each ``(x_i, y_i)``), so the
   result does not depend on how the data is ordered: permuting ``(x, y)`` gives a bitwise-identical vector
   for the same seed.  ``max_samples`` keeps a stratified, seeded subset of that order
   (`zooscope._sampling.stratified_sample`; deterministic and order-free).
2. **Probe split.** A deepcopy of the probe is used (the probe is never modified), in EVAL mode: BatchNorm uses
   its running statistics, so examples are independent and per-sample gradients are well defined (the
   reference code leaves BN in train mode).  The feature extractor is, for a timm model,
   ``forward_head(forward_features(x), pre_logits=True)`` (its ``get_classifier()`` is excluded); for any other
   ``nn.Module``, the model with its classifier -- ``get_classifier()`` if it has one, else its LAST
   ``nn.Linear`` in ``named_modules`` order -- replaced by ``nn.Identity`` (so the classifier must be the last
   operation of ``forward``).
3. **Head.** A new linear head (K classes) is fit on cached penultimate features: Adam(``head_lr``,
   weight decay ``head_wd``), ``head_epochs`` epochs of ``head_draws`` class-balanced draws, batch
   ``batch_size`` (the reference's recipe).
4. **Fisher.** ``F = Σ_i w_i E_{ŷ∼p(·|x_i)} [ (∇_w log p(ŷ|x_i))² ] / Σ_i w_i`` over the feature-extractor
   weights, with labels SAMPLED from the model and TRUE per-sample gradients (see `zooscope.embed.fisher`),
   class-balanced weights ``w_i = N / (K n_{y_i})``, averaged per filter.  One full pass draws one label per
   example; ``n_samples`` > N draws ``ceil(n_samples / N)`` labels per example on one shared forward pass.

The vector layout is the reference's: modules in ``named_modules`` order, conv entries = mean over
(in, kh, kw) of the squared gradient per output filter, norm-layer entries = γ per channel.  For a torchvision
ResNet-18 that is 9600 entries, identical to the reference's ``layout.json``.  Values are ~100-250× the
reference's on its oracle tasks: it squares batch-mean gradients (≈ 1/64 of the per-sample Fisher, a known
issue) with BN in train mode; entry-wise Spearman correlation with its vectors is ≈ 0.7.

Distances (`zooscope.embed.taskdist`, re-exported): `task_distance`, `pdist`, `cdist` (d_sym, d_asym).
The ``task2vec`` embedding kind returns the Fisher vector itself (float32: what the exact re-rank needs);
FAISS gets `index_vector` of it (``task2vec.index_transform``): the centred log-Fisher, whose inner
product on unit vectors is the correlation of log-Fisher vectors; candidates are then re-ranked exactly
with d_sym / d_asym.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from zooscope._progress import track
from zooscope._sampling import stratified_sample
from zooscope._validation import ZooscopeInputError, check_choice, check_positive
from zooscope.embed import fisher as _fisher
from zooscope.embed._kinds import EMBEDDINGS, EmbeddingMeta
from zooscope.embed.taskdist import TaskEmbedding, cdist, index_vector, pdist, task_distance

log = logging.getLogger(__name__)

__all__ = ["Task2Vec", "TaskEmbedding", "cdist", "index_vector", "pdist", "task2vec", "task_distance"]

CODE_VERSION = "1"


class _ProbeNet(nn.Module):
    """probe features -> new linear head; the probe is a deepcopy in eval mode."""

    def __init__(self, probe: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(probe).eval()
        for m in model.modules():  # in-place activations would overwrite tensors the hooks read
            if isinstance(getattr(m, "inplace", None), bool):
                m.inplace = False
        self.timm = all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier"))
        if self.timm:
            self.excluded = {id(m) for m in model.get_classifier().modules()}
        else:
            self._drop_classifier(model)
            self.excluded = set()
        self.model = model
        self.head: nn.Linear | None = None

    @staticmethod
    def _drop_classifier(model: nn.Module) -> None:
        clf = model.get_classifier() if hasattr(model, "get_classifier") else None
        names = {id(m): n for n, m in model.named_modules()}
        if clf is None or id(clf) not in names:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ZooscopeInputError(
                    f"The probe ({type(model).__name__}) has no nn.Linear classifier, so its feature extractor "
                    "cannot be found. Use a timm model or a network ending in an nn.Linear layer.")
            name = linears[-1]
        else:
            name = names[id(clf)]
        if not name:
            raise ZooscopeInputError("The probe is a bare classifier; Task2Vec needs a feature extractor before it.")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.timm:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return self.model(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _canonical_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return indices sorting the examples by a hash of their content (ties are identical examples)."""
    xb = np.ascontiguousarray(x.reshape(len(x), -1))
    keys = [hashlib.blake2b(xb[i].tobytes() + y[i].tobytes(), digest_size=8).digest() for i in range(len(x))]
    return np.array(sorted(range(len(x)), key=keys.__getitem__), dtype=np.int64)


def _as_inputs(x: Any, y: Any) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    xt = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not torch.is_floating_point(xt):
        xt = xt.float()
    xt = xt.float().contiguous()
    if xt.ndim < 2:
        raise ZooscopeInputError(f"x must have shape (n_examples, ...); got shape {tuple(xt.shape)}.")
    if not torch.isfinite(xt).all():
        raise ZooscopeInputError("x contains NaN or Inf; clean or drop those examples first.")
    ya = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if ya.ndim != 1 or ya.shape[0] != xt.shape[0]:
        raise ZooscopeInputError(f"y must be 1-D with one label per example: x has {xt.shape[0]} examples, "
                                 f"y has shape {ya.shape}.")
    if not (np.issubdtype(ya.dtype, np.integer) or np.issubdtype(ya.dtype, np.bool_)):
        if not np.issubdtype(ya.dtype, np.floating) or not np.all(ya == np.round(ya)):
            raise ZooscopeInputError(f"y must hold integer class labels; got dtype {ya.dtype}.")
    classes, yi = np.unique(ya.astype(np.int64), return_inverse=True)
    if len(classes) < 2:
        raise ZooscopeInputError(f"Task2Vec needs at least 2 classes; y has {len(classes)}.")
    return xt, yi.astype(np.int64), classes


class Task2Vec:
    """Embed labelled datasets as per-filter diagonal Fisher vectors of one fixed probe network.

    Parameters
    ----------
    probe : nn.Module
        The fixed probe (timm model or any ``nn.Module`` ending in a linear classifier). Never modified.
    method : {"montecarlo", "variational"}, default="montecarlo"
        Monte Carlo Fisher with model-sampled labels and true per-sample gradients, or the reference's
        variational "robust Fisher" (per-filter posterior precisions, conv layers only).
    n_samples : int or None, default=10000
        Fisher terms (the reference's budget): ``ceil(n_samples / N)`` model-sampled labels per example, all
        sharing one forward pass; None: one per example. For the variational method: the class-balanced draws
        per epoch.
    batch_size : int, default=64
    head_epochs : int, default=10
        Epochs of the head fit; an epoch is ``head_draws // batch_size`` Adam steps (the reference's
        ``head_draws`` class-balanced draws with replacement, batch ``batch_size``).
    head_lr, head_wd : float
        Adam learning rate and weight decay of the head fit.
    head_draws : int, default=10000
    max_samples : int, optional
        Use at most about this many examples (stratified, deterministic subset). Default: all.
    seed : int, default=0
        The sampled labels (and, with ``head_solver="minibatch"``, the head's init and batches). Same seed,
        same data in any order: bitwise the same vector.
    estimator : {"auto", "per_sample", "hooks", "vmap", "loop", "random_sign"}, default="auto"
        How ``Σ_i g_i²`` is computed (`zooscope.embed.fisher`). "auto": the exact hook estimator when every
        weighted module supports it (plain Conv/Linear/BatchNorm/LayerNorm/GroupNorm: e.g. ResNets, small
        CNNs, MLPs), else vmap (≤ 2 M parameters), else random_sign. "per_sample" never picks random_sign.
    skip_layers : int, default=0
        Leave the first ``skip_layers`` top-level children of the probe out of the vector.
    include_bn : bool, default=True
        Include normalisation layers' γ (as the reference's Monte Carlo vectors do).
    fisher_labels : {"sample", "exact"}, default="sample"
        "exact" replaces the sampled labels by their expectation, ``Σ_c p_c g_c²`` (K backward passes per
        batch; no label noise at all).
    head_solver : {"fullbatch", "minibatch"}, default="fullbatch"
        "fullbatch": the same number of Adam steps on the exact class-balanced loss from a zero head, so the
        head depends neither on the seed nor on the order (it halves the two-seed noise floor, see
        benchmarks/RESULTS.md); "minibatch": the reference's seeded class-balanced mini-batches.
    progress : bool, default=False
        Show a progress bar on stderr.

    Examples
    --------
    >>> import torch
    >>> from zooscope.nets.models import small_cnn
    >>> x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 2
    >>> emb = Task2Vec(small_cnn(img_size=8, seed=0), head_epochs=1, head_draws=256).embed(x, y)
    >>> emb.hessian.shape, emb.meta["estimator"]
    ((80,), 'hooks')
    """

    def __init__(self, probe: nn.Module, *, method: Literal["montecarlo", "variational"] = "montecarlo",
                 n_samples: int | None = 10_000, batch_size: int = 64, head_epochs: int = 10,
                 head_lr: float = 4e-4, head_wd: float = 1e-4, head_draws: int = 10_000,
                 max_samples: int | None = None, seed: int = 0, estimator: str = "auto", skip_layers: int = 0,
                 include_bn: bool = True, fisher_labels: Literal["sample", "exact"] = "sample",
                 head_solver: Literal["fullbatch", "minibatch"] = "fullbatch", progress: bool = False) -> None:
        self.probe, self.method, self.n_samples, self.batch_size = probe, method, n_samples, batch_size
        self.head_epochs, self.head_lr, self.head_wd, self.head_draws = head_epochs, head_lr, head_wd, head_draws
        self.max_samples, self.seed, self.estimator, self.skip_layers = max_samples, seed, estimator, skip_layers
        self.include_bn, self.fisher_labels, self.progress = include_bn, fisher_labels, progress
        self.head_solver = head_solver

    def _check(self) -> None:
        if not isinstance(self.probe, nn.Module):
            raise ZooscopeInputError(f"probe must be a torch nn.Module; got {type(self.probe).__name__}.")
        check_choice(self.method, ("montecarlo", "variational"), "method", "Task2Vec")
        check_choice(self.estimator, _fisher.ESTIMATORS, "estimator", "Task2Vec")
        check_choice(self.fisher_labels, ("sample", "exact"), "fisher_labels", "Task2Vec")
        for name in ("batch_size", "head_draws"):
            if int(getattr(self, name)) < 1:
                raise ZooscopeInputError(f"{name!r} of Task2Vec must be an int >= 1; got {getattr(self, name)}.")
        for name in ("n_samples", "max_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 2:
                raise ZooscopeInputError(f"{name!r} of Task2Vec must be None or an int >= 2; got {v}.")
        if int(self.head_epochs) < 0 or int(self.skip_layers) < 0:
            raise ZooscopeInputError("'head_epochs' and 'skip_layers' of Task2Vec must be ints >= 0.")
        check_positive(self.head_lr, "head_lr", "Task2Vec")

    # ------------------------------------------------------------------------------------------------ public
    def embed(self, x: torch.Tensor | npt.ArrayLike, y: torch.Tensor | npt.ArrayLike) -> TaskEmbedding:
        """Embed the task ``(x, y)``.

        Parameters
        ----------
        x : Tensor or array of shape (n_examples, *input_shape)
            Inputs, preprocessed as the probe expects.
        y : Tensor or array of shape (n_examples,)
            Integer class labels (any values; at least 2 classes).

        Returns
        -------
        TaskEmbedding
        """
        self._check()
        xt, yi, classes = _as_inputs(x, y)
        order = _canonical_order(xt.numpy(), yi)
        xt, yi = xt[torch.from_numpy(order)], yi[order]
        if self.max_samples is not None and len(yi) > self.max_samples:
            keep = np.sort(stratified_sample(yi, int(self.max_samples), int(self.seed)))
            xt, yi = xt[torch.from_numpy(keep)], yi[keep]
        return self._embed(xt, torch.from_numpy(yi), len(classes), train_head=True)

    def embed_trivial(self, x: torch.Tensor | npt.ArrayLike, num_classes: int = 2) -> TaskEmbedding:
        """Return the trivial task's embedding: the probe with an UNTRAINED (seeded random) ``num_classes`` head.

        Its labels carry no information about the inputs beyond a random projection of the features; used as
        ``trivial`` by d_asym. Compute it once per probe, on the zoo's probe inputs.
        """
        self._check()
        xt, _, _ = _as_inputs(x, np.arange(len(x)) % 2)
        yi = np.arange(len(xt)) % num_classes
        order = _canonical_order(xt.numpy(), np.zeros(len(xt), dtype=np.int64))
        return self._embed(xt[torch.from_numpy(order)], torch.from_numpy(yi), num_classes, train_head=False)

    # ----------------------------------------------------------------------------------------------- private
    def _embed(self, x: torch.Tensor, y: torch.Tensor, k: int, *, train_head: bool) -> TaskEmbedding:
        times: dict[str, float] = {}
        gen = torch.Generator().manual_seed(int(self.seed))
        net = _ProbeNet(self.probe)
        counts = torch.bincount(y, minlength=k).double()
        w = (len(y) / (k * counts))[y]  # class-balanced weights, Σ w = N
        t0 = time.process_time()
        feats = self._features(net, x)
        times["cache_features"] = time.process_time() - t0
        net.head = nn.Linear(feats.shape[1], k)
        with torch.no_grad():  # PyTorch's default Linear init, from our generator
            bound = 1.0 / math.sqrt(feats.shape[1])
            net.head.weight.uniform_(-bound, bound, generator=gen)
            net.head.bias.uniform_(-bound, bound, generator=gen)
        t0 = time.process_time()
        head_error = self._fit_head(net.head, feats, y, w, gen) if train_head else float("nan")
        times["fit_head"] = time.process_time() - t0
        for p in net.parameters():
            p.requires_grad_(False)
        targets = _fisher.fisher_targets(net.model, exclude=net.excluded, include_bn=self.include_bn,
                                         skip_layers=int(self.skip_layers))
        if not targets:
            raise ZooscopeInputError("The probe has no weighted modules left to embed; lower skip_layers.")
        t0 = time.process_time()
        if self.method == "variational":
            from zooscope.embed._variational import variational_fisher

            hess, scale, targets, info = variational_fisher(net, targets, x, y, w, self, gen)
        else:
            hess, scale, info = self._montecarlo(net, targets, x, w, gen)
        times["fisher"] = time.process_time() - t0
        meta = {"method": self.method, "n_examples": len(y), "num_classes": k, "seed": int(self.seed),
                "head_train_error": head_error, "cpu_s": times, "code_version": CODE_VERSION,
                "probe": type(self.probe).__name__, "params": self.get_params(), **info}
        layout = [(t.name, t.start, t.stop) for t in targets]
        return TaskEmbedding(hess, scale, layout, meta)

    def _batches(self, x: torch.Tensor, *extra: torch.Tensor, size: int | None = None) -> Iterator[tuple]:
        size = size or int(self.batch_size)
        for i in range(0, len(x), size):
            yield (x[i:i + size], *(e[i:i + size] for e in extra))

    def _features(self, net: _ProbeNet, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net.features(xb) for (xb,) in self._batches(x, size=4 * int(self.batch_size))])

    def _fit_head(self, head: nn.Linear, feats: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                  gen: torch.Generator) -> float:
        opt = torch.optim.Adam(head.parameters(), lr=float(self.head_lr), weight_decay=float(self.head_wd))
        loss_fn = nn.CrossEntropyLoss()
        bs, draws = int(self.batch_size), int(self.head_draws)
        if self.head_solver == "fullbatch":
            # same number of Adam steps, on the exact class-balanced loss from a zero head: no seed, no order
            with torch.no_grad():
                head.weight.zero_()
                head.bias.zero_()
            wn = w.float() / w.float().sum()
            for _ in range(int(self.head_epochs) * (draws // bs)):
                opt.zero_grad()
                (wn * nn.functional.cross_entropy(head(feats), y, reduction="none")).sum().backward()
                opt.step()
            return self._head_error(head, feats, y, w)
        for _ in range(int(self.head_epochs)):
            idx = torch.multinomial(w, draws, replacement=True, generator=gen)
            for i in range(0, draws - bs + 1, bs):  # drop_last, as the reference
                b = idx[i:i + bs]
                opt.zero_grad()
                loss_fn(head(feats[b]), y[b]).backward()
                opt.step()
        return self._head_error(head, feats, y, w)

    @staticmethod
    def _head_error(head: nn.Linear, feats: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
        with torch.no_grad():
            wrong = (head(feats).argmax(1) != y).double()
        return float((w * wrong).sum() / w.sum())

    def _montecarlo(self, net: _ProbeNet, targets: list, x: torch.Tensor, w: torch.Tensor,
                    gen: torch.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        estimator, why = _fisher.resolve_estimator(self.estimator, targets)
        log.info("task2vec: estimator %s (%s)", estimator, why)
        for t in targets:
            t.weight.requires_grad_(True)
        draws = 1 if self.n_samples is None else max(1, math.ceil(int(self.n_samples) / len(x)))
        n_batches = math.ceil(len(x) / int(self.batch_size))
        acc = _fisher.per_filter_fisher(
            net, targets, self._batches(x, w), estimator=estimator, n_draws=draws, labels=self.fisher_labels,
            generator=gen,
            progress=lambda it: track(it, total=n_batches, description="task2vec fisher", enabled=self.progress))
        passes = draws if self.fisher_labels == "sample" else 1
        hess = (acc / (passes * float(w.sum()))).numpy()
        return hess, np.ones_like(hess), {"estimator": estimator, "estimator_reason": why,
                                          "label_draws": draws if self.fisher_labels == "sample" else "exact"}

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters except the probe (stored with each vector)."""
        return {k: getattr(self, k) for k in ("method", "n_samples", "batch_size", "head_epochs", "head_lr",
                                               "head_wd", "head_draws", "max_samples", "seed", "estimator",
                                               "skip_layers", "include_bn", "fisher_labels", "head_solver")}


# ------------------------------------------------------------------------------------------ embedding kind
_DEFAULTS = {"method": "montecarlo", "n_samples": 10_000, "batch_size": 64, "head_epochs": 10, "head_lr": 4e-4,
             "head_wd": 1e-4, "head_draws": 10_000, "max_samples": None, "seed": 0, "estimator": "auto",
             "skip_layers": 0, "include_bn": True, "fisher_labels": "sample",
             "head_solver": "fullbatch"}


@EMBEDDINGS.register(EmbeddingMeta(
    subject="dataset", metric="ip", normalized=True, version=CODE_VERSION, params=_DEFAULTS,
    description="Task2Vec: per-filter diagonal Fisher of the probe refit to the dataset (the stored vector). "
                "FAISS candidates: index on task2vec.index_transform(vectors) (centred log-Fisher); re-rank "
                "exactly with zooscope.embed.task2vec.task_distance (d_sym / d_asym) on the stored vectors."))
def task2vec(x: torch.Tensor, y: torch.Tensor, *, probe: nn.Module, **params: Any) -> np.ndarray:
    """Return the ``task2vec`` embedding kind: ``Task2Vec(probe, **params).embed(x, y).hessian`` as float32.

    Store this vector (exact re-rank with `task_distance` needs its scale). For the FAISS index use
    ``task2vec.index_transform`` (= `index_vector`): the centred log-Fisher, whose cosine is the correlation
    of log-Fisher vectors. Indexing the raw vectors also works, with cosine of the raw Fisher as the
    (cruder) candidate score.

    Returns
    -------
    np.ndarray of shape (dim,), float32
    """
    unknown = set(params) - set(_DEFAULTS) - {"progress"}
    if unknown:
        raise ZooscopeInputError(f"Unknown task2vec parameter(s) {sorted(unknown)}; valid: {sorted(_DEFAULTS)}.")
    return Task2Vec(probe, **params).embed(x, y).hessian.astype(np.float32)


task2vec.index_transform = index_vector  # type: ignore[attr-defined]
