"""A model factory for the Ray crash test: it builds normally in the test process (``add_model`` checks the spec)
and kills its own process anywhere else, i.e. inside a Ray worker, like a segfaulting checkpoint loader."""

import os

from zooscope.nets.models import small_cnn


def crashing_cnn(driver_pid: int, **kwargs):
    if os.getpid() != int(driver_pid):
        os._exit(17)  # no exception, no cleanup: the worker process just dies
    return small_cnn(**kwargs)


def slow_cnn(delay: float, driver_pid: int, **kwargs):
    """small_cnn that takes ``delay`` seconds to build outside the test process: slows each pair down so two
    writers (or a kill) overlap the run."""
    if os.getpid() != int(driver_pid):
        import time

        time.sleep(float(delay))
    return small_cnn(**kwargs)


def counting_cnn(counter: str, error: str, driver_pid: int, **kwargs):
    """small_cnn that, outside the test process, counts its attempts in ``counter`` then fails: ``"missing"`` as a
    missing checkpoint would (permanent: must not be retried), else with a transient-looking error."""
    if os.getpid() != int(driver_pid):
        with open(counter, "a") as f:
            f.write("x")
        if error == "missing":
            raise FileNotFoundError(2, "No such file or directory", "/nowhere/ckpt.safetensors")
        raise RuntimeError("worker hiccup\nwith a second line")
    return small_cnn(**kwargs)
