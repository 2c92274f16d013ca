"""The bad-input sweep: every verb of the Typer app × every option × generated bad values.

Nothing here is hand-picked per verb: the verbs and their options are read from the app (click's command tree),
and each option gets the bad values of its type (int, float, text, path) and of its role, recognised from its
name (a JSON option, an input file, a dataset spec, a device, an output image or table, the zoo, a zoo name).
Each case runs in-process with typer's CliRunner on a fresh copy of a small zoo; a handful also run in a real
subprocess. Every case must end without a traceback and with exit 0 (the value was acceptable), 1 (`check`
found a problem) or 2 (bad input), never 3 (a bug); exit 2 must print exactly one ``error:`` line naming the
option or the value; values that are bad by construction (wrong type, malformed JSON, a missing or corrupt
file, an unknown device, an unwritable image suffix, a hostile name) must exit 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "zoo"))
from zoo_helpers import KW, SPEC, make_zoo

from zooscope.cli import app

runner = CliRunner()
KW_JSON = '{"in_chans": 1, "num_classes": 10, "width": 8, "img_size": 8}'

# a valid value for every required parameter (by name), so that the bad value is the only problem
VALID: dict[str, str] = {
    "model": "cnn0", "dataset": "digits", "name": "fresh-name", "arch": SPEC, "source": "builtin:digits",
    "data": "builtin:digits", "layer": "conv1", "model_a": SPEC, "model_b": SPEC, "models": SPEC, "pattern": "*",
}
VALID_BY_VERB: dict[str, dict[str, str]] = {"remove": {"what": "model"}, "ls": {"what": "models"}}
# valid, cheap options for verbs that would otherwise do real work (or miss a needed value) when a value is accepted
CHEAP: dict[str, list[str]] = {
    "compare": ["--kwargs-a", KW_JSON, "--n", "16"], "match": ["--kwargs-a", KW_JSON, "--n", "16"],
    "add-model": ["--arch", SPEC, "--kwargs", KW_JSON], "embed": ["--kinds", "cka"], "similar": ["--by", "cka"],
    "record": ["--value", "0.9"],
}
# a new model's spec (similar --arch …) must not reuse a zoo model's name
VALID_WITH: dict[tuple[str, str], dict[str, str]] = {
    ("similar", p): {"model": "new-query"} for p in ("arch", "checkpoint", "kwargs")}
FACADE = {"record": "record_result", "results": "results"}  # verbs over facade methods another helper adds
INPUT_FILES = {"checkpoint", "weights_a", "weights_b", "task2vec_probe_checkpoint"}
DATA_SPECS = {"data", "source"}
ZOO_NAMES = {("similar", "model"), ("select", "dataset"), ("remove", "name"), ("record", "model"),
             ("record", "dataset"), ("add-model", "trained_on"), ("configure", "probe_dataset"),
             ("embed", "model"), ("embed", "dataset")}
NEW_NAMES = {("add-model", "name"), ("add-dataset", "name")}
SKIP_VERBS: set[str] = set()  # every verb, including ones added later (they join the sweep by themselves)
MUTATING = {"init", "add-model", "add-dataset", "remove", "configure", "embed", "check", "record"}


@dataclass(frozen=True)
class Case:
    verb: tuple[str, ...]
    param: str
    opt: str | None  # None: a positional argument
    label: str
    value: str
    must_fail: bool

    @property
    def id(self) -> str:
        return f"{' '.join(self.verb)}:{self.opt or self.param}:{self.label}"


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(app)
    out = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, (*path, name))
        else:
            out.append((path, cmd))

    walk(root, ())
    return out


def _kind(p: Any) -> str:
    ann = p.type_descriptor.annotation
    return {int: "int", float: "float", bool: "bool", Path: "path"}.get(ann, "text")


def _bad_values(verb: str, p: Any) -> list[tuple[str, str, bool]]:
    """(label, value, must_fail) generated from the parameter's type and role."""
    kind, name = _kind(p), p.name
    if kind == "bool":
        return []
    bounded = getattr(p, "min", None) is not None
    if kind == "int":
        return [("word", "abc", True), ("empty", "", True), ("float", "1.5", True),
                ("negative", "-7", bounded), ("huge", "9" * 30, getattr(p, "max", None) is not None),
                ("zero", "0", bounded and p.min > 0)]
    if kind == "float":
        return [("word", "abc", True), ("empty", "", True), ("nan", "nan", False), ("inf", "inf", False),
                ("negative", "-1e9", bounded)]
    vals: list[tuple[str, str, bool]] = []
    zoo_name = (verb, name) in ZOO_NAMES
    new_name = (verb, name) in NEW_NAMES
    hostile = zoo_name or new_name
    vals += [("empty", "", hostile), ("dotdot", "../x", hostile), ("markup", "zooscope[ray]-ü名\tb", hostile)]
    if hostile or kind == "path" or name == "zoo":  # names and paths: also absolute and over-long ones
        vals += [("absolute", "/proc/zooscope-nonexistent/x", hostile), ("long", "x" * 300, hostile)]
    if any(s in name for s in ("kwargs", "metrics", "params")):
        vals += [("json-broken", "{bad", True), ("json-list", "[1, 2]", True)]
    if name in INPUT_FILES:
        vals += [("missing-file", "/nonexistent-zooscope/w.safetensors", True),
                 ("corrupt-safetensors", "{CORRUPT_ST}", True), ("pickle", "{PICKLE_PT}", True),
                 ("folder", "{FOLDER}", True)]
    if name in DATA_SPECS:
        vals += [("missing-data", "/nonexistent-zooscope/d.npz", True), ("corrupt-npz", "{CORRUPT_NPZ}", True),
                 ("object-npy", "{OBJECT_NPY}", True), ("bad-header-npy", "{BADHEADER_NPY}", True),
                 ("corrupt-jpeg", "{JPEG_FOLDER}", True), ("empty-folder", "{EMPTY_FOLDER}", True)]
    if name == "device":
        vals += [("banana", "banana", True), ("no-gpu", "cuda", not _has_cuda()), ("gpu-99", "cuda:99", True)]
    if name in ("plot", "out"):
        vals += [("suffix", "x.xyz", True), ("no-suffix", "{OUTDIR}/noext", True), ("folder", "{FOLDER}", True)]
    if name == "zoo":
        vals += [("no-zoo", "{FRESH_FOLDER}", verb != "init"), ("zoo-is-file", "{CORRUPT_NPZ}", True)]
    if name == "fmt":
        vals += [("xml", "xml", True)]
    return vals


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cases() -> list[Case]:
    cases = []
    for path, cmd in _commands():
        verb = " ".join(path)
        if path[0] in SKIP_VERBS:
            continue
        for p in cmd.params:
            if p.name == "help":
                continue
            opt = p.opts[0] if p.opts and p.opts[0].startswith("-") else None
            for label, value, must in _bad_values(verb, p):
                cases.append(Case(path, p.name, opt, label, value, must))
    return cases


