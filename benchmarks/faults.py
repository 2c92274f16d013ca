"""Fault probes against a small real zoo (issue 13): how many faults zooscope survives, and how much data is lost.

Probe families (all real: files are really damaged, processes really killed, nothing is mocked):

* ``catalog``  -- catalog.sqlite zero-byte / truncated / random bytes / scrambled pages / deleted (marker kept),
  then every zoo verb through the CLI (in-process). Survived = exit 2, one ``error:`` line, no file of the zoo
  removed or changed.
* ``bitflip``  -- one random bit flipped in each vector file and in the probe file (``--flips`` times each).
  Survived = ``check`` reports exactly that file and ``similar`` neither returns it nor a score outside [0, 1].
* ``names``    -- hostile model/dataset names through the library and the CLI. Survived = refused with
  `ZooscopeInputError` / exit 2 and nothing created outside the zoo folder.
* ``kill``     -- ``kill -9`` of a real ``zooscope embed`` process at random points, then a final ``embed``.
  Survived = every committed row keeps its file byte for byte, ``check`` is clean at the end.
* ``measures`` -- every registered measure with X·s, Y·s (Grams K·s, L·s; label-scored features·s; gradient
  kernels' arrays·s) for s = 1e±200, 1e±300 (issue 19, F13; driver ``tests/measures/extreme_scales.py``).
  Survived = the declared scale invariance holds (value at s == value at 1 to 1e-6), else a finite value or a
  one-line ``ZooscopeInputError`` naming the measure; never another exception, NaN or inf.

Round 2 (issue 19; the probes live in ``tests/integrity/_faults2.py`` and are the tests of
``tests/integrity/test_round2.py``):

* ``import``   -- hostile export folders (a ``subprocess:run`` model or probe spec, ``build_model`` as a factory,
  ``../`` / bidi+BEL / 5,000-character names, row id 2^60, size 10^30, a row for a model not exported). Survived =
  exit 2, one line naming it, no zoo created, no code run (a canary file stays absent).
* ``import kill`` -- kill -9 of ``zooscope import`` at random points. Survived = the target is absent or whole,
  and the next import to it succeeds.
* ``results``  -- record -> export -> import keeps the recorded results.
* ``storage``  -- a catalog URL whose ``--storage`` is another zoo's folder, a zoo whose ``vectors/`` links to
  another's. Survived = refused (exit 2, one line); the first zoo keeps every file.
* ``writers``  -- beside a live ``zooscope embed``: remove of a model being computed, ``check --fix`` in a loop,
  ``add-model --replace``, ``record``, ``configure``. Survived = embed exits 0, no verb exits 2/3, no ghost row,
  check clean, a final embed completes.
* ``replace kill`` -- kill -9 of ``add-model --replace``. Survived = the model is there (old or new record).
* ``stray``, ``dead model``, ``shapes`` -- ``indices/.new-*`` of a dead process reported and swept; an all-zero
  checkpoint skipped by select, int8/bool checkpoints refused; an .npz declaring 10^12 elements refused.
* ``full disk`` -- a 8 MB tmpfs filled to the last byte, then every writing verb. Survived = it answers or
  exits 2 saying the disk is full (never "restore the catalog"), and the zoo is whole once space is freed.

Data lost = vector / probe / index files of committed rows that a probe removed or changed (must be 0).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/faults.py [--flips 3] [--kills 5] [--races 3] [--families ...]``
(prints a markdown table; ``--families r2`` runs issue 19's round only; run as root for the full-disk family).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "integrity"), str(HERE.parent / "tests" / "zoo"),
                str(HERE.parent / "tests" / "measures")]

from _faults import ENV, cli, damage_catalog, flip_bit, listing  # noqa: E402
from zoo_helpers import KW, SPEC, checkpoints, make_zoo  # noqa: E402

from zooscope import Zoo  # noqa: E402
from zooscope._validation import ZooscopeInputError  # noqa: E402

DAMAGE = ("zero", "truncated", "garbage", "scrambled", "missing")


def _lost(before: dict[str, str], after: dict[str, str]) -> int:
    """Files of the zoo's data (vectors, probes, indices) that were removed or changed."""
    keep = ("vectors/", "probes/", "indices/")
    return sum(1 for k, v in before.items() if k.startswith(keep) and after.get(k) != v)


