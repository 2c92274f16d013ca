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


# -- catalogs: SQLite and PostgreSQL (tests/_servers.py) ------------------------------------------------------------
CATALOG_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster for the session (skips here / fails under CI=true when unavailable)."""
    from _servers import start_postgres

    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_backend(request) -> str:
    """"sqlite" or "postgresql": a test using it (or `catalog_url` / `zoo_factory`) runs once per catalog."""
    return request.param


class ZooFactory:
    """Opens zoos on the test's catalog backend: ``zoo_factory()`` / ``zoo_factory("b")`` (same name, same zoo).

    ``url(name)`` and ``storage(name)`` give what a subprocess needs to open the same zoo:
    ``Zoo.open(url, storage=storage)`` (for SQLite the URL is ``sqlite:///<storage>/catalog.sqlite``), and
    ``cli_args(name)`` the CLI's ``--zoo URL --storage DIR``.
    """

    def __init__(self, backend: str, base: Path, request) -> None:
        self.backend, self._base, self._request, self._urls = backend, base, request, {}

    def storage(self, name: str = "zoo") -> Path:
        return self._base / name

    def url(self, name: str = "zoo") -> str:
        if name not in self._urls:
            if self.backend == "sqlite":
                self.storage(name).mkdir(parents=True, exist_ok=True)
                self._urls[name] = f"sqlite:///{self.storage(name) / 'catalog.sqlite'}"
            else:
                self._urls[name] = self._request.getfixturevalue("postgres_server").new_database(prefix="zoo")
        return self._urls[name]

    def cli_args(self, name: str = "zoo") -> list[str]:
        return ["--zoo", self.url(name), "--storage", str(self.storage(name))]

    def __call__(self, name: str = "zoo"):
        import zooscope as zs

        if self.backend == "sqlite":
            return zs.Zoo.open(self.storage(name), create=True)
        return zs.Zoo.open(self.url(name), storage=self.storage(name), create=True)


@pytest.fixture
def zoo_factory(catalog_backend, tmp_path, request) -> ZooFactory:
    """Zoos on SQLite and on PostgreSQL (one pytest parameter, `catalog_backend`)."""
    return ZooFactory(catalog_backend, tmp_path, request)


@pytest.fixture(scope="module", params=CATALOG_BACKENDS)
def module_zoo_factory(request, tmp_path_factory) -> ZooFactory:
    """`zoo_factory` for module-scoped fixtures (a zoo built once per module and catalog backend)."""
    return ZooFactory(request.param, tmp_path_factory.mktemp(f"zoos-{request.param}"), request)


@pytest.fixture
def catalog_url(zoo_factory) -> str:
    """An empty catalog's SQLAlchemy URL, SQLite or PostgreSQL (parametrised like `zoo_factory`)."""
    return zoo_factory.url("catalog")
