"""`zooscope report` / `Zoo.report`: one self-contained, escaped HTML page, read-only on the zoo."""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import stat
from pathlib import Path

import pytest
from conftest import HOSTILE
from typer.testing import CliRunner

from zooscope.cli import app

runner = CliRunner()


def _files(root: Path) -> dict[str, str]:
    """sha256 of every zoo file except the deletable cache and SQLite's WAL side files."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and "cache" not in p.relative_to(root).parts and not p.name.endswith(("-wal", "-shm"))}


def test_every_section_is_present_with_its_data(report_zoo, report_file):
    text = report_file.read_text()
    for sid in ("summary", "models", "map", "dupes", "datasets", "results", "bench"):
        assert f'<section id="{sid}">' in text
    for name in report_zoo.models()["name"]:
        assert html.escape(name, quote=True) in text
    assert "cka: 5, task2vec: 2" in text  # embeddings per kind
    assert "OK: catalog, vectors, indices and checkpoints agree" in text
    assert "<td>cnn0</td><td>cnn0-copy</td>" not in text  # one name per cell
    assert re.search(r'id="dupes-table".*cnn0-copy', text, re.S)  # the planted byte-identical copy
    assert "digits-0to4" in text and 'id="results-table-0"' in text
    assert 'id="bench-summary"' in text and "logme" in text
    n_points = len(re.findall(r'<g id="zs-pt-\d+" class="pt"><title>', text))
    assert n_points == len(report_zoo.models())  # every model titled on the map


def test_parameters_are_counted_from_the_checkpoint(report_zoo, report_file):
    from safetensors.torch import load_file

    m = report_zoo.models().iloc[0]
    n = sum(t.numel() for t in load_file(m["checkpoint"]).values())  # every stored tensor, buffers included
    assert f'<td data-sort="{float(n)!r}">{n:,}</td>' in report_file.read_text()


def test_hostile_names_are_escaped_everywhere(report_file):
    text = report_file.read_text()
    assert HOSTILE not in text
    assert "<img src=x" not in text and "<b>bold" not in text
    assert html.escape(HOSTILE, quote=True) in text


def test_the_page_is_self_contained(report_file):
    text = report_file.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text, re.I)  # nothing fetched
    assert "url(http" not in text and "@import" not in text
    assert "default-src 'none'" in text  # and the browser is told to refuse any request
    scripts = re.findall(r"<script[^>]*>", text)
    assert scripts == ["<script>"]  # one inline script, no src
    assert len(text.encode()) < 2_000_000


def test_the_report_reads_only(report_zoo, tmp_path):
    before = _files(report_zoo.root)
    report_zoo.report(tmp_path / "again.html")
    assert _files(report_zoo.root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["again.html"]  # no temp file left


def test_a_read_only_zoo_gets_its_report(report_zoo, tmp_path):
    import shutil

    from zooscope import Zoo

    ro = tmp_path / "ro"
    shutil.copytree(report_zoo.root, ro)
    for p in [ro, *ro.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        zoo = Zoo.open(ro)
        assert not zoo.writable
        out = zoo.report(tmp_path / "ro.html")
        assert "cnn0-copy" in out.read_text()
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_an_empty_zoo_reports_what_is_missing(tmp_path):
    from zooscope import Zoo

    text = Zoo.create(tmp_path / "empty").report(tmp_path / "e.html").read_text()
    assert "Models (0)" in text
    assert "No cka similarity" in text  # the map section says why there is no map
    assert "No fine-tuning results recorded" in text
    assert "No selection benchmark kept" in text


def test_cli_writes_the_page_by_task2vec(report_zoo, tmp_path):
    out = tmp_path / "t.html"
    r = runner.invoke(app, ["report", "--zoo", str(report_zoo.root), "--out", str(out), "--by", "task2vec"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    assert "zoo map by task2vec" in out.read_text()


@pytest.mark.parametrize(("args", "expected"), [
    (["--by", "Fisher"], "available kinds: cka, task2vec, gradsketch, fisher"),
    (["--by", "nope"], "available kinds: cka, task2vec, gradsketch, fisher"),
    (["--out", "zoo.csv"], "give a .html path"),
])
def test_cli_refuses_bad_options_in_one_line(report_zoo, tmp_path, args, expected):
    r = runner.invoke(app, ["report", "--zoo", str(report_zoo.root), *args])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]
    assert not (tmp_path / "zoo.csv").exists()


def test_task_distances_is_the_pairwise_d_sym(report_zoo):
    from zooscope.embed.task2vec import task_distance
    from zooscope.zoo import curate

    D = curate.task_distances(report_zoo)
    assert list(D.index) == list(D.columns) == ["digits", "digits-0to4"]
    ctx = report_zoo.curate_context()
    v = {r.dataset: ctx.vectors.read64(r) for r in ctx.vectors.current_rows("task2vec")}
    assert D.loc["digits", "digits-0to4"] == pytest.approx(task_distance(v["digits"], v["digits-0to4"]), abs=1e-12)
    assert D.loc["digits-0to4", "digits"] == pytest.approx(D.loc["digits", "digits-0to4"], abs=1e-12)
    assert D.loc["digits", "digits"] == 0.0 and D.loc["digits", "digits-0to4"] > 0


def test_cluster_order_makes_planted_groups_contiguous(rng):
    import numpy as np
    import pandas as pd

    from zooscope.report import _cluster_order

    groups = np.repeat([0, 1, 2], 5)
    S = np.where(groups[:, None] == groups[None], 0.9, 0.1) + 0.01 * rng.random((15, 15))
    S = (S + S.T) / 2
    np.fill_diagonal(S, 1.0)
    perm = rng.permutation(15)
    names = [f"g{g}-{i}" for i, g in enumerate(groups)]
    shuffled = pd.DataFrame(S[np.ix_(perm, perm)], index=[names[i] for i in perm], columns=[names[i] for i in perm])
    ordered = _cluster_order(shuffled)
    assert list(ordered.index) == list(ordered.columns)
    labels = [n.split("-")[0] for n in ordered.index]
    assert sum(a != b for a, b in itertools.pairwise(labels)) == 2  # three blocks, two boundaries
    assert ordered.loc[names[0], names[1]] == shuffled.loc[names[0], names[1]]  # values move with their names
