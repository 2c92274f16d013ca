"""The Ray backend on a local 2-CPU cluster started here: same vectors as the local backend, one task per pair,
and a worker that kills itself fails only its own pair."""

import os
from pathlib import Path

import numpy as np
import pytest

from zooscope import ZooscopeInputError

HERE = Path(__file__).resolve().parent
SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from zooscope.nets.models import save_checkpoint, small_cnn

    folder = tmp_path_factory.mktemp("ckpt")
    return [save_checkpoint(small_cnn(**KW, seed=s), folder / f"cnn{s}.safetensors") for s in range(3)]


def make_zoo(root, checkpoints, extra=()):
    import zooscope as zs

    zoo = zs.Zoo.create(root)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    for i, ckpt in enumerate(checkpoints):
        zoo.add_model(f"m{i}", SPEC, ckpt, kwargs=KW, trained_on="digits")
    for name, spec, kwargs in extra:
        zoo.add_model(name, spec, kwargs=kwargs, trained_on="digits")
    return zoo


def vectors(zoo, kind):
    return {r.model: zoo.store.get(r.vector_key) for r in zoo.catalog.embeddings(kind=kind)}


def test_ray_vectors_equal_local_vectors(ray_cluster, checkpoints, tmp_path):
    local = make_zoo(tmp_path / "local", checkpoints)
    remote = make_zoo(tmp_path / "ray", checkpoints)
    rep_local = local.embed(kinds=("cka",), backend="local")
    rep_ray = remote.embed(kinds=("cka",), backend="ray")
    assert set(rep_ray["status"]) == {"embedded"} and set(rep_local["status"]) == {"embedded"}
    a, b = vectors(local, "cka"), vectors(remote, "cka")
    assert sorted(a) == sorted(b) == ["m0", "m1", "m2"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert remote.embed(kinds=("cka",), backend="ray")["status"].eq("skipped").all()  # resumable, like local


def test_ray_pair_vectors_equal_local_pair_vectors(ray_cluster, checkpoints, tmp_path):
    """The ``fisher`` pair kind (model, dataset) on Ray: the same bytes as locally, keyed by both names."""
    local = make_zoo(tmp_path / "local", checkpoints[:2])
    remote = make_zoo(tmp_path / "ray", checkpoints[:2])
    assert set(local.embed(kinds=("fisher",), backend="local")["status"]) == {"embedded"}
    rep = remote.embed(kinds=("fisher",), backend="ray")
    assert set(rep["status"]) == {"embedded"} and set(rep["dataset"]) == {"digits"}
    a = {(r.model, r.dataset): local.store.get(r.vector_key) for r in local.catalog.embeddings(kind="fisher")}
    b = {(r.model, r.dataset): remote.store.get(r.vector_key) for r in remote.catalog.embeddings(kind="fisher")}
    assert sorted(a) == sorted(b) == [("m0", "digits"), ("m1", "digits")]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert remote.embed(kinds=("fisher",), backend="ray")["status"].eq("skipped").all()


def test_a_worker_that_kills_itself_fails_only_its_pair(ray_cluster, checkpoints, tmp_path):
    crash = ("crasher", "crashy_models:crashing_cnn", dict(KW, driver_pid=os.getpid()))
    zoo = make_zoo(tmp_path / "zoo", checkpoints, extra=[crash])
    report = zoo.embed(kinds=("cka",), backend="ray").set_index("model")
    assert report.loc["crasher", "status"] == "failed"
    assert "died" in report.loc["crasher", "error"]
    assert {m: report.loc[m, "status"] for m in ("m0", "m1", "m2")} == dict.fromkeys(("m0", "m1", "m2"), "embedded")
    assert sorted(vectors(zoo, "cka")) == ["m0", "m1", "m2"]
    assert [f.model for f in zoo.catalog.failures()] == ["crasher"]


def test_a_permanent_error_is_not_retried_and_every_failure_is_one_line(ray_cluster, checkpoints, tmp_path):
    extra = [(f"{e}-model", "crashy_models:counting_cnn",
              dict(KW, counter=str(tmp_path / f"{e}.count"), error=e, driver_pid=os.getpid()))
             for e in ("missing", "flaky")]
    zoo = make_zoo(tmp_path / "zoo", checkpoints[:1], extra=extra)
    report = zoo.embed(kinds=("cka",), backend="ray", retries=2).set_index("model")
    assert report.loc["missing-model", "status"] == report.loc["flaky-model", "status"] == "failed"
    assert (tmp_path / "missing.count").read_text() == "x"  # a missing file: one attempt
    assert (tmp_path / "flaky.count").read_text() == "xxx"  # anything else: 1 + 2 retries
    assert "FileNotFoundError" in report.loc["missing-model", "error"]
    assert report.loc["flaky-model", "error"] == "RuntimeError: worker hiccup"
    assert all("\n" not in e and "\x1b[" not in e for e in report["error"].dropna())


def test_run_jobs_retries_then_reports_progress(ray_cluster, tmp_path):
    from dataclasses import replace

    from zooscope.zoo.parallel import EmbedJob, run_jobs

    bad = EmbedJob(kind="no-such-kind", subject="model", name="x")
    seen = []
    out = list(run_jobs([bad, replace(bad, name="y")], backend="ray", max_retries=1,
                        progress=lambda done, failed, total: seen.append((done, failed, total))))
    assert sorted(job.name for job, _, _ in out) == ["x", "y"]
    assert all(res is None and "no-such-kind" in err for _, res, err in out)
    assert seen == [(1, 1, 2), (2, 2, 2)]
    with pytest.raises(ZooscopeInputError, match="max_retries"):
        list(run_jobs([bad], backend="ray", max_retries=-1))


def test_missing_ray_is_a_clear_error(monkeypatch):
    import sys

    from zooscope.zoo.parallel import EmbedJob, run_jobs

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ZooscopeInputError, match=r"pip install 'zooscope\[ray\]'"):
        list(run_jobs([EmbedJob(kind="cka", subject="model", name="m")], backend="ray"))
