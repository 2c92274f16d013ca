"""compare() runs in torch's own thread pool, as the user set it: no thread count changes, no numpy BLAS pool."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from zooscope.embed.capture import load_inputs
from zooscope.embed.compare import compare
from zooscope.embed.compare_many import compare_many
from zooscope.measures.minibatch import MinibatchCKA


def _pools():
    return sorted((d["internal_api"], d["filepath"], d["num_threads"]) for d in threadpool_info())


@pytest.mark.parametrize("measure", ["linear_cka", "minibatch_cka", "procrustes"])
def test_compare_leaves_torch_and_blas_thread_counts_as_found(nets, x, measure):
    before_torch = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # an unusual value the code could not guess
        with threadpool_limits(limits=2, user_api="blas"):
            pools = _pools()
            compare(*nets, x, ["conv3", "fc"], measure=measure, batch_size=16)
            compare_many(nets, x, ["fc"], measure=measure, batch_size=16)
            assert torch.get_num_threads() == 3
            assert _pools() == pools
    finally:
        torch.set_num_threads(before_torch)


_PROBE = textwrap.dedent("""
    import os, sys
    import numpy as np  # OpenBLAS starts its worker threads here (OPENBLAS_NUM_THREADS=2)

    main = str(os.getpid())
    blas_threads = [t for t in os.listdir("/proc/self/task") if t != main]

    def cpu_ticks():
        total = 0
        for t in blas_threads:
            fields = open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime of that thread
        return total

    import torch
    from zooscope.embed.compare import compare
    from zooscope.embed.compare_many import compare_many
    from zooscope.nets.models import small_cnn

    torch.set_num_threads(2)
    nets = [small_cnn(seed=s) for s in (1, 2)]
    x = torch.randn(600, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    start = cpu_ticks()
    compare(*nets, x, measure="minibatch_cka", batch_size=200)
    compare(*nets, x, measure="linear_cka", batch_size=200)
    compare_many(nets, x, measure="linear_cka", batch_size=200)
    during = cpu_ticks() - start
    a = np.random.default_rng(0).normal(size=(2000, 2000))
    a @ a  # positive control: a numpy GEMM does wake OpenBLAS's worker thread
    control = cpu_ticks() - start - during
    print(len(blas_threads), during, control)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to read per-thread CPU time")
def test_no_numpy_blas_pool_works_during_compare():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    n_threads, during, control = (int(v) for v in out.stdout.split()[-3:])
    if n_threads == 0:
        pytest.skip("numpy's BLAS started no worker thread here; nothing to observe")
    assert control > 0  # the probe can see OpenBLAS work
    assert during == 0  # ... and compare() gave it none


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_device_path_matches_cpu(nets, x):
    for measure in ("linear_cka", "minibatch_cka"):
        cpu = compare(*nets, x, measure=measure, batch_size=16)
        gpu = compare(*nets, x, measure=measure, batch_size=16, device="cuda")
        np.testing.assert_allclose(gpu.to_numpy(), cpu.to_numpy(), atol=1e-5)
    assert all(p.device.type == "cpu" for net in nets for p in net.parameters())  # moved back
    acc = MinibatchCKA(1, 1)
    acc.update([x.cuda().reshape(48, -1)], [x.cuda().reshape(48, -1) ** 2])
    assert acc._acc.device.type == "cuda"


def test_data_spec_is_resolved_by_the_library(nets, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    path = tmp_path / "inputs.npy"
    np.save(path, images)
    by_spec = compare(*nets, str(path), ["conv3", "fc"], batch_size=16)
    by_tensor = compare(*nets, load_inputs(path), ["conv3", "fc"], batch_size=16)
    np.testing.assert_array_equal(by_spec.to_numpy(), by_tensor.to_numpy())
    assert by_spec.attrs["n_examples"] == 40
    assert load_inputs(path, 24, seed=1).shape[0] == 24


@pytest.mark.parametrize(("measure", "stage"), [("procrustes", "per layer pair"),
                                                ("linear_cka", "building Grams")])
def test_progress_shows_the_measure_stage(nets, x, capsys, measure, stage):
    compare(*nets, x, ["conv3", "fc"], measure=measure, batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "Comparing 2 × 4 layers" in err and stage in err
    compare(*nets, x, ["conv3", "fc"], measure=measure, batch_size=16)
    assert capsys.readouterr().err == ""  # opt-in
