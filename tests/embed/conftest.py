"""Shared fixtures of the compare tests: two small CNNs and a batch of inputs."""

import pytest
import torch

from zooscope.nets.models import small_cnn


@pytest.fixture
def nets():
    return small_cnn(width=4, seed=1), small_cnn(width=4, seed=2)


@pytest.fixture
def x():
    return torch.randn(48, 1, 28, 28, generator=torch.Generator().manual_seed(0))
