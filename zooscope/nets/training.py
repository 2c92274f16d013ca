"""A small, deterministic training loop for building demo and test zoos (CPU, in-memory tensors).

Not a training framework: enough to produce real, differently-seeded checkpoints in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from zooscope._sampling import stratified_split
from zooscope._validation import ZooscopeInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Accuracy on the training data and on a held-out split (when one was given)."""

    train_acc: float
    val_acc: float | None
    epochs: int


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` in place with AdamW and cross-entropy; deterministic for a seed on CPU.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of ``x`` to logits of shape (batch, n_classes).
    x : Tensor of shape (n_samples, ...)
        Inputs, float32.
    y : Tensor of shape (n_samples,)
        Integer labels in [0, n_classes).
    epochs, batch_size, lr, weight_decay, seed
        The usual; ``seed`` fixes the data order.
    x_val, y_val : optional held-out split for the reported accuracy.

    Returns
    -------
    TrainResult
    """
    if len(x) != len(y):
        raise ZooscopeInputError(f"x has {len(x)} examples but y has {len(y)}.")
    if len(x) == 0:
        raise ZooscopeInputError("Cannot train on an empty dataset.")
    y = y.long()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log.info("epoch %d: loss %.4f", epoch + 1, total / len(x))
    model.eval()
    train_acc = accuracy(model, x, y)
    val_acc = accuracy(model, x_val, y_val) if x_val is not None and y_val is not None else None
    return TrainResult(train_acc=train_acc, val_acc=val_acc, epochs=epochs)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on (x, y)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        pred = model(x[start : start + batch_size]).argmax(dim=1)
        correct += int((pred == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.2, seed: int = 0):
    """Seeded, stratified train/validation split -> (x_tr, y_tr, x_val, y_val) (`zooscope._sampling`)."""
    tr, va = (torch.from_numpy(i) for i in stratified_split(y.numpy(), val_fraction, seed))
    return x[tr], y[tr], x[va], y[va]
