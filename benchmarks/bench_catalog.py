"""The zoo catalog on PostgreSQL vs SQLite: 10,000 add_model, 10,000 embedding rows, index sync, `similar`.

Each backend gets a fresh zoo (`Zoo.create`; PostgreSQL: a throwaway local cluster started here with
tests/_servers.py, fsync and synchronous_commit on as SQLite runs with synchronous=FULL; or --pg-url). One real
model is added and embedded (cka) with `Zoo.add_model` / `Zoo.embed`, giving a template row; then, timed:

1. ``add_model`` × N through `Catalog.add_model` (one transaction each, as `Zoo.add_model` commits; the
   model build + checkpoint hash that `Zoo.add_model` also does is not catalog work and is left out);
2. N embedding rows as `Zoo.embed` writes them: the vector file (`VectorStore.put`, a perturbed copy of the
   template vector) then one `Catalog.add_embedding` transaction;
3. ``embeddings(kind=…)``: the full read `Zoo.embed` plans from;
4. the index update (`IndexWriter.sync`, FAISS build over N + 1 vectors) and
5. ``Zoo.similar(model, k=10)`` on a freshly opened zoo (median of --queries calls; the first call separately).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_catalog.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
SPEC = "zooscope.zoo.models:small_cnn"


def run(url: str | None, storage: Path, n: int, queries: int) -> dict:
    from zooscope import Zoo
    from zooscope.nets.models import save_checkpoint, small_cnn

    storage.mkdir(parents=True, exist_ok=True)
    zoo = Zoo.create(storage) if url is None else Zoo.create(url, storage=storage)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    ckpt = save_checkpoint(small_cnn(**KW, seed=0), storage / "cnn.safetensors")
    zoo.add_model("m0", SPEC, ckpt, kwargs=KW, trained_on="digits")
    zoo.embed(kinds=("cka",))
    cat = zoo.catalog
    rec = cat.get_model("m0")
    row = cat.embeddings(kind="cka", model="m0")[0]
    vec = zoo.store.get(row["vector_key"])
    rng = np.random.default_rng(0)
    out: dict = {"backend": cat.engine.dialect.name, "n": n}

    t0 = time.perf_counter()
    for i in range(1, n + 1):
        cat.add_model(f"m{i}", spec=rec.spec, kwargs=rec.kwargs, checkpoint=rec.checkpoint,
                      checkpoint_sha256=rec.checkpoint_sha256, trained_on="digits", input_shape=rec.input_shape)
    out["add_model_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(1, n + 1):
        v = (vec + 0.05 * rng.standard_normal(vec.shape)).astype(vec.dtype)
        key = zoo.store.put(v, kind="cka")
        cat.add_embedding(kind="cka", model=f"m{i}", params=row["params"], vector_key=key, dim=row["dim"],
                          code_version=row["code_version"])
    out["add_embedding_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = cat.embeddings(kind="cka")
    out["read_all_rows_s"] = time.perf_counter() - t0
    assert len(rows) == n + 1

    t0 = time.perf_counter()
    zoo.embed_context().indices.sync("cka")
    out["index_sync_s"] = time.perf_counter() - t0

    fresh = Zoo.open(storage) if url is None else Zoo.open(url, storage=storage)
    t0 = time.perf_counter()
    first = fresh.similar("m0", k=10)
    out["similar_first_s"] = time.perf_counter() - t0
    assert len(first) == 10
    times = []
    for q in range(queries):
        t0 = time.perf_counter()
        fresh.similar(f"m{1 + q * (n // max(queries, 1))}", k=10)
        times.append(time.perf_counter() - t0)
    out["similar_median_s"] = statistics.median(times)
    zoo.catalog.close()
    fresh.catalog.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--pg-url", default=None, help="an existing PostgreSQL database (default: a throwaway cluster)")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per backend")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="zooscope-bench-catalog-") as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                res = run(None, Path(tmp) / "sqlite", args.n, args.queries)
            else:
                server = None
                url = args.pg_url
                if url is None:
                    from _servers import PostgresServer, find_pg_bindir

                    server = PostgresServer(find_pg_bindir(), durable=True).start()  # fsync on, like SQLite FULL
                    url = server.new_database(prefix="bench")
                try:
                    res = run(url, Path(tmp) / "pg", args.n, args.queries)
                finally:
                    if server is not None:
                        server.stop()
            res["threads"] = os.environ.get("OMP_NUM_THREADS")
            results.append(res)
            print(json.dumps(res), flush=True)
            if args.out is not None:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
