"""Fixtures shared by the scale tests: a local 2-CPU Ray cluster (one per test module)."""

import os
from pathlib import Path

import pytest
from _servers import unavailable

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        unavailable("Ray is not installed (pip install 'zooscope[ray]'); the Ray backend tests need it")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token written to the home folder
    if ray.is_initialized():
        ray.shutdown()
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
