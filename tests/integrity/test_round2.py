"""Issue 19's faults, each done for real (see `_faults2`): hostile exports, kill -9 of import and of
add-model --replace, a second zoo on one storage, writers beside a live embed, stray index files, dead models,
impossible shapes and a full disk. Every probe must survive; no file of a committed row may be lost."""

from __future__ import annotations

import json
import random

import pytest
from _faults2 import (
    probe_dead_models,
    probe_full_disk,
    probe_import_hostile,
    probe_import_kills,
    probe_impossible_inputs,
    probe_replace_kills,
    probe_results_exported,
    probe_shared_storage,
    probe_stray_index,
    probe_writers_beside_embed,
)


def _all_survived(result):
    tried, survived, lost = result
    assert tried > 0 and survived == tried and lost == 0, result


def test_import_refuses_code_hostile_names_and_impossible_ids_and_creates_nothing(template_zoo, tmp_path):
    _all_survived(probe_import_hostile(template_zoo, tmp_path))


def test_import_with_trust_code_accepts_a_spec_of_other_code(template_zoo, tmp_path):
    import json

    from _faults import cli

    from zooscope import Zoo

    assert cli("export", tmp_path / "e", "--zoo", template_zoo)[0] == 0
    models = tmp_path / "e" / "catalog" / "models.json"
    rows = json.loads(models.read_text())
    rows[0]["spec"] = "crashy_models:slow_cnn"  # code the user vouches for
    models.write_text(json.dumps(rows))
    code, _, err = cli("import", tmp_path / "e", "--zoo", tmp_path / "z")
    assert code == 2 and "crashy_models:slow_cnn" in err and "--trust-code" in err
    code, _, err = cli("import", tmp_path / "e", "--zoo", tmp_path / "z", "--trust-code")
    assert code == 0, err
    assert Zoo.open(tmp_path / "z").catalog.get_model(rows[0]["name"]).spec == "crashy_models:slow_cnn"


def test_a_killed_import_leaves_nothing_and_the_next_import_works(template_zoo, tmp_path):
    _all_survived(probe_import_kills(template_zoo, tmp_path, kills=2, rng=random.Random(19)))


def test_export_carries_the_recorded_results(template_zoo, tmp_path):
    _all_survived(probe_results_exported(template_zoo, tmp_path))


def test_a_zoo_owns_its_storage(template_zoo, tmp_path):
    _all_survived(probe_shared_storage(template_zoo, tmp_path))


def test_writers_beside_a_live_embed_neither_fail_nor_leave_ghosts(tmp_path):
    _all_survived(probe_writers_beside_embed(tmp_path, rounds=1, rng=random.Random(3)))


def test_a_killed_replace_leaves_the_old_model_or_the_new(tmp_path):
    _all_survived(probe_replace_kills(tmp_path, kills=2, rng=random.Random(5)))


def test_stray_index_files_are_reported_and_swept(template_zoo, tmp_path):
    _all_survived(probe_stray_index(template_zoo, tmp_path))


def test_a_dead_model_is_skipped_and_cast_checkpoints_are_refused(template_zoo, tmp_path):
    _all_survived(probe_dead_models(template_zoo, tmp_path))


def test_an_impossible_array_shape_is_an_input_error(template_zoo, tmp_path):
    _all_survived(probe_impossible_inputs(template_zoo, tmp_path))


def test_a_full_disk_says_so_and_damages_nothing(template_zoo, tmp_path):
    try:
        result = probe_full_disk(template_zoo, tmp_path)
    except PermissionError as e:  # not root: the RLIMIT_FSIZE variant below still runs
        pytest.skip(str(e))
    _all_survived(result)


def test_a_file_size_limit_says_so_with_the_path(template_zoo, tmp_path):
    """The same fault without root: a write past RLIMIT_FSIZE fails (EFBIG) like a full disk."""
    import resource
    import shutil
    import signal
    import subprocess

    from _faults2 import env, one_line_error, zoo_cli

    from zooscope import Zoo

    root = tmp_path / "zoo"
    shutil.copytree(template_zoo, root)
    Zoo.open(root).catalog.close()
    limit = max(p.stat().st_size for p in root.rglob("*") if p.is_file())  # no file may grow past the largest

    def starve():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    for verb in (("export", tmp_path / "export"), ("add-dataset", "d2", "--source", "builtin:digits")):
        res = subprocess.run(zoo_cli(*verb, "--zoo", root), env=env(), capture_output=True, text=True,
                             preexec_fn=starve, timeout=600)
        assert res.returncode in (0, 2), res.stderr[-2000:]
        if res.returncode == 2:
            assert one_line_error(res.stderr) and "restore" not in res.stderr, res.stderr
            assert str(tmp_path) in res.stderr or "catalog" in res.stderr, res.stderr
    assert Zoo.open(root).check().empty


def test_a_catalog_opens_only_with_its_own_storage(zoo_factory, tmp_path):
    """SQLite and PostgreSQL: an empty database, a second catalog on a zoo's storage, and a zoo's catalog with
    another (empty) storage folder are refused; the zoo itself still opens."""
    from zooscope import Zoo
    from zooscope._validation import ZooscopeInputError

    zoo_factory("a")
    url_b = zoo_factory.url("b")
    zoo_factory.storage("b").mkdir(parents=True, exist_ok=True)
    with pytest.raises(ZooscopeInputError, match="holds no zoo catalog"):
        Zoo.open(url_b, storage=zoo_factory.storage("b"))
    with pytest.raises(ZooscopeInputError, match="belongs to another zoo"):
        Zoo.open(url_b, storage=zoo_factory.storage("a"), create=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooscopeInputError, match="is not the storage"):
        Zoo.open(zoo_factory.url("a"), storage=tmp_path / "empty")
    a = zoo_factory("a")
    assert a.catalog.get_setting("zoo_id") == json.loads((zoo_factory.storage("a") / "zoo.json").read_text())["zoo_id"]
