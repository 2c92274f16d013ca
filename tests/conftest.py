import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1") if os.environ.get("PYTEST_XDIST_WORKER") else None

import numpy as np  # noqa: E402 - after the environment is set
import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
SHARED_ORACLES = Path(__file__).resolve().parents[2] / "shared" / "oracles"


@pytest.fixture
def rng():
    return np.random.default_rng(20260101)


@pytest.fixture(scope="session")
def data_dir():
    return DATA


def shared_oracles_or_skip() -> Path:
    """The large oracles live beside the repo in ../shared/oracles; skip with a reason when absent."""
    for base in (os.environ.get("ZOOSCOPE_SHARED_ORACLES"), SHARED_ORACLES):
        if base and Path(base, "task2vec").is_dir():
            return Path(base)
    pytest.skip("../shared/oracles/task2vec is absent (large oracle files are not copied into the repo); "
                "set ZOOSCOPE_SHARED_ORACLES to its folder to run this test")
