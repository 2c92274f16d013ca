import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from zoo_helpers import KW, SPEC, checkpoints

N_MODELS = 6
SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    torch.set_num_threads(1)
    from zooscope import Zoo
    from zooscope.zoo import parallel
    slow = parallel.compute_job
    def compute_job(job):  # slow each pair down so the parent can kill the run midway
        time.sleep(0.5)
        return slow(job)
    parallel.compute_job = compute_job
    Zoo.open(sys.argv[1], storage=sys.argv[2]).embed(kinds=("cka",))
    print("finished")
""")


def test_an_embed_killed_with_sigkill_resumes_and_embeds_each_pair_once(zoo_factory):
    """On SQLite and on PostgreSQL (`zoo_factory`): the killed run is a real process, SIGKILLed midway."""
    zoo = zoo_factory()
    zoo.configure(probe_n=128)
    zoo.add_dataset("digits", "builtin:digits")
    paths = checkpoints()
    names = [f"m{i}" for i in range(N_MODELS)]
    for i, name in enumerate(names):
        zoo.add_model(name, SPEC, paths[i % len(paths)], kwargs=KW)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, zoo_factory.url(), str(zoo_factory.storage())], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(zoo.catalog.embeddings(kind="cka")) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the embed run ended before it could be killed: {proc.communicate()[1][-2000:]!r}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = {r.model for r in zoo.catalog.embeddings(kind="cka")}
    assert 2 <= len(done_before) < N_MODELS

    report = zoo_factory().embed(kinds=("cka",)).set_index("model")
    assert set(report.index) == set(names)
    assert {m for m in names if report.loc[m, "status"] == "skipped"} == done_before
    assert {m for m in names if report.loc[m, "status"] == "embedded"} == set(names) - done_before
    rows = zoo.catalog.embeddings(kind="cka")
    assert sorted(r.model for r in rows) == sorted(names)  # every pair exactly once
    assert sorted(zoo.store.keys("cka")) == sorted(r.vector_key for r in rows)  # nothing orphaned
    assert zoo.check().empty
    assert zoo.failures().empty
