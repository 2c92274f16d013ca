"""Story 5 of shared/USER_STORIES.md ("Embed 50,000 checkpoints by Friday"), small: the same verbs on a Ray
backend (a local Ray started by the run, two workers), a failed pair listed by ``zooscope ls --failed`` and
retried once its cause is fixed. Runs only where Ray is importable.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from test_stories import ARCH, KWJ, cli, image_folder, read_csv, timm_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="Ray is not installed (pip install 'zooscope[ray]'): story 5 runs on a Ray backend"),
]


def test_story5_embed_on_ray_and_list_the_failures(tmp_path):
    zoo = tmp_path / "shared_zoo"
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for i in range(3):
        timm_checkpoint(ckpts / f"ckpt-{i:04d}.safetensors", i)
    image_folder(tmp_path / "probe_images", seed=1)
    cli("init", "--zoo", zoo)
    cli("add-dataset", "probe-224", "--source", tmp_path / "probe_images", "--zoo", zoo)
    for f in sorted(ckpts.glob("*.safetensors")):
        cli("add-model", f.stem, "--arch", ARCH, "--kwargs", KWJ, "--checkpoint", f, "--zoo", zoo)
    # one checkpoint goes bad after it was added (a truncated copy on shared storage): its pair fails
    bad = ckpts / "ckpt-0002.safetensors"
    shutil.copy(bad, tmp_path / "ckpt-0002.good")
    bad.write_bytes(bad.read_bytes()[:100])

    run = cli("embed", "--kinds", "cka", "--backend", "ray", "--workers", 2, "--zoo", zoo, check=1)
    assert "ls --failed" in run.stderr
    failed = read_csv(cli("ls", "--failed", "--zoo", zoo, "--format", "csv").stdout)
    assert [(r["kind"], r["model"]) for r in failed] == [("cka", "ckpt-0002")]
    assert failed[0]["error"] and "\n" not in failed[0]["error"]
    embedded = read_csv(cli("ls", "embeddings", "--zoo", zoo, "--format", "csv").stdout)
    assert sorted(r["model"] for r in embedded) == ["ckpt-0000", "ckpt-0001"]

    shutil.copy(tmp_path / "ckpt-0002.good", bad)  # the cause fixed: only the failed pair is retried
    cli("embed", "--kinds", "cka", "--backend", "ray", "--workers", 2, "--retry-failed", "--zoo", zoo)
    assert read_csv(cli("ls", "--failed", "--zoo", zoo, "--format", "csv").stdout) == []
    rows = read_csv(cli("similar", "ckpt-0000", "--k", 2, "--zoo", zoo, "--format", "csv").stdout)
    assert sorted(r["model"] for r in rows) == ["ckpt-0001", "ckpt-0002"]
