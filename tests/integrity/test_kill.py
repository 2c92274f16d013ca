"""kill -9 of a real `zooscope embed` process at several points: no committed row loses its (verified) file, the
zoo stays consistent, and the next run finishes with each pair embedded once. (tests/zoo/test_resume.py kills the
library call once; this kills the CLI repeatedly.)"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _faults import ENV, listing
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo

N_MODELS = 8
SCRIPT = textwrap.dedent("""
    import sys, time
    from zooscope.zoo import parallel
    slow = parallel.compute_job
    def compute_job(job):  # slow each pair down so that the parent can kill the run midway
        time.sleep(0.3)
        return slow(job)
    parallel.compute_job = compute_job
    from zooscope.cli import main
    sys.argv = ["zooscope", "embed", "--kinds", "cka", "--zoo", sys.argv[1]]
    main()
""")


def _kill_after(root, zoo, n_rows, rng):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(zoo.catalog.embeddings(kind="cka")) < n_rows:
            if proc.poll() is not None or time.monotonic() > deadline:
                return proc.wait(), proc.communicate()[1].decode()
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))  # anywhere in the next pair: computing, writing the file, the row
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30), ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_9_of_embed_at_random_points_loses_nothing(tmp_path):
    rng = random.Random(20261129)
    root = tmp_path / "zoo"
    zoo = Zoo.create(root)
    zoo.configure(probe_n=128)
    zoo.add_dataset("digits", "builtin:digits")
    paths = checkpoints()
    names = [f"m{i}" for i in range(N_MODELS)]
    for i, name in enumerate(names):
        zoo.add_model(name, SPEC, paths[i % len(paths)], kwargs=KW)
    kills = 0
    committed: dict[str, str] = {}
    for n_rows in (1, 3, 5):
        code, err = _kill_after(root, zoo, n_rows, rng)
        if code != -signal.SIGKILL:
            pytest.fail(f"the embed run ended (exit {code}) before it could be killed: {err[-2000:]!r}")
        kills += 1
        rows = zoo.catalog.embeddings(kind="cka")
        for r in rows:  # every committed row keeps its file, byte for byte
            committed.setdefault(r.model, r.sha256)
            assert committed[r.model] == r.sha256
        problems = Zoo.open(root).check()
        assert set(problems["problem"]) <= {"orphan vector", "stale index", "missing index"}, problems
    before = listing(root)
    proc = subprocess.run([sys.executable, "-m", "zooscope.cli", "embed", "--kinds", "cka", "--zoo", str(root)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = zoo.catalog.embeddings(kind="cka")
    assert sorted(r.model for r in rows) == sorted(names)  # each pair exactly once
    assert {r.model: r.sha256 for r in rows if r.model in committed} == committed  # nothing lost
    kept = {k for k in before if k.startswith("vectors/")} & set(listing(root))
    assert {f"vectors/cka/{r.vector_key}.npy" for r in rows if r.model in committed} <= kept
    assert Zoo.open(root).check().empty
    assert zoo.failures().empty
    assert kills == 3
