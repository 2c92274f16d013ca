"""Fixtures of the integrity tests: one small embedded zoo (built once), copied per test, and real damage."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))


@pytest.fixture(scope="session")
def template_zoo(tmp_path_factory) -> Path:
    """A zoo with dataset 'digits' and models cnn0, cnn1, cnn2, cnn0-copy, cka-embedded (do not modify)."""
    from zoo_helpers import make_zoo

    root = tmp_path_factory.mktemp("template") / "zoo"
    zoo = make_zoo(root)
    zoo.catalog.close()  # checkpoints the WAL into catalog.sqlite: the copy is one self-contained file
    return root


@pytest.fixture
def zoo_copy(template_zoo, tmp_path) -> Path:
    """A private copy of the template zoo at ``tmp_path/parent/zoo`` (the parent folder is the test's to watch)."""
    dst = tmp_path / "parent" / "zoo"
    shutil.copytree(template_zoo, dst)
    return dst
