"""The Ray backend end to end, each driver a real process starting its own local 2-CPU cluster: `zooscope embed
--backend ray` with a worker that kills itself (the other pairs embedded, the crashed one failed and listed by
`zooscope ls --failed`), and a driver SIGKILLed midway that resumes like the local backend."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from _servers import unavailable

HERE = Path(__file__).resolve().parent
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}


@pytest.fixture(autouse=True)
def need_ray(monkeypatch):
    try:
        import ray  # noqa: F401
    except ImportError:
        unavailable("Ray is not installed (pip install 'zooscope[ray]'); the Ray backend tests need it")
    monkeypatch.syspath_prepend(str(HERE))


def _env():
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")


def _zoo(root, models):
    import zooscope as zs
    from zooscope.nets.models import save_checkpoint, small_cnn

    zoo = zs.Zoo.create(root)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    for i, (name, spec, kwargs) in enumerate(models):
        ckpt = save_checkpoint(small_cnn(**KW, seed=i % 3), root / f"{name}.safetensors")
        zoo.add_model(name, spec, ckpt, kwargs=kwargs)
    return zoo


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "zooscope.cli", *args], env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_cli_ray_embed_with_a_crashing_worker(tmp_path):
    crash = dict(KW, driver_pid=os.getpid())
    models = [(f"m{i}", "zooscope.zoo.models:small_cnn", KW) for i in range(3)]
    zoo = _zoo(tmp_path / "zoo", [*models, ("crasher", "crashy_models:crashing_cnn", crash)])
    run = _cli("embed", "--kinds", "cka", "--backend", "ray", "--workers", "2", "--retries", "1",
               "--out", str(tmp_path / "report.csv"), "--zoo", str(tmp_path / "zoo"))
    assert run.returncode == 1, run.stderr[-3000:]  # a pair failed: exit 1, the others done
    report = pd.read_csv(tmp_path / "report.csv").set_index("model")  # (Ray's raylet also prints on stdout)
    assert report.loc["crasher", "status"] == "failed" and "died" in report.loc["crasher", "error"]
    assert (report.loc[["m0", "m1", "m2"], "status"] == "embedded").all()
    assert "1 of 4 pairs failed" in run.stderr
    assert sorted(r.model for r in zoo.catalog.embeddings(kind="cka")) == ["m0", "m1", "m2"]
    listed = _cli("ls", "--failed", "--format", "csv", "--zoo", str(tmp_path / "zoo"))
    assert listed.returncode == 0, listed.stderr[-2000:]
    failed = pd.read_csv(io.StringIO(listed.stdout))
    assert failed["model"].tolist() == ["crasher"] and failed["kind"].tolist() == ["cka"]


DRIVER = textwrap.dedent("""
    import sys
    from zooscope import Zoo
    Zoo.open(sys.argv[1]).embed(kinds=("cka",), backend="ray", workers=2)
    print("finished")
""")


def test_a_killed_ray_driver_resumes_like_the_local_backend(tmp_path):
    n = 8
    slow = dict(KW, delay=1.0, driver_pid=os.getpid())
    names = [f"m{i}" for i in range(n)]
    zoo = _zoo(tmp_path / "zoo", [(name, "crashy_models:slow_cnn", slow) for name in names])
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "zoo")], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(zoo.catalog.embeddings(kind="cka")) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray run ended before it could be killed: {proc.communicate()[1][-3000:]!r}")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started (its session)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    done_before = {r.model for r in zoo.catalog.embeddings(kind="cka")}
    assert 2 <= len(done_before) < n

    from zooscope import Zoo

    report = Zoo.open(tmp_path / "zoo").embed(kinds=("cka",)).set_index("model")
    assert {m for m in names if report.loc[m, "status"] == "skipped"} == done_before
    assert {m for m in names if report.loc[m, "status"] == "embedded"} == set(names) - done_before
    rows = zoo.catalog.embeddings(kind="cka")
    assert sorted(r.model for r in rows) == sorted(names)
    assert sorted(zoo.store.keys("cka")) == sorted(r.vector_key for r in rows)
    assert zoo.failures().empty and zoo.check().empty
