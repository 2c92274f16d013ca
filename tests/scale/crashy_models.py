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