def probe_catalog(template: Path, work: Path) -> tuple[int, int, int]:
    sys.path.insert(0, str(HERE.parent / "tests" / "integrity"))
    from test_catalog_damage import verbs

    tried = survived = lost = 0
    for how in DAMAGE:
        zoo = work / f"cat-{how}"
        shutil.copytree(template, zoo)
        damage_catalog(zoo, how)
        for argv in verbs(zoo, work / f"export-{how}"):
            before = listing(zoo)
            code, _, err = cli(*argv)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            after = listing(zoo)
            tried += 1
            lost += _lost(before, after)
            survived += code == 2 and len(lines) == 1 and lines[0].startswith("error:") and after == before
    return tried, survived, lost


def probe_bitflips(template: Path, work: Path, flips: int, rng: random.Random) -> tuple[int, int, int]:
    tried = survived = lost = 0
    root = work / "flips"
    shutil.copytree(template, root)
    zoo = Zoo.open(root)
    targets = [zoo.store.path(r.vector_key) for r in zoo.catalog.embeddings()]
    targets += [root / rec["file"] for rec in zoo.settings()["probe_sets"].values()]
    for path in targets:
        for _ in range(flips):
            original = path.read_bytes()
            before = listing(root)
            flip_bit(path, offset=rng.randrange(len(original)), bit=rng.randrange(8))
            tried += 1
            table = Zoo.open(root).check()
            ok = len(table) >= 1 and all(path.name in d for d in table["detail"]) and \
                set(table["problem"]) <= {"corrupt vector", "corrupt probe set"}
            try:
                sim = Zoo.open(root).similar("cnn0", k=3)
                corrupt_models = {r.model for r in zoo.catalog.embeddings()
                                  if r.model and zoo.store.path(r.vector_key) == path}
                ok = ok and not (set(sim["model"]) & corrupt_models) and sim["score"].between(0, 1 + 1e-9).all()
            except ZooscopeInputError as e:  # refused: fine when it names the file
                ok = ok and path.name in str(e)
            path.write_bytes(original)
            lost += _lost(before, listing(root))
            survived += ok
    return tried, survived, lost


def probe_names(template: Path, work: Path) -> tuple[int, int, int]:
    from test_names import HOSTILE

    root = work / "parent" / "zoo"
    shutil.copytree(template, root)
    zoo = Zoo.open(root)
    outside = {k for k in listing(root.parent) if not k.startswith("zoo/")}
    before = listing(root)
    tried = survived = 0
    for name in HOSTILE:
        calls = [lambda n: zoo.add_dataset(n, "builtin:digits"),
                 lambda n: zoo.add_model(n, SPEC, checkpoints(1)[0], kwargs=KW)]
        if "\x00" not in name:  # argv cannot carry a NUL
            calls.append(lambda n: cli("add-dataset", n, "--source", "builtin:digits", "--zoo", root))
        for call in calls:
            tried += 1
            try:
                res = call(name)
                ok = isinstance(res, tuple) and res[0] == 2
            except ZooscopeInputError:
                ok = True
            ok = ok and {k for k in listing(root.parent) if not k.startswith("zoo/")} == outside
            survived += ok
    return tried, survived, _lost(before, listing(root))


def probe_kills(work: Path, kills: int, rng: random.Random) -> tuple[int, int, int]:
    root = work / "kill"
    zoo = Zoo.create(root)
    zoo.configure(probe_n=128)
    zoo.add_dataset("digits", "builtin:digits")
    paths = checkpoints()
    n_models = 2 * kills + 2
    for i in range(n_models):
        zoo.add_model(f"m{i}", SPEC, paths[i % len(paths)], kwargs=KW)
    script = ("import sys, time\nfrom zooscope.zoo import parallel\nslow = parallel.compute_job\n"
              "parallel.compute_job = lambda job: (time.sleep(0.3), slow(job))[1]\n"
              "from zooscope.cli import main\n"
              "sys.argv = ['zooscope', 'embed', '--kinds', 'cka', '--zoo', sys.argv[1]]\nmain()\n")
    tried = survived = 0
    committed: dict[str, tuple[str, str]] = {}
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", script, str(root)], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(zoo.catalog.embeddings(kind="cka")) < 2 * k + 1 and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.35))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        tried += 1
        for r in zoo.catalog.embeddings(kind="cka"):
            committed.setdefault(r.model, (r.vector_key, r.sha256))
        problems = Zoo.open(root).check()
        survived += set(problems["problem"]) <= {"orphan vector", "stale index", "missing index"}
    subprocess.run([sys.executable, "-m", "zooscope.cli", "embed", "--kinds", "cka", "--zoo", str(root)], env=ENV,
                   capture_output=True, timeout=600, check=True)
    rows = {r.model: (r.vector_key, r.sha256) for r in zoo.catalog.embeddings(kind="cka")}
    lost = sum(1 for m, v in committed.items() if rows.get(m) != v or v[0] not in zoo.store.keys("cka"))
    if not (Zoo.open(root).check().empty and len(rows) == n_models):
        survived = 0
    return tried, survived, lost


