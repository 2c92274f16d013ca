"""Run every benchmark script (``benchmarks/bench_*.py``) one after another with its default arguments.

``make bench`` calls this. Each script prints its own figures and writes its own results; this runner only
sequences them (one at a time: the figures are timings) and reports which failed. Pass names to run a subset:
``python benchmarks/run_all.py bench_compare bench_sketch``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {a.removesuffix(".py") for a in argv}
        unknown = wanted - {p.stem for p in scripts}
        if unknown:
            print(f"unknown benchmarks {sorted(unknown)}; have {[p.stem for p in scripts]}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in wanted]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"== {script.name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
