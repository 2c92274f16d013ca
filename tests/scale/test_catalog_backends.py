"""The SQLite / PostgreSQL catalog fixtures (tests/_servers.py, tests/conftest.py) open real zoos."""

import subprocess
import sys
import textwrap

import pytest

SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}


def test_zoo_on_each_catalog_adds_and_lists(zoo_factory):
    zoo = zoo_factory()
    assert zoo.catalog.engine.dialect.name == zoo_factory.backend
    zoo.add_dataset("digits", "builtin:digits")
    zoo.add_model("cnn", SPEC, kwargs=KW, trained_on="digits")
    reopened = zoo_factory()  # the same name opens the same zoo
    assert list(reopened.datasets()["name"]) == ["digits"]
    models = reopened.models()
    assert list(models["name"]) == ["cnn"] and models.loc[0, "trained_on"] == "digits"
    assert list(zoo_factory("other").models()["name"]) == []  # another name, another catalog


def test_postgres_zoo_is_visible_from_another_process(postgres_server, tmp_path):
    import zooscope as zs

    url = postgres_server.new_database()
    zs.Zoo.open(url, storage=tmp_path / "zoo", create=True).add_dataset("digits", "builtin:digits")
    code = textwrap.dedent("""
        import sys, zooscope as zs
        zoo = zs.Zoo.open(sys.argv[1], storage=sys.argv[2])
        print(",".join(zoo.datasets()["name"]))
    """)
    out = subprocess.run([sys.executable, "-c", code, url, str(tmp_path / "zoo")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "digits"


def test_catalog_url_names_the_backend(catalog_url, catalog_backend):
    assert catalog_url.startswith({"sqlite": "sqlite:///", "postgresql": "postgresql+psycopg://"}[catalog_backend])


def test_missing_server_fails_under_ci(monkeypatch):
    import _servers

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and"):
        _servers.unavailable("no server")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        _servers.unavailable("no server")


def test_catalog_url_opens_a_bare_catalog(catalog_url):
    from zooscope.zoo.catalog import Catalog

    cat = Catalog(catalog_url)
    cat.add_dataset("d", source="builtin:digits", size=10, num_classes=10, input_shape=(1, 8, 8))
    assert [d.name for d in Catalog(catalog_url).datasets()] == ["d"]


def _cli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "zooscope.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **(env or {})))


def test_cli_zoo_url_with_storage_option_and_env(zoo_factory):
    url, storage = zoo_factory.url(), str(zoo_factory.storage())
    run = _cli("init", "--zoo", url, "--storage", storage)
    assert run.returncode == 0, run.stderr[-2000:]
    run = _cli("add-dataset", "digits", "--source", "builtin:digits", "--zoo", url, "--storage", storage)
    assert run.returncode == 0, run.stderr[-2000:]
    listed = _cli("ls", "datasets", "--format", "csv", "--zoo", url, env={"ZOOSCOPE_STORAGE": storage})
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "digits" in listed.stdout
    assert list(zoo_factory().datasets()["name"]) == ["digits"]  # the same zoo, opened from Python
    missing = _cli("ls", "--zoo", url, env={"ZOOSCOPE_STORAGE": ""})
    assert missing.returncode == 2 and "--storage" in missing.stderr
