"""`zooscope export DIR` then `zooscope import DIR --zoo NEW` rebuild a zoo without recomputing: same answers."""

from __future__ import annotations

import json

import pytest
from _faults import cli, flip_bit, listing, one_error_line

from zooscope import Zoo


def test_export_import_gives_the_same_answers(zoo_copy, tmp_path):
    before = listing(zoo_copy)
    code, _, err = cli("export", tmp_path / "backup", "--zoo", zoo_copy)
    assert code == 0, err
    assert listing(zoo_copy) == before  # export only reads
    exported = listing(tmp_path / "backup")
    assert {"manifest.json", "catalog/models.json", "catalog/embeddings.json"} <= set(exported)
    assert sum(k.startswith("vectors/") for k in exported) == 4 and any(k.startswith("probes/") for k in exported)

    code, _, err = cli("import", tmp_path / "backup", "--zoo", tmp_path / "restored")
    assert code == 0, err
    old, new = Zoo.open(zoo_copy), Zoo.open(tmp_path / "restored")
    assert new.check().empty
    assert new.catalog.get_setting("zoo_id") != old.catalog.get_setting("zoo_id")
    assert new.catalog.get_setting("imported_from") == old.catalog.get_setting("zoo_id")
    assert [r.id for r in new.catalog.embeddings()] == [r.id for r in old.catalog.embeddings()]
    for model in ("cnn0", "cnn1"):
        a, b = old.similar(model, k=3), new.similar(model, k=3)
        assert list(a["model"]) == list(b["model"])
        assert a["score"].to_numpy() == pytest.approx(b["score"].to_numpy(), abs=1e-12)
    report = new.embed(kinds=("cka",))
    assert set(report["status"]) == {"skipped"}  # nothing recomputed
    code, out, _ = cli("similar", "cnn0", "--k", "3", "--format", "json", "--zoo", tmp_path / "restored")
    assert [r["model"] for r in json.loads(out)] == list(old.similar("cnn0", k=3)["model"])


def test_import_refuses_a_corrupt_export_and_an_existing_zoo(zoo_copy, tmp_path):
    assert cli("export", tmp_path / "backup", "--zoo", zoo_copy)[0] == 0
    code, _, err = cli("import", tmp_path / "backup", "--zoo", zoo_copy)  # never over an existing zoo
    assert code == 2 and "not an empty folder" in one_error_line(err)
    vec = next((tmp_path / "backup" / "vectors").rglob("*.npy"))
    flip_bit(vec)
    code, _, err = cli("import", tmp_path / "backup", "--zoo", tmp_path / "restored")
    assert code == 2 and vec.name in one_error_line(err)
    assert not (tmp_path / "restored").exists()  # verified before anything is written
    code, _, err = cli("export", tmp_path / "backup", "--zoo", zoo_copy)
    assert code == 2 and "not an empty folder" in one_error_line(err)


def test_export_refuses_a_corrupt_zoo(zoo_copy, tmp_path):
    zoo = Zoo.open(zoo_copy)
    flip_bit(zoo.store.path(zoo.catalog.embeddings()[0].vector_key))
    code, _, err = cli("export", tmp_path / "backup", "--zoo", zoo_copy)
    assert code == 2 and "check --fix" in one_error_line(err)
