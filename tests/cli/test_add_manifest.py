"""`zooscope add-model --from manifest.csv` (issue 22 item 6): many models in one process, one transaction each,
each failing row reported on one line with its row number while the other rows are added."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._io import file_sha256
from zooscope._validation import ZooscopeInputError
from zooscope.cli import app
from zooscope.zoo.manifest import RowOutcome, add_models, read_manifest

runner = CliRunner()


def write_manifest(path: Path, rows: list[dict], header=("name", "arch", "checkpoint", "trained-on", "kwargs")):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def setup(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add_dataset("digits", "builtin:digits")
    folder = tmp_path / "ckpts"
    folder.mkdir()
    paths = [Path(shutil.copy(p, folder / p.name)) for p in checkpoints(3)]
    return tmp_path, paths


def test_manifest_adds_the_good_rows_and_reports_each_bad_row_on_one_line(setup):
    tmp, paths = setup
    kw = json.dumps(KW)
    rows = [
        {"name": "a", "arch": SPEC, "checkpoint": str(paths[0]), "trained-on": "digits", "kwargs": kw},   # row 2
        {"name": "b", "arch": SPEC, "checkpoint": f"ckpts/{paths[1].name}", "trained-on": "digits",
         "kwargs": kw},                                                                                   # row 3
        {"name": "c", "arch": SPEC, "checkpoint": str(paths[2]), "kwargs": "{not json"},                  # row 4
        {"name": "d", "arch": SPEC, "checkpoint": "ckpts/gone.safetensors", "kwargs": kw},               # row 5
        {"name": "a", "arch": SPEC, "checkpoint": str(paths[2]), "kwargs": kw},                           # row 6
        {"name": "e", "arch": SPEC, "checkpoint": str(paths[2]),
         "kwargs": json.dumps({**KW, "num_classes": 3})},                                                 # row 7
        {"name": "f", "arch": "timm:no_such_net_xyz", "kwargs": ""},                                      # row 8
        {"name": "g", "arch": SPEC, "checkpoint": str(paths[2]), "trained-on": "digits", "kwargs": kw},   # row 9
    ]
    manifest = write_manifest(tmp / "manifest.csv", rows)
    result = runner.invoke(app, ["add-model", "--from", str(manifest), "--zoo", str(tmp / "zoo")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    by_row = {int(ln.split(":")[0].split()[1].split()[0]): ln for ln in lines if ln.startswith("row ")}
    assert sorted(by_row) == [2, 3, 4, 5, 6, 7, 8, 9]  # one line per row, numbered as a spreadsheet shows them
    for good in (2, 3, 9):
        assert "added model" in by_row[good]
    assert "JSON" in by_row[4] and "gone.safetensors" in by_row[5] and "row 2" in by_row[6]
    assert "(e)" in by_row[7] and "(f)" in by_row[8] and "no_such_net_xyz" in by_row[8]
    assert "added 3 of 8 models" in lines[-1] and "rows 4, 5, 6, 7, 8" in lines[-1]

    models = Zoo.open(tmp / "zoo").models().set_index("name")
    assert sorted(models.index) == ["a", "b", "g"]
    assert models.loc["b", "checkpoint"] == str(paths[1].resolve())  # relative to the manifest's folder
    assert models.loc["b", "checkpoint_sha256"] == file_sha256(paths[1])
    assert models.loc["a", "trained_on"] == "digits"


def test_a_rerun_refuses_names_already_added_unless_replace(setup):
    tmp, paths = setup
    manifest = write_manifest(tmp / "m.csv", [{"name": "a", "arch": SPEC, "checkpoint": str(paths[0]),
                                               "kwargs": json.dumps(KW)}])
    zoo = Zoo.open(tmp / "zoo")
    assert add_models(zoo, manifest) == [RowOutcome(2, "a")]
    again = add_models(zoo, manifest)
    assert again[0].error and "already in the zoo" in again[0].error and "--replace" in again[0].error
    assert add_models(zoo, manifest, replace=True) == [RowOutcome(2, "a")]
    assert list(zoo.models()["name"]) == ["a"]


def test_a_bad_header_fails_before_the_zoo_is_opened(tmp_path):
    bad = write_manifest(tmp_path / "m.csv", [{"model": "a", "spec": SPEC}], header=("model", "spec"))
    with pytest.raises(ZooscopeInputError, match="header must name the columns name, arch"):
        list(read_manifest(bad))
    result = runner.invoke(app, ["add-model", "--from", str(bad), "--zoo", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "header must name" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_from_refuses_single_model_options(tmp_path):
    m = write_manifest(tmp_path / "m.csv", [])
    result = runner.invoke(app, ["add-model", "x", "--arch", SPEC, "--from", str(m), "--zoo", str(tmp_path)])
    assert result.exit_code == 2 and "drop NAME, --arch" in result.stderr
    result = runner.invoke(app, ["add-model", "--zoo", str(tmp_path)])
    assert result.exit_code == 2 and "--from" in result.stderr
