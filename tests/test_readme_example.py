"""The README's first Python block runs as written (issue 22: it used names it never defined)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def first_python_block() -> str:
    """The text of README.md's first fenced ``python`` block."""
    m = re.search(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert m, "README.md has no ```python block"
    return m.group(1)


def test_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the block writes a.safetensors and ./zoo where it runs
    code = first_python_block()
    scope: dict = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), scope)  # the project's own README
    assert scope["table"].shape[0] > 0 and scope["table"].shape[1] > 0
    assert len(scope["long"]) > 0
    zoo = scope["zoo"]
    assert "cnn-a" in set(zoo.models()["name"])
    assert (tmp_path / "a.safetensors").is_file()