def probe_measures() -> tuple[int, int, int]:
    """Every registered measure at s = 1e±200, 1e±300 (module docstring); prints each failure to stderr."""
    import warnings

    from extreme_scales import run_all

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow RuntimeWarnings and degenerate-CCA warnings are expected here
        rows = run_all()
    for p, ok, what in rows:
        if not ok:
            print(f"measures: {p.name} at s={p.scale:g}: {what}", file=sys.stderr)
    return len(rows), sum(ok for _, ok, _ in rows), 0


def round2(template: Path, work: Path, args: argparse.Namespace, rng: random.Random) -> list[tuple[str, Any]]:
    """Issue 19's families (`_faults2`)."""
    import _faults2 as f2

    def sub(name: str) -> Path:
        (work / name).mkdir(exist_ok=True)
        return work / name

    def full_disk() -> tuple[int, int, int]:
        try:
            return f2.probe_full_disk(template, sub("r2-disk"))
        except PermissionError:
            return 0, 0, 0  # not root: reported as 0 tried

    return [
        ("import: hostile export (code, names, ids, ghost rows)", lambda: f2.probe_import_hostile(template,
                                                                                                    sub("r2-imp"))),
        (f"kill -9 of `zooscope import` ({args.kills} random points)",
         lambda: f2.probe_import_kills(template, sub("r2-impk"), args.kills, rng)),
        ("record → export → import keeps results", lambda: f2.probe_results_exported(template, sub("r2-res"))),
        ("two zoos on one storage (URL catalog, linked vectors/)",
         lambda: f2.probe_shared_storage(template, sub("r2-own"))),
        (f"writers beside a live embed ({args.races} rounds × remove, check --fix, --replace, record, configure)",
         lambda: f2.probe_writers_beside_embed(sub("r2-race"), args.races, rng)),
        (f"kill -9 of `add-model --replace` ({args.kills} random points)",
         lambda: f2.probe_replace_kills(sub("r2-repk"), args.kills, rng)),
        ("stray indices/.new-* of a killed save", lambda: f2.probe_stray_index(template, sub("r2-stray"))),
        ("dead model (all-zero) and int8/bool checkpoints", lambda: f2.probe_dead_models(template, sub("r2-dead"))),
        (".npz declaring 10^12 elements", lambda: f2.probe_impossible_inputs(template, sub("r2-shape"))),
        ("full disk (8 MB tmpfs) × writing verbs and export", full_disk),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=3)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--races", type=int, default=3, help="rounds of writers beside a live embed")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--families", default="catalog,bitflip,names,kill,measures,r2",
                    help="comma-separated probe families to run (default: all)")
    args = ap.parse_args()
    families = set(args.families.split(","))
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="zooscope-faults-"))
    template = work / "template"
    if families - {"measures"}:
        z = make_zoo(template)
        z.catalog.close()
    rows = []
    for key, fam, fn in (
            ("catalog", "catalog (5 damages × every zoo verb, CLI)", lambda: probe_catalog(template, work)),
            ("bitflip", f"bit flip ({args.flips} random bits × each vector and probe file)",
             lambda: probe_bitflips(template, work, args.flips, rng)),
            ("names", "hostile names (library + CLI)", lambda: probe_names(template, work)),
            ("kill", f"kill -9 of `zooscope embed` ({args.kills} random points)",
             lambda: probe_kills(work, args.kills, rng)),
            ("measures", "measures at 1e±200, 1e±300 (every registered measure × 4 scales)", probe_measures),
            *(("r2", fam, fn) for fam, fn in (round2(template, work, args, rng) if "r2" in families else ()))):
        if key not in families:
            continue
        t0 = time.perf_counter()
        tried, survived, lost = fn()
        rows.append((fam, tried, survived, lost, time.perf_counter() - t0))
    print("| probe family | probes tried | faults survived | data lost (files) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for fam, tried, survived, lost, secs in rows:
        print(f"| {fam} | {tried} | {survived} | {lost} | {secs:.0f} |")
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    print(f"| **total** | **{total[0]}** | **{total[1]}** | **{total[2]}** | |")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if total[0] == total[1] and total[2] == 0 else 1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
