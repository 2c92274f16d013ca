"""The zoo's Task2Vec probe network is trained once, on the zoo's registered data (issue 22 item 1).

Oracle: a subset of a registered dataset is the nearest task to it (the issue's symptom was a subset of
digits64 reported nearest to mnist64 with the untrained default). Writers train (embed, configure); queries never
do, and say in one line when the probe is untrained.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope.cli import app
from zooscope.zoo.probes import T2V_PROBE_EPOCHS

SOURCES = {"digits": "builtin:digits", "mnist": "builtin:mnist5k?size=8",
           "sub": "builtin:digits?classes=0,1,2,3,4&n=400&seed=1"}


def _fresh(root: Path) -> Zoo:
    zoo = Zoo.create(root)
    for name, source in SOURCES.items():
        zoo.add_dataset(name, source)
    zoo.add_model("m-digits", SPEC, kwargs=KW, trained_on="digits")
    zoo.add_model("m-mnist", SPEC, kwargs=KW, trained_on="mnist")
    return zoo


def _t2v_files(root: Path) -> list[Path]:
    return sorted((root / "probes").glob("task2vec-*"))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("t2v") / "zoo"
    zoo = _fresh(root)
    assert "UNTRAINED" in zoo.task2vec_probe_note()
    report = zoo.embed(kinds=("task2vec",))
    assert set(report["status"]) == {"embedded"}
    return root


def test_embed_trains_the_probe_once_on_the_registered_data(embedded):
    zoo = Zoo.open(embedded)
    rec = zoo.settings()["task2vec_probes"]["1x8x8"]
    path = embedded / rec["checkpoint"]
    assert path.parent == embedded / "probes" and _t2v_files(embedded) == [path]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["checkpoint_sha256"]
    assert rec["trained"]["datasets"] == ["digits", "mnist", "sub"]
    assert rec["trained"]["epochs"] == T2V_PROBE_EPOCHS and rec["trained"]["train_acc"] > 0.3  # 25 classes
    assert rec["kwargs"]["num_classes"] == 10 + 10 + 5  # one class per (dataset, class)
    assert zoo.task2vec_probe_note() is None
    nets = {r.request["probe_net"]["checkpoint_sha256"] for r in zoo.catalog.embeddings(kind="task2vec")}
    assert nets == {rec["checkpoint_sha256"]}
    assert set(zoo.embed(kinds=("task2vec",))["status"]) == {"skipped"}  # fixed once trained: no retraining
    assert _t2v_files(embedded) == [path]


def test_training_is_deterministic(embedded, tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(embedded, root)
    zoo = Zoo.open(root)
    before = zoo.settings()["task2vec_probes"]["1x8x8"]
    after = zoo.configure(task2vec_probe="trained", input_shape=(1, 8, 8))["task2vec_probes"]["1x8x8"]
    assert after["checkpoint_sha256"] == before["checkpoint_sha256"]


def test_subset_is_nearest_to_its_superset(embedded):
    zoo = Zoo.open(embedded)
    table = zoo.select("sub", k=2, method="task2vec")
    assert list(table["trained_on"]) == ["digits", "mnist"]
    assert table["task_distance"].iloc[0] < table["task_distance"].iloc[1]
    assert table["why"].iloc[0].startswith("nearest task (digits")


def test_similar_by_task2vec_puts_the_superset_first(embedded, tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(embedded, root)
    zoo = Zoo.open(root)
    zoo.add_model("m-sub", SPEC, kwargs=KW, trained_on="sub")
    assert list(zoo.similar("m-sub", k=2, by="task2vec")["trained_on"]) == ["digits", "mnist"]


def test_queries_never_train_and_say_untrained(tmp_path, caplog):
    zoo = _fresh(tmp_path / "zoo")
    with caplog.at_level(logging.WARNING, logger="zooscope"):
        table = zoo.select("sub", k=2, method="task2vec")
    assert len(table) == 2
    assert sum("UNTRAINED probe network" in r.getMessage() for r in caplog.records) == 1
    assert _t2v_files(tmp_path / "zoo") == [] and zoo.settings()["task2vec_probes"] == {}


def test_cli_ls_and_check_say_untrained_until_configure_trains(tmp_path):
    root = tmp_path / "zoo"
    _fresh(root)
    runner = CliRunner()
    for verb in ("ls", "check"):
        out = runner.invoke(app, [verb, "--zoo", str(root)])
        assert out.exit_code == 0, out.output
        assert sum("UNTRAINED probe network" in line for line in out.output.splitlines()) == 1
    out = runner.invoke(app, ["configure", "--task2vec-probe", "trained", "--zoo", str(root)])
    assert out.exit_code == 0, out.output
    assert len(_t2v_files(root)) == 1
    for verb in ("ls", "check"):
        assert "UNTRAINED" not in runner.invoke(app, [verb, "--zoo", str(root)]).output


def test_named_probe_is_copied_kept_and_checked(tmp_path):
    root = tmp_path / "zoo"
    zoo = _fresh(root)
    src = checkpoints(1)[0]
    zoo.configure(task2vec_probe={"arch": SPEC, "kwargs": KW, "checkpoint": str(src)}, input_shape=(1, 8, 8))
    rec = zoo.settings()["task2vec_probes"]["1x8x8"]
    copy = root / rec["checkpoint"]
    assert copy.parent == root / "probes" and copy.read_bytes() == src.read_bytes()
    assert "trained" not in rec and zoo.task2vec_probe_note() is None
    zoo.embed(kinds=("task2vec",), datasets=["sub"])
    assert zoo.settings()["task2vec_probes"]["1x8x8"] == rec  # embed keeps the network the user named
    copy.write_bytes(copy.read_bytes()[:-8] + b"\0" * 8)
    problems = zoo.check()
    assert "bad Task2Vec probe network" in set(problems["problem"])
    zoo.check(fix=True)
    assert zoo.settings()["task2vec_probes"] == {} and not copy.exists()
    assert "UNTRAINED" in zoo.task2vec_probe_note()


def test_named_untrained_probe_is_kept_and_said(tmp_path):
    zoo = _fresh(tmp_path / "zoo")
    net = {"arch": SPEC, "kwargs": KW}
    zoo.configure(task2vec_probe=net, input_shape=(1, 8, 8))
    zoo.embed(kinds=("task2vec",), datasets=["sub"])
    assert zoo.settings()["task2vec_probes"]["1x8x8"] == net and _t2v_files(tmp_path / "zoo") == []
    assert "UNTRAINED" in zoo.task2vec_probe_note()


def test_export_import_carries_the_trained_probe(embedded, tmp_path):
    from zooscope.zoo.transfer_io import export_zoo, import_zoo

    old = Zoo.open(embedded)
    export_zoo(old, tmp_path / "backup")
    new = import_zoo(tmp_path / "backup", tmp_path / "restored", Zoo)
    rec = old.settings()["task2vec_probes"]["1x8x8"]
    assert new.settings()["task2vec_probes"]["1x8x8"] == rec
    assert (tmp_path / "restored" / rec["checkpoint"]).read_bytes() == (embedded / rec["checkpoint"]).read_bytes()
    assert new.check().empty and new.task2vec_probe_note() is None


def test_a_shape_without_default_network_does_not_break_ls_or_embed(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).random((40, 1, 6, 10), dtype=np.float32)
    np.savez(tmp_path / "odd.npz", x=x, y=np.arange(40) % 2)
    zoo = Zoo.create(tmp_path / "zoo")
    zoo.add_dataset("odd", str(tmp_path / "odd.npz"))
    assert zoo.task2vec_probe_note() is None  # no default network to be untrained
    report = zoo.embed(kinds=("task2vec",))
    assert list(report["status"]) == ["failed"] and "No default Task2Vec probe" in report["error"].iloc[0]
