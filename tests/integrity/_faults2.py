"""Fault probes of issue 19 (round 2), shared by the tests in this folder and `benchmarks/faults.py`.

Every probe does the real thing: hostile export folders, kill -9 of real processes, a second zoo on the same
storage, writers racing a live `embed`, a full (tmpfs) disk. Each returns (tried, survived, lost files) and
never sleeps for a duration it then relies on: it waits for states (a claim in the catalog, a process gone).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _faults import ENV, cli, listing

from zooscope import Zoo

HERE = Path(__file__).resolve().parent
SCALE = HERE.parent / "scale"  # crashy_models.slow_cnn: a model that is slow to build outside this process
SLOW_SPEC = "crashy_models:slow_cnn"
KW = {"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}
WAIT_S = 600.0  # generous: a loaded machine may be slow, never wrong


def env() -> dict[str, str]:
    path = os.pathsep.join([str(SCALE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])
    return dict(ENV, PYTHONPATH=path)


def zoo_cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "zooscope.cli", *(str(a) for a in args)]


def wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen | None = None) -> bool:
    """Poll until ``done()``; False when ``proc`` ended first; an AssertionError after `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        if proc is not None and proc.poll() is not None:
            return done()
        assert time.monotonic() < deadline, f"waited {WAIT_S:.0f} s for {what}"
        time.sleep(0.05)
    return True


def _lost(before: dict[str, str], after: dict[str, str]) -> int:
    keep = ("vectors/", "probes/", "indices/", "catalog.sqlite")
    return sum(1 for k, v in before.items() if k.startswith(keep) and k in after and after[k] != v) + \
        sum(1 for k in before if k.startswith(("vectors/", "probes/")) and k not in after)


def one_line_error(err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


# -- import: code, names, ids, interruption (F4, F6, F8, F11, F12) ------------------------------------------------
def hostile_exports(template: Path, work: Path) -> Iterator[tuple[str, Path, str]]:
    """(what, an export folder edited to be hostile, a text the refusal must contain)."""
    base = work / "export-base"
    if not base.exists():
        code, _, err = cli("export", base, "--zoo", template)
        assert code == 0, err
    canary = work / "canary"

    def edited(name: str, table: str, edit: Callable[[list], None]) -> Path:
        dst = work / f"export-{name}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(base, dst)
        p = dst / "catalog" / f"{table}.json"
        rows = json.loads(p.read_text())
        edit(rows)
        p.write_text(json.dumps(rows))
        return dst

    run = {"spec": "subprocess:run", "kwargs": {"args": ["touch", str(canary)]}}
    yield "model spec subprocess:run", edited("spec", "models", lambda r: r[0].update(run)), "subprocess:run"
    probe = {"arch": "subprocess:run", "kwargs": {"args": ["touch", str(canary)]}}
    yield ("task2vec probe subprocess:run",
           edited("probe", "settings", lambda r: r.append({"key": "task2vec_probes", "value": {"1x8x8": probe}})),
           "subprocess:run")
    yield ("factory build_model (builds any spec)",
           edited("build", "models", lambda r: r[0].update(spec="zooscope.nets.models:build_model")),
           "build_model")
    for label, name in (("../ name", "../../evil"), ("bidi+BEL name", "a\u202eb\x07c"), ("5000-char name", "x" * 5000)):
        def rename(rows: list, name: str = name) -> None:
            rows[0]["name"] = name
        yield f"model {label}", edited(f"name{len(name)}", "models", rename), "name"
    yield ("row id 2^60", edited("id", "embeddings", lambda r: r[0].update(id=2**60)), "integer")
    yield ("dataset size 10^30", edited("size", "datasets", lambda r: r[0].update(size=10**30)), "integer")
    yield ("row for a model not exported",
           edited("ghost", "embeddings", lambda r: r.append(dict(r[0], id=r[-1]["id"] + 1, model="gone"))),
           "does not hold")


def probe_import_hostile(template: Path, work: Path) -> tuple[int, int, int]:
    """Each hostile export: import refuses it (exit 2, one line naming what), creates nothing, runs nothing."""
    tried = survived = 0
    for what, src, needle in hostile_exports(template, work):
        tried += 1
        dest = work / f"imported-{tried}"
        code, _, err = cli("import", src, "--zoo", dest)
        ok = code == 2 and one_line_error(err) and needle in err and not dest.exists()
        ok = ok and not (work / "canary").exists() and not list(work.glob(f".{dest.name}.importing-*"))
        if not ok:
            print(f"not survived: {what}: exit {code}: {err[-500:]}", file=sys.stderr)
        survived += ok
    return tried, survived, 0


def probe_import_kills(template: Path, work: Path, kills: int, rng: random.Random) -> tuple[int, int, int]:
    """kill -9 of `zooscope import` at random points: the target is absent or a whole zoo, and an import to the
    same path afterwards succeeds (the killed one's staging folder swept)."""
    src = work / "export-kills"
    if not src.exists():
        assert cli("export", src, "--zoo", template)[0] == 0
    n_rows = len(json.loads((src / "catalog" / "embeddings.json").read_text()))
    tried = survived = 0
    for i in range(kills):
        tried += 1
        dest = work / f"kill-import-{i}"
        proc = subprocess.Popen(zoo_cli("import", src, "--zoo", dest), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # the staging folder appearing is a state: kill after it, at a random moment of the build
        wait_for("the import to start", lambda dest=dest: bool(list(work.glob(f".{dest.name}.importing-*")))
                 or dest.exists(), proc)
        time.sleep(rng.uniform(0, 1.5))
        proc.kill()
        proc.wait()
        whole = not dest.exists() or (Zoo.open(dest).check().empty
                                      and len(Zoo.open(dest).catalog.embeddings()) == n_rows)
        if dest.exists():
            shutil.rmtree(dest)
        code, _, _ = cli("import", src, "--zoo", dest)
        again = code == 0 and Zoo.open(dest).check().empty and not list(work.glob(f".{dest.name}.importing-*"))
        survived += whole and again
    return tried, survived, 0


def probe_results_exported(template: Path, work: Path) -> tuple[int, int, int]:
    """record -> export -> import: the recorded results arrive."""
    zoo_dir = work / "results-zoo"
    shutil.copytree(template, zoo_dir)
    assert cli("record", "cnn0", "digits", "--value", "0.91", "--zoo", zoo_dir)[0] == 0
    assert cli("export", work / "results-export", "--zoo", zoo_dir)[0] == 0
    code, _, _ = cli("import", work / "results-export", "--zoo", work / "results-imported")
    got = Zoo.open(work / "results-imported").results() if code == 0 else None
    ok = got is not None and list(got["model"]) == ["cnn0"] and float(got["value"].iloc[0]) == 0.91
    return 1, int(ok), 0


# -- one zoo owns its storage (F1) ----------------------------------------------------------------------------
def probe_shared_storage(template: Path, work: Path) -> tuple[int, int, int]:
    """A second catalog on a zoo's storage, and a zoo whose vectors/ links to another's: refused; nothing of the
    first zoo is touched (its embed still finds every vector)."""
    a = work / "owner-a"
    shutil.copytree(template, a)
    Zoo.open(a)  # stamps its sub-folders (a zoo made before the stamps)
    before = listing(a)
    tried = survived = 0
    # a catalog URL whose --storage is zoo a's folder
    tried += 1
    code, _, err = cli("init", "--zoo", f"sqlite:///{work / 'other.sqlite'}", "--storage", a)
    survived += code == 2 and one_line_error(err) and "another zoo" in err
    # a folder zoo whose vectors/ is a link to a's
    tried += 1
    b = work / "owner-b"
    assert cli("init", "--zoo", b)[0] == 0
    shutil.rmtree(b / "vectors")
    (b / "vectors").symlink_to(a / "vectors")
    code, _, err = cli("embed", "--kinds", "cka", "--zoo", b)
    survived += code == 2 and one_line_error(err) and "another zoo" in err
    # the first zoo is whole: nothing removed, and its own embed skips everything
    report = Zoo.open(a).embed(kinds=("cka",))
    lost = _lost(before, listing(a))
    survived_a = set(report["status"]) == {"skipped"} and Zoo.open(a).check().empty
    return tried + 1, survived + survived_a, lost


# -- writers beside a live embed (F2, F3, F10) -----------------------------------------------------------------
def slow_zoo(root: Path, n: int, delay: float = 0.3) -> Zoo:
    """A zoo with dataset 'digits' and ``n`` models that take ``delay`` s to build in any other process."""
    from zooscope.nets.models import save_checkpoint, small_cnn

    sys.path.insert(0, str(SCALE))
    zoo = Zoo.create(root)
    zoo.configure(probe_n=64)
    zoo.add_dataset("digits", "builtin:digits")
    ckpts = [save_checkpoint(small_cnn(**KW, seed=s), root.parent / f"{root.name}-cnn{s}.safetensors")
             for s in range(3)]
    kw = dict(KW, delay=delay, driver_pid=os.getpid())
    for i in range(n):
        zoo.add_model(f"m{i}", SLOW_SPEC, ckpts[i % 3], kwargs=kw)
    return zoo


def _claimed(root: Path, model: str | None = None) -> Callable[[], bool]:
    def done() -> bool:
        claims = Zoo.open(root).catalog.claims(live_only=True)
        return any(model is None or c.model == model for c in claims)
    return done


def _consistent(root: Path, removed: set[str]) -> bool:
    zoo = Zoo.open(root)
    rows = zoo.catalog.embeddings(kind="cka")
    models = {m.name for m in zoo.catalog.models()}
    return (zoo.check().empty and not {r.model for r in rows} & removed and {r.model for r in rows} <= models
            and sorted(zoo.store.keys("cka")) == sorted(r.vector_key for r in rows))


def probe_writers_beside_embed(work: Path, rounds: int, rng: random.Random) -> tuple[int, int, int]:
    """While a real `zooscope embed` runs: `check --fix` in a loop, `remove model` of a pair being computed,
    `add-model --replace`, `configure`, `record`. Survived = embed exits 0, no verb exits 2/3, the zoo is
    consistent after (check clean, no row for a removed model, no orphan) and a final embed completes it."""
    tried = survived = 0
    for r in range(rounds):
        tried += 1
        root = work / f"race-{r}"
        slow_zoo(root, 8)
        proc = subprocess.Popen(zoo_cli("embed", "--kinds", "cka", "--zoo", root), env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        codes: list[int] = []
        removed: set[str] = set()
        try:
            victims = rng.sample([f"m{i}" for i in range(2, 8)], 2)
            for name in victims:  # remove a model while embed computes it (its claim is the state)
                if wait_for(f"a claim on {name}", _claimed(root, name), proc):
                    codes.append(cli("remove", "model", name, "--zoo", root)[0])
                    removed.add(name)
                codes.append(cli("check", "--fix", "--zoo", root)[0])
            ckpt = root.parent / f"{root.name}-cnn1.safetensors"
            codes.append(cli("add-model", "m0", "--arch", "zooscope.nets.models:small_cnn", "--checkpoint", ckpt,
                             "--kwargs", json.dumps(KW), "--replace", "--zoo", root)[0])
            codes.append(cli("record", "m1", "digits", "--value", "0.5", "--zoo", root)[0])
            codes.append(cli("configure", "--jl-dim", "128", "--zoo", root)[0])
            while proc.poll() is None:
                code, _, err = cli("check", "--fix", "--zoo", root)
                if code not in (0, 1):
                    print(f"check --fix beside embed: exit {code}: {err[-400:]}", file=sys.stderr)
                codes.append(code)
            _, err = proc.communicate()
            if proc.returncode != 0 or not all(c in (0, 1) for c in codes):
                print(f"race round {r}: embed exit {proc.returncode} ({err[-800:]}); verb exits {codes}",
                      file=sys.stderr)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        after = Zoo.open(root).embed(kinds=("cka",))
        ok = proc.returncode == 0 and all(c in (0, 1) for c in codes) and _consistent(root, removed)
        survived += ok and set(after["status"]) <= {"embedded", "skipped"}
    return tried, survived, 0


def probe_replace_kills(work: Path, kills: int, rng: random.Random) -> tuple[int, int, int]:
    """kill -9 of `add-model --replace` at random points: the model is always there (old record or new)."""
    from zoo_helpers import SPEC, checkpoints, make_zoo

    root = work / "replace-kills"
    zoo = make_zoo(root, n=2, copy=False)
    new_ckpt = checkpoints(2)[1]
    tried = survived = 0
    for _ in range(kills):
        tried += 1
        proc = subprocess.Popen(zoo_cli("add-model", "cnn0", "--arch", SPEC, "--checkpoint", new_ckpt, "--kwargs",
                                        json.dumps(dict(KW)), "--trained-on", "digits", "--replace", "--zoo", root),
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 8.0))  # where the kill lands is random; what is asserted is not timed
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        zoo = Zoo.open(root)
        there = zoo.catalog.has_model("cnn0")
        zoo.check(fix=True)
        zoo.embed(kinds=("cka",))
        survived += there and Zoo.open(root).check().empty
    return tried, survived, 0


# -- stray files, dead models, impossible inputs (F7, F12, F14) -------------------------------------------------
def dead_pid() -> int:
    """The pid of a process that really ran and is gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def probe_stray_index(template: Path, work: Path) -> tuple[int, int, int]:
    """A `.new-<kind>-<pid>.faiss` of a killed index save (a real dead pid): check reports it, --fix deletes it;
    one of a live process (this one) is neither reported nor deleted."""
    root = work / "stray"
    shutil.copytree(template, root)
    idx = next((root / "indices").glob("*.faiss"))
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:  # a save in progress in another live process: not reported, not deleted
        stray = root / "indices" / f".new-cka-{dead_pid()}.faiss"
        live = root / "indices" / f".new-cka-{other.pid}.faiss"
        shutil.copy(idx, stray)
        shutil.copy(idx, live)
        code1, out1, _ = cli("check", "--format", "csv", "--zoo", root)
        code2, _, _ = cli("check", "--fix", "--zoo", root)
        ok = code1 == 1 and stray.name in out1 and live.name not in out1 and code2 == 0
        ok = ok and not stray.exists() and live.exists()
    finally:
        other.communicate(b"")
    return 1, int(ok), 0


def probe_dead_models(template: Path, work: Path) -> tuple[int, int, int]:
    """An all-zero checkpoint in the zoo: select still answers (it is skipped with one line); an int8 or a bool
    checkpoint is refused by add-model."""
    import torch
    from safetensors.torch import save_file
    from zoo_helpers import SPEC, checkpoints

    from zooscope.nets.models import small_cnn

    root = work / "dead"
    shutil.copytree(template, root)
    sd = {k: torch.zeros_like(v) for k, v in small_cnn(**KW, seed=0).state_dict().items()}
    save_file(sd, str(work / "zero.safetensors"))
    tried = survived = 0
    tried += 1
    code, _, err = cli("add-model", "zero", "--arch", SPEC, "--checkpoint", work / "zero.safetensors", "--kwargs",
                       json.dumps(KW), "--trained-on", "digits", "--zoo", root)
    if code == 0:
        code, out, err = cli("select", "digits", "--k", "3", "--format", "csv", "--zoo", root)
        survived += code == 0 and "skipped zero" in err and "zero" not in out
    for dtype in (torch.int8, torch.bool):
        tried += 1
        real = {k: v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
            str(checkpoints(1)[0])).items()}
        cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in real.items()}
        path = work / f"cast-{dtype}.safetensors".replace("torch.", "")
        save_file(cast, str(path))
        code, _, err = cli("add-model", f"cast-{str(dtype)[6:]}", "--arch", SPEC, "--checkpoint", path,
                           "--kwargs", json.dumps(KW), "--zoo", root)
        survived += code == 2 and one_line_error(err) and "integer or bool" in err
    return tried, survived, 0


def probe_impossible_inputs(template: Path, work: Path) -> tuple[int, int, int]:
    """An .npz declaring shape (10^12,) in a few bytes: add-dataset says so (exit 2), allocates nothing."""
    import io
    import zipfile

    import numpy as np

    path = work / "huge.npz"
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    labels = io.BytesIO()
    np.save(labels, np.zeros(4, dtype=np.int64))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", head.getvalue() + b"\0" * 16)
        z.writestr("y.npy", labels.getvalue())
    root = work / "huge-zoo"
    shutil.copytree(template, root)
    code, _, err = cli("add-dataset", "huge", "--source", path, "--zoo", root)
    return 1, int(code == 2 and one_line_error(err) and "declares" in err), 0


# -- a full disk (F9) -------------------------------------------------------------------------------------------
@contextmanager
def small_disk(folder: Path, size: str = "8m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``folder`` (root only)."""
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk of ``folder`` to the last byte; returns the filler file (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    return filler


FULL_DISK_VERBS = (("record", "cnn0", "digits", "--value", "0.9"), ("remove", "model", "cnn2"),
                   ("configure", "--jl-dim", "64"), ("check", "--fix"), ("similar", "cnn0", "--k", "2"),
                   ("add-dataset", "d2", "--source", "builtin:digits"))


def probe_full_disk(template: Path, work: Path) -> tuple[int, int, int]:
    """Every writing verb (and similar, export) on a zoo whose disk is full: it answers, or exits 2 with one line
    that says the disk is full (with a path), never "restore the catalog"; once space is freed the zoo is
    whole (check clean) and the same verbs work."""
    tried = survived = 0
    with small_disk(work / "full") as disk:
        root = disk / "zoo"
        shutil.copytree(template, root)
        Zoo.open(root)  # stamps, WAL files: everything a first open writes, before the disk fills
        before = listing(root)
        filler = fill(disk)
        for verb in FULL_DISK_VERBS:
            tried += 1
            code, _, err = cli(*verb, "--zoo", root)
            said = "disk" in err.lower() or "space" in err.lower()
            survived += code in (0, 1) or (code == 2 and one_line_error(err) and said and "restore" not in err)
        tried += 1
        code, _, err = cli("export", disk / "export", "--zoo", root)
        survived += code == 2 and one_line_error(err) and str(disk) in err and "restore" not in err
        filler.unlink()
        named = {r.vector_key for r in Zoo.open(root).catalog.embeddings()}
        lost = sum(1 for k, v in before.items() if k.startswith("vectors/") and Path(k).stem in named
                   and listing(root).get(k) != v)  # a file of a row still committed, removed or changed
        tried += 1
        survived += bool(Zoo.open(root).check().empty)
    return tried, survived, lost
