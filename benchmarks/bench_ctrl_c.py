"""Seconds from SIGINT to exit for `zooscope compare --measure procrustes` inside its SVDs (8,192 features).

Waits for the progress line of the measure stage (a state, not a time), sends SIGINT, times the exit.
Run: PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_ctrl_c.py [repeats]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

SPEC = "zooscope.zoo.models:small_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 32}


def once() -> tuple[float, int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "zooscope.cli", "compare", SPEC, SPEC, "--kwargs-a", json.dumps(KW),
                             "--data", "builtin:digits?size=32", "--n", "1797", "--batch-size", "8", "--measure",
                             "procrustes", "--measure-kwargs", '{"form": "features"}', "--format", "csv"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:
        if "procrustes per layer pair: 0/" in line:
            break
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait()
    return time.monotonic() - t0, proc.returncode, rest.strip().splitlines()[-1] if rest.strip() else ""


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    for _ in range(n):
        dt, code, last = once()
        print(f"SIGINT -> exit {code} in {dt:.2f} s, last line {last!r}", flush=True)
