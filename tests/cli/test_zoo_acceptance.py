"""Issue 12's acceptance, through the CLI (one subprocess a verb):

* a read-only zoo (``chmod -R a-w``, used by a non-root user) answers ``ls``, ``similar``, ``select``, ``check`` and
  ``curate`` with no write and no traceback;
* after deleting a vector file, flipping a byte of a checkpoint and corrupting an index, ``check --fix`` then
  ``embed`` give a consistent zoo whose ``similar`` answers equal those of a zoo built fresh from the same inputs;
  meanwhile a query about the changed model refuses, naming the fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

ARCH = "timm:resnet10t"
KW = {"num_classes": 2}
NOBODY = 65534


def cli(*args, check: int | None = 0, as_nobody: bool = False, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200", **(env or {}))
    cmd = [sys.executable, "-m", "zooscope.cli", *map(str, args)]
    if as_nobody:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600, cwd=cwd)
    if check is not None:
        assert proc.returncode == check, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def make_inputs(root: Path) -> dict[str, Path]:
    """Three resnet10t checkpoints (m1 a near copy of m0), a 48-image probe folder and a labelled .npz."""
    from PIL import Image

    from zooscope.nets.models import build_model, save_checkpoint

    rng = np.random.default_rng(0)
    probe = root / "probe"
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    for i in range(48):  # gratings, not flat colours: on those every random-init net looks alike (CKA > 0.998)
        d = probe / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(1 + 3 * (i % 2), 3 + 3 * (i % 2), size=2)
        wave = np.stack([np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p) for p in rng.uniform(0, 6.3, 3)], -1)
        img = np.clip(128 + 100 * wave + rng.normal(0, 20, wave.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:03d}.png")
    ckpts = {}
    for i, seed in enumerate((0, 0, 2)):
        torch.manual_seed(seed)
        net = build_model(ARCH, KW)
        if i == 1:
            with torch.no_grad():
                for p in net.parameters():
                    if p.dim() > 1:
                        p.add_(0.01 * p.std() * torch.randn_like(p))
        ckpts[f"m{i}"] = save_checkpoint(net, root / f"m{i}.safetensors") or root / f"m{i}.safetensors"
    y = np.arange(64) % 2
    x = (rng.normal(size=(64, 3, 32, 32)) + y[:, None, None, None]).astype(np.float32)
    np.savez(root / "task.npz", x=x, y=y)
    return {"probe": probe, "task": root / "task.npz", **{k: Path(v) for k, v in ckpts.items()}}


def build_zoo(path: Path, inputs: dict[str, Path]) -> None:
    """The zoo through the CLI: init, the probe dataset, three models, cka embeddings."""
    cli("init", "--zoo", path)
    cli("add-dataset", "probe", "--source", inputs["probe"], "--zoo", path)
    for name in ("m0", "m1", "m2"):
        cli("add-model", name, "--arch", ARCH, "--kwargs", json.dumps(KW), "--checkpoint", inputs[name],
            "--zoo", path)
    cli("embed", "--kinds", "cka", "--zoo", path)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A world-readable folder (pytest's tmp folders are 0700: another user could not read them)."""
    base = Path(tempfile.mkdtemp(prefix="zooscope-accept-", dir="/tmp"))
    base.chmod(0o755)
    inputs = make_inputs(base)
    yield base, inputs
    for p in [base, *base.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run the CLI as another (non-root) user")
def test_read_only_zoo_answers_queries_without_writing(world):
    base, inputs = world
    zoo = base / "ro_zoo"
    build_zoo(zoo, inputs)
    cli("add-dataset", "task", "--source", inputs["task"], "--zoo", zoo)
    for p in [*base.rglob("*"), base]:  # everything readable by others; the zoo read-only for everyone
        p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))
    subprocess.run(["chmod", "-R", "a-w", str(zoo)], check=True)
    home = Path(tempfile.mkdtemp(prefix="zooscope-nobody-", dir="/tmp"))
    os.chown(home, NOBODY, NOBODY)
    before = snapshot(zoo)
    env = {"HOME": str(home), "ZOOSCOPE_CACHE": str(home / "cache")}
    try:
        ls = rows(cli("ls", "models", "--zoo", zoo, "--format", "csv", as_nobody=True, env=env, cwd=home).stdout)
        assert sorted(r["name"] for r in ls) == ["m0", "m1", "m2"]
        sim = rows(cli("similar", "m0", "--k", "2", "--zoo", zoo, "--format", "csv", as_nobody=True, env=env,
                       cwd=home).stdout)
        assert sim[0]["model"] == "m1"
        sel = rows(cli("select", "task", "--k", "3", "--zoo", zoo, "--format", "csv", as_nobody=True, env=env,
                       cwd=home).stdout)
        assert sorted(r["model"] for r in sel) == ["m0", "m1", "m2"] and all(r["why"] for r in sel)
        cli("check", "--zoo", zoo, as_nobody=True, env=env, cwd=home)
        dupes = cli("curate", "dupes", "--threshold", "0.99", "--zoo", zoo, "--format", "csv", as_nobody=True,
                    env=env, cwd=home).stdout
        assert "m0" in dupes and "m1" in dupes and "m2" not in dupes
        # a verb that writes says so in one line
        bad = cli("remove", "model", "m2", "--zoo", zoo, as_nobody=True, env=env, cwd=home, check=2)
        assert len(bad.stderr.strip().splitlines()) == 1 and "error:" in bad.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert snapshot(zoo) == before


@pytest.mark.slow
def test_check_fix_then_embed_restores_the_zoo_a_fresh_build_gives(world):
    base, inputs = world
    zoo = base / "hurt_zoo"
    build_zoo(zoo, inputs)
    # 1. delete a vector file, 2. flip a byte of a checkpoint (a weight: the file still loads), 3. corrupt the index
    vec = next(iter(sorted((zoo / "vectors" / "cka").glob("*.npy"))))
    vec.unlink()
    ckpt = inputs["m2"]
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0x10
    ckpt.write_bytes(bytes(data))
    index = next(iter(sorted((zoo / "indices").glob("*.faiss"))))
    index.write_bytes(b"not a faiss index" * 8)

    found = rows(cli("check", "--zoo", zoo, "--format", "csv", check=1).stdout)
    problems = {r["problem"] for r in found}
    assert {"missing vector", "checkpoint changed"} <= problems and problems & {"bad index", "stale index"}
    assert all(not r["detail"].endswith(("…", "...")) or (r["detail"].endswith("…") and "sha256" in r["detail"])
               for r in found)  # only the sha256 is abbreviated, never a message cut mid-word
    refused = cli("similar", "m2", "--zoo", zoo, check=2)
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and "check --fix" in err[0] and "zooscope embed" in err[0]

    cli("check", "--fix", "--zoo", zoo, check=None)
    cli("embed", "--kinds", "cka", "--zoo", zoo)
    assert rows(cli("check", "--zoo", zoo, "--format", "csv").stdout) == []

    fresh = base / "fresh_zoo"
    build_zoo(fresh, inputs)  # the same inputs, the flipped checkpoint included
    for name in ("m0", "m1", "m2"):
        got = rows(cli("similar", name, "--k", "2", "--zoo", zoo, "--format", "csv").stdout)
        want = rows(cli("similar", name, "--k", "2", "--zoo", fresh, "--format", "csv").stdout)
        assert [r["model"] for r in got] == [r["model"] for r in want], name
        np.testing.assert_allclose([float(r["score"]) for r in got], [float(r["score"]) for r in want],
                                   rtol=0, atol=1e-6)
