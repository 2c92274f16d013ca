"""`zooscope report` on a 300-model zoo: page size, time to write it, and time to render it in headless Chromium.

The zoo is synthesised through the public API, as benchmarks/bench_catalog.py does: one real small CNN is added
and embedded (cka) and two datasets get real task vectors (`Zoo.embed`); then N − 1 more models are catalog rows
(`Catalog.add_model`, same checkpoint) whose CKA signatures are perturbed copies of the real one, grouped in
``--groups`` clusters (each layer re-normalised to unit norm, so inner products stay CKA-like), written as
`Zoo.embed` writes them (`VectorStore.put` then `Catalog.add_embedding`) and indexed (`IndexWriter.sync`); every
model gets a recorded fine-tuning result on one dataset. No training beyond the one model.

Measured:
- ``write_s``: `Zoo.report(path)` wall time (reads the catalog, checks the zoo, MDS, figures, the page; the first
  call in the process, so it includes importing scikit-learn and matplotlib); ``write_cpu_s`` its process CPU time,
  which other jobs on a shared machine do not inflate;
- ``size_mb``: the HTML file (goal ≤ 5 MB);
- ``render_ms``: in headless Chromium (Debian's, via Playwright) at 1280×800, ``performance.now()`` (ms since the
  navigation started) once the load event has fired, every image has decoded (``img.decode()``) and two
  animation frames have passed, i.e. the page is painted; the median of ``--repeats`` fresh pages (goal ≤ 2 s).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_report.py --n 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
SPEC = "zooscope.zoo.models:small_cnn"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RENDERED = """async () => {
  await Promise.all(Array.from(document.images).map(i => i.decode()));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now();
}"""


def build(storage: Path, n: int, groups: int, seed: int = 0):
    from zooscope import Zoo
    from zooscope.nets.models import save_checkpoint, small_cnn

    zoo = Zoo.create(storage)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    zoo.add_dataset("digits-0to4", "builtin:digits?classes=0,1,2,3,4")
    ckpt = save_checkpoint(small_cnn(**KW, seed=0), storage / "cnn.safetensors")
    zoo.add_model("m000", SPEC, ckpt, kwargs=KW, trained_on="digits")
    zoo.embed(kinds=("cka", "task2vec"))
    cat = zoo.catalog
    rec = cat.get_model("m000")
    row = cat.embeddings(kind="cka", model="m000")[0]
    vec = np.asarray(zoo.store.get(row.vector_key), dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [vec + 0.6 * rng.standard_normal(vec.shape) / np.sqrt(vec.shape[-1]) for _ in range(groups)]
    for i in range(1, n):
        v = centres[i % groups] + 0.15 * rng.standard_normal(vec.shape) / np.sqrt(vec.shape[-1])
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        name = f"m{i:03d}-group{i % groups}"
        cat.add_model(name, spec=rec.spec, kwargs=rec.kwargs, checkpoint=rec.checkpoint,
                      checkpoint_sha256=rec.checkpoint_sha256, trained_on=("digits", "digits-0to4")[i % 2],
                      input_shape=rec.input_shape)
        key = zoo.store.put(v.astype(np.float32), kind="cka")
        cat.add_embedding(kind="cka", model=name, params=row.params, vector_key=key, dim=row.dim,
                          code_version=row.code_version)
    zoo.embed_context().indices.sync("cka")
    for i, m in enumerate(cat.models()):
        zoo.record_result(m.name, "digits-0to4", float(0.5 + 0.4 * rng.random()))
        if i % 3 == 0:
            zoo.record_result(m.name, "digits", float(0.5 + 0.4 * rng.random()))
    return zoo


def render_ms(page_path: Path, repeats: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("ZOOSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            out.append(float(page.evaluate(RENDERED)))
            if errors:
                raise RuntimeError(f"console errors while rendering: {errors[:3]}")
            page.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="models in the zoo")
    ap.add_argument("--groups", type=int, default=12, help="clusters of signatures")
    ap.add_argument("--repeats", type=int, default=5, help="fresh pages rendered (median reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bench_report.json")
    ap.add_argument("--keep", type=Path, default=None, help="also copy the page here")
    ap.add_argument("--zoo", type=Path, default=None, help="build the zoo here and keep it (reused when it exists)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zooscope-bench-report-"))
    try:
        t0 = time.perf_counter()
        if args.zoo is not None and (args.zoo / "catalog.sqlite").is_file():
            from zooscope import Zoo

            zoo = Zoo.open(args.zoo)
        else:
            zoo = build(args.zoo or tmp / "zoo", args.n, args.groups)
        build_s = time.perf_counter() - t0
        page = tmp / "report.html"
        t0, c0 = time.perf_counter(), time.process_time()
        zoo.report(page)
        write_s, write_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        times = render_ms(page, args.repeats)
        if args.keep:
            shutil.copy(page, args.keep)
        res = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "n_models": len(zoo.models()),
               "build_s": round(build_s, 1), "write_s": round(write_s, 2),
               "write_cpu_s": round(write_cpu_s, 2),
               "size_mb": round(page.stat().st_size / 1e6, 3), "render_ms_median": round(statistics.median(times)),
               "render_ms_all": [round(t) for t in times],
               "threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
               "load_avg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
               "machine": platform.machine()}
        print(json.dumps(res, indent=1))
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