CASES = _cases()


@pytest.fixture(scope="module", autouse=True)
def _build_the_command_tree_once():
    """typer's CliRunner rebuilds click's command tree on every call; the app does not change here."""
    import typer.testing

    cmd = typer.main.get_command(app)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", lambda _app: cmd)
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The zoo every case copies, and the corrupt files the generated values point to."""
    import torch

    d = tmp_path_factory.mktemp("bad")
    make_zoo(d / "zoo", n=2, copy=False, embed=True)
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (d / "badheader.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xffnot a header at all")
    (d / "corrupt.safetensors").write_bytes(b"\xff" * 64)
    torch.save({"weights": torch.zeros(2), "obj": Path("x")}, d / "pickle.pt")
    jpeg = d / "jpegs"
    for cls in ("a", "b"):
        (jpeg / cls).mkdir(parents=True)
        (jpeg / cls / "0.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20)  # truncated
    (d / "empty").mkdir()
    (d / "folder").mkdir()
    (d / "outdir").mkdir()
    return {"ZOO": d / "zoo", "CORRUPT_NPZ": d / "corrupt.npz", "OBJECT_NPY": d / "objects.npy",
            "BADHEADER_NPY": d / "badheader.npy", "CORRUPT_ST": d / "corrupt.safetensors",
            "PICKLE_PT": d / "pickle.pt", "JPEG_FOLDER": jpeg, "EMPTY_FOLDER": d / "empty", "FOLDER": d / "folder",
            "OUTDIR": d / "outdir"}


def _argv(case: Case, files: dict[str, Path], zoo: Path) -> tuple[list[str], str]:
    value = case.value
    for key, path in files.items():
        value = value.replace("{" + key + "}", str(path))
    verb = case.verb[0]
    _, cmd = next((p, c) for p, c in _commands() if p == case.verb)
    args: list[str] = []
    for p in cmd.params:
        if p.name == case.param or p.opts[0].startswith("-"):
            continue
        valid = (VALID_WITH.get((verb, case.param), {}).get(p.name) or VALID_BY_VERB.get(verb, {}).get(p.name)
                 or VALID.get(p.name, "x"))
        args += [valid, valid] if p.nargs == -1 else [valid]  # a variadic argument (compare's models) gets two
    if case.opt is None:  # the bad value replaces the positional argument at its place
        positional = [p.name for p in cmd.params if not p.opts[0].startswith("-")]
        args.insert(positional.index(case.param), value)
    for p in cmd.params:
        if p.opts[0].startswith("-") and p.required and p.name != case.param:
            args += [p.opts[0], VALID.get(p.name, "x")]
    cheap = list(CHEAP.get(verb, []))
    if case.opt in cheap:
        i = cheap.index(case.opt)
        del cheap[i:i + 2]
    args += cheap
    if case.opt is not None:
        args += [case.opt, value]
    if case.param != "zoo" and any(p.name == "zoo" for p in cmd.params):
        args += ["--zoo", str(zoo)]
    return [*case.verb, *args], value


def _names_the_input(message: str, case: Case, value: str) -> bool:
    tokens = [t for t in (case.opt, value, value[:60], Path(value).name if value else "", repr(value)[1:-1],
                          str(Path(value))) if t]
    if case.opt is None:
        tokens.append(case.param)
    return any(t in message for t in tokens)


def _check(case: Case, exit_code: int, stdout: str, stderr: str, value: str) -> None:
    assert "Traceback" not in stdout + stderr, stderr
    allowed = {0, 2} | ({1} if case.verb[0] in ("check", "embed") else set())
    assert exit_code in allowed, f"exit {exit_code}: {stderr}"
    if case.must_fail:
        assert exit_code == 2, f"accepted a bad value (exit {exit_code}): {stderr}"
    if exit_code == 2:  # progress and notes may precede it; the error itself is one line
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, stderr
        if case.must_fail:  # bad by construction: the message must say which input
            assert _names_the_input(errors[0], case, value), errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_value_gives_one_line_and_exit_2(case, files, tmp_path, monkeypatch):
    _skip_without_facade(case)
    work = tmp_path / "a" / "b"  # '../x' lands inside tmp_path
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    zoo = files["ZOO"]
    if case.verb[0] in MUTATING:  # verbs that may write get their own copy; queries share the zoo
        zoo = tmp_path / "zoo"
        shutil.copytree(files["ZOO"], zoo)
    (tmp_path / "fresh").mkdir()
    argv, value = _argv(case, {**files, "FRESH_FOLDER": tmp_path / "fresh"}, zoo)
    result = runner.invoke(app, argv)
    _check(case, result.exit_code, result.stdout, result.stderr, value)


def _skip_without_facade(case: Case) -> None:
    from zooscope.zoo.zoo import Zoo

    method = FACADE.get(case.verb[0])
    if method and not hasattr(Zoo, method):
        pytest.skip(f"Zoo.{method} is not in this tree yet (added by the selection work); "
                    f"`zooscope {case.verb[0]}` calls it")


def test_the_sweep_covers_every_verb():
    verbs = {c.verb for c in CASES}
    expected = {p for p, _ in _commands() if p[0] not in SKIP_VERBS}
    assert verbs == expected
    assert len(CASES) > 400


SUBPROCESS = ["similar:model:markup", "compare:--device:banana", "add-dataset:--source:corrupt-jpeg"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_value_in_a_real_process(case_id, files, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    zoo = tmp_path / "zoo"
    shutil.copytree(files["ZOO"], zoo)
    argv, value = _argv(case, {**files, "FRESH_FOLDER": tmp_path / "fresh"}, zoo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get(
        "PYTHONPATH", "")]), "COLUMNS": "60"}
    proc = subprocess.run([sys.executable, "-m", "zooscope.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    _check(case, proc.returncode, proc.stdout, proc.stderr, value)
    assert proc.returncode == 2
    if case.label == "markup":  # brackets are text, not Rich markup
        assert "zooscope[ray]" in proc.stderr


def test_kw_matches_the_zoo_helpers():
    import json

    assert json.loads(KW_JSON) == KW
