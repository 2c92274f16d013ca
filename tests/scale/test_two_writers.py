"""Two `zooscope embed` processes on one zoo (SQLite and PostgreSQL) while `similar` queries run: every pair is
embedded exactly once, no vector is lost or orphaned, no failure is recorded, the index holds every row, and no
query fails. The writers split the pairs through row claims (`zooscope.zoo.catalog`)."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
SPEC = "crashy_models:slow_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
N_NEW = 10


def _env():
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


@pytest.fixture
def slow_models_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_two_embed_processes_split_the_pairs_and_similar_never_fails(zoo_factory, slow_models_importable):
    from zooscope.nets.models import save_checkpoint, small_cnn
    from zooscope.zoo.indices import IndexKey

    zoo = zoo_factory()
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    ckpts = [save_checkpoint(small_cnn(**KW, seed=s), zoo_factory.storage() / f"cnn{s}.safetensors")
             for s in range(3)]
    kw = dict(KW, delay=0.4, driver_pid=os.getpid())
    for i in range(2):  # embedded before the writers start, so `similar` has an index to query all along
        zoo.add_model(f"base{i}", SPEC, ckpts[i], kwargs=kw)
    zoo.embed(kinds=("cka",))
    new = [f"m{i}" for i in range(N_NEW)]
    for i, name in enumerate(new):
        zoo.add_model(name, SPEC, ckpts[i % 3], kwargs=kw)

    cmd = [sys.executable, "-m", "zooscope.cli", "embed", "--kinds", "cka", "--format", "csv",
           *zoo_factory.cli_args()]
    writers = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    queries = 0
    try:
        deadline = time.monotonic() + 600
        while any(w.poll() is None for w in writers):
            assert time.monotonic() < deadline, "the writers did not finish in 10 minutes"
            table = zoo_factory().similar("base0", k=3)  # a fresh open each time, like a CLI call
            assert len(table) >= 1
            queries += 1
        outs = [w.communicate() for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_, err) in zip(writers, outs, strict=True):
        assert w.returncode == 0, err[-3000:]
    reports = [pd.read_csv(io.StringIO(out)) for out, _ in outs]
    for r in reports:  # each writer saw every pair: embedded it, or found it done / claimed by the other
        assert set(r.loc[r["model"].isin(new), "status"]) <= {"embedded", "skipped", "skipped (another writer)"}
    embedded = sorted(m for r in reports for m in r.loc[r["status"] == "embedded", "model"])
    assert embedded == sorted(new)  # each new pair embedded by exactly one of the two writers
    assert queries >= 1

    zoo = zoo_factory()
    rows = zoo.catalog.embeddings(kind="cka")
    assert sorted(r.model for r in rows) == sorted(["base0", "base1", *new])  # one row per pair
    assert sorted(zoo.store.keys("cka")) == sorted(r.vector_key for r in rows)  # none lost, none orphaned
    assert zoo.failures().empty and zoo.catalog.claims() == []
    assert zoo.check().empty
    ctx = zoo.similar_context()
    from zooscope.zoo.vectors import comparability_group

    group = comparability_group(rows[0])
    assert sorted(ctx.indices.load(IndexKey("cka", "penultimate", group)).ids().tolist()) == \
        sorted(r.id for r in rows)
    assert set(zoo.similar("base0", k=20)["model"]) == {"base1", *new}
    cli = subprocess.run([sys.executable, "-m", "zooscope.cli", "similar", "m0", "--k", "3", "--format", "csv",
                          *zoo_factory.cli_args()], env=_env(), capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert len(pd.read_csv(io.StringIO(cli.stdout))) == 3
