"""Which faiss index for how many vectors, and what it costs: the factory string, IVF list count, RAM estimate.

An index is one faiss factory string (``"IDMap2,Flat"``, ``"IDMap2,HNSW32"``, ``"IDMap2,IVF256,Flat"``): to scale,
change the string, not code. ``IDMap2`` makes the ids the catalog's embedding ids. `choose_factory` picks the
string from the size (figures in `benchmarks/RESULTS.md`); `estimate_memory` and `ram_budget` decide whether the
exact vectors kept for the re-rank stay in RAM or are memory-mapped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import faiss
import numpy as np

from zooscope._validation import ZooscopeInputError, check_choice

__all__ = ["ADD_CHUNK", "FLAT_MAX", "METRICS", "choose_factory", "estimate_memory", "is_lossy", "ivf_lists",
           "ram_budget"]

FLAT_MAX = 50_000  # exact search stays < 1 ms/query (batched) below this on 2 cores (env_probe §4)
ADD_CHUNK = 65_536  # rows validated, normalised and added at a time (bounds the build's extra memory)
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def ivf_lists(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two nearest sqrt(n), within [64, 65536] (1,024 at a million)."""
    return int(min(65536, max(64, 2 ** round(np.log2(max(1.0, np.sqrt(n)))))))


def choose_factory(n: int, dim: int, metric: str = "ip") -> str:
    """Return the factory string for ``n`` vectors of ``dim``, from `benchmarks/bench_index.py` (RESULTS.md).

    * ``n < FLAT_MAX`` (50,000): ``"IDMap2,Flat"``, exact; a batched query costs well under a millisecond.
    * above: ``"IDMap2,IVF{nlist},SQ8"`` with ``nlist`` ≈ sqrt(n) (`ivf_lists`), probed 8 lists deep (`NPROBE`), and
      `VectorIndex.build` keeps the exact float vectors beside it (in RAM, or memory-mapped from disk when they
      would not fit) to re-rank k × 10 candidates exactly. Measured at a million 256-d clustered signatures on
      one thread (RESULTS.md): recall@10 ≥ 0.999, ~15 s of CPU to build, ≤ 0.5 ms of CPU a query batched and
      under 1 ms single, 1.4 GB of RAM with the exact vectors in RAM (0.4 GB memory-mapped). The alternatives
      measured there lose: exact Flat costs ~10× more a query; IVF-SQ8 without re-rank has recall 0.96-0.98;
      HNSW32-SQ8 took ~20× longer to build with recall 0.86 and cannot remove vectors; IVF-PQ32 trains
      slowly and its coarse codes keep only 0.59 of the true neighbours among 100 candidates.
    """
    check_choice(metric, METRICS, "metric", "choose_factory")
    if n < 0 or dim < 1:
        raise ZooscopeInputError(f"choose_factory needs n >= 0 and dim >= 1; got n={n}, dim={dim}.")
    return "IDMap2,Flat" if n < FLAT_MAX else f"IDMap2,IVF{ivf_lists(n)},SQ8"




def is_lossy(factory: str) -> bool:
    """Whether the factory stores vectors approximately (scalar / product / residual quantisation, LSH)."""
    return re.search(r"SQ|PQ|LSH|RQ", factory) is not None



def estimate_memory(n: int, dim: int, factory: str, *, exact: bool | None = None) -> int:
    """Bytes of RAM an index of ``n`` × ``dim`` vectors built from ``factory`` needs (faiss part + exact copy).

    ``exact`` (default: whether the factory stores vectors lossily) adds the float32 vectors kept for the
    exact re-rank; they can be memory-mapped from disk instead (`VectorIndex.build`'s ``memory_budget``).
    The estimate counts codes, ids, IVF centroids and HNSW links, plus one build chunk; faiss's own slack
    (list growth) is within ~20 %.
    """
    parts = [p.strip() for p in factory.split(",") if p.strip()]
    exact = is_lossy(factory) if exact is None else exact
    per = 0.0
    fixed = ADD_CHUNK * dim * 4 * 2  # one validated chunk + its normalised copy
    for p in parts:
        if p.startswith("IDMap"):
            per += 8 + (16 if p == "IDMap2" else 0)  # id array (+ reverse map)
        elif p.startswith("IVF"):
            nlist = int("".join(ch for ch in p[3:].split("_")[0] if ch.isdigit()) or 1)
            per += 8  # stored id per list entry
            fixed += nlist * dim * 4
        elif p.startswith("HNSW"):
            m = int("".join(ch for ch in p[4:].split("_")[0] if ch.isdigit()) or 32)
            per += m * 2 * 4 * 1.05  # level-0 links + upper levels
            code = p.split("_", 1)[1] if "_" in p else "Flat"
            per += _code_bytes(code, dim)
        else:
            per += _code_bytes(p, dim)
    if exact:
        per += dim * 4
    return int(n * per + fixed)


def _code_bytes(code: str, dim: int) -> float:
    if code.startswith("SQ"):
        bits = {"SQ8": 8, "SQ6": 6, "SQ4": 4, "SQfp16": 16, "SQbf16": 16}.get(code.split("x")[0], 8)
        return dim * bits / 8
    if code.startswith("PQ"):
        digits = code[2:].split("x")
        m = int("".join(ch for ch in digits[0] if ch.isdigit()) or 8)
        nbits = int("".join(ch for ch in digits[1] if ch.isdigit()) or 8) if len(digits) > 1 else 8
        return m * nbits / 8
    return dim * 4.0  # Flat and anything unknown: float32


def ram_budget() -> int:
    """Bytes an index may hold in RAM: ``ZOOSCOPE_INDEX_RAM_BUDGET`` (bytes.

    Suffix K/M/G allowed), else half of MemAvailable.
    """
    env = os.environ.get("ZOOSCOPE_INDEX_RAM_BUDGET")
    if env:
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(env.strip()[-1:].upper(), 1)
        return int(float(env.strip().rstrip("KMGkmg")) * mult)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 * 2**30
