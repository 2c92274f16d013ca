"""`init` on a catalog URL names the database (and the storage folder), not only the folder (issue 22 item 8)."""

from __future__ import annotations

from typer.testing import CliRunner

from zooscope.cli import app


def test_init_with_a_catalog_url_names_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    result = CliRunner().invoke(app, ["init", "--zoo", url, "--storage", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    assert f"catalog {url}" in result.stderr and f"storage folder {tmp_path / 'store'}" in result.stderr


def test_init_of_a_folder_names_the_folder(tmp_path):
    result = CliRunner().invoke(app, ["init", "--zoo", str(tmp_path / "zoo")])
    assert result.exit_code == 0, result.output
    assert f"zoo ready at {tmp_path / 'zoo'}" in result.stderr
