"""Names are data, never paths: hostile names are refused at the library boundary with a clear error, nothing is
created outside the zoo folder, unicode names work end to end; user paths are stored absolute."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _faults import cli, listing
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog

OUTSIDE = "/tmp/zooscope-hostile-name-probe"
HOSTILE = ["../x", "../../x", "../../../../../../tmp/zooscope-hostile-name-probe", OUTSIDE, "/", "a/b", "a\\b",
           "a\x00b", "\x00", "x" * 10_000, "é" * 101, "tab\there", "new\nline", "\u202eevil", ".", "..", "", "   ",
           " padded "]
UNICODE_OK = ["résnet-18 (ImageNet)", "модель-1", "模型", "a" * 200, "é" * 100, "ok name with spaces"]


def _parent_outside_zoo(parent):
    return {k: v for k, v in listing(parent).items() if not k.startswith("zoo/")}


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n[:20]))
def test_a_hostile_name_is_refused_by_the_library_and_creates_nothing_outside(zoo_copy, name):
    parent = zoo_copy.parent
    before, inside = _parent_outside_zoo(parent), listing(zoo_copy)
    zoo = Zoo.open(zoo_copy)
    with pytest.raises(ZooscopeInputError, match="name"):
        zoo.add_dataset(name, "builtin:digits")
    with pytest.raises(ZooscopeInputError, match="name"):
        zoo.add_model(name, SPEC, checkpoints(1)[0], kwargs=KW)
    with pytest.raises(ZooscopeInputError, match="name"):
        zoo.catalog.add_dataset(name, source="builtin:digits", size=1, num_classes=2, input_shape=(1, 8, 8))
    if "\x00" not in name:  # argv cannot carry NUL: the CLI is tried with the others
        for argv in (["add-dataset", name, "--source", "builtin:digits"],
                     ["add-model", name, "--arch", SPEC, "--checkpoint", checkpoints(1)[0], "--kwargs",
                      json.dumps(KW)]):
            code, _, err = cli(*argv, "--zoo", zoo_copy)
            assert code == 2 and "Traceback" not in err and err.startswith("error: "), err
    zoo.embed(kinds=("cka",))
    assert _parent_outside_zoo(parent) == before
    assert not os.path.exists(OUTSIDE)
    assert {k for k in listing(zoo_copy) if not k.startswith("cache/")} >= {k for k in inside
                                                                           if not k.startswith("cache/")}
    assert set(zoo.datasets()["name"]) == {"digits"}


def test_unicode_names_work_end_to_end_and_name_no_file(tmp_path):
    parent = tmp_path / "parent"
    zoo = Zoo.create(parent / "zoo")
    zoo.configure(probe_n=128)
    zoo.add_dataset(UNICODE_OK[-2], "builtin:digits")  # 200 bytes of UTF-8: the limit
    for i, name in enumerate(UNICODE_OK[:4]):
        zoo.add_model(name, SPEC, checkpoints(2)[i % 2], kwargs=KW, trained_on=UNICODE_OK[-2])
    report = zoo.embed(kinds=("cka", "task2vec"))
    assert set(report["status"]) == {"embedded"}, report
    table = zoo.similar("模型", k=3)
    assert len(table) == 3 and "模型" not in set(table["model"])
    files = [k for k in listing(parent)]
    assert all(k.startswith("zoo/") for k in files)
    for k in files:  # every file name is ASCII and short: names never became paths
        assert all(len(part.encode()) <= 120 for part in k.split("/")), k
        assert k.isascii(), k
    assert zoo.check().empty


def test_names_are_checked_by_the_catalog_itself():
    cat = Catalog("sqlite://")
    for name in HOSTILE:
        with pytest.raises(ZooscopeInputError):
            cat.add_model(name, spec=SPEC)
    assert cat.add_model("ünïcødé", spec=SPEC) == 1


def test_user_paths_are_stored_absolute(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    np.savez(work / "data.npz", x=rng.normal(size=(40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 4)
    ckpt = work / "m.safetensors"
    ckpt.write_bytes(checkpoints(1)[0].read_bytes())
    monkeypatch.chdir(work)
    code, _, err = cli("init", "--zoo", "z")
    assert code == 0, err
    assert cli("add-dataset", "mine", "--source", "data.npz?size=8", "--zoo", "z")[0] == 0
    assert cli("add-model", "m", "--arch", SPEC, "--checkpoint", "m.safetensors", "--kwargs", json.dumps(KW),
               "--zoo", "z")[0] == 0
    zoo = Zoo.open(work / "z")
    assert zoo.catalog.get_dataset("mine").source == f"{work / 'data.npz'}?size=8"
    assert zoo.catalog.get_model("m").checkpoint == str(ckpt)
    monkeypatch.chdir(tmp_path)  # embed from another folder: the same files are found
    code, _, err = cli("embed", "--kinds", "cka,task2vec", "--zoo", work / "z")
    assert code == 0, err
    assert zoo.failures().empty and len(zoo.catalog.embeddings()) == 2
