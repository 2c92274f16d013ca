"""The tree's shape: no module of zooscope/ grows past 500 lines (split it by job instead)."""

from pathlib import Path

import zooscope

MAX_LINES = 500
ROOT = Path(zooscope.__file__).parent


def _line_counts() -> dict[str, int]:
    return {str(p.relative_to(ROOT.parent)): len(p.read_text(encoding="utf-8").splitlines())
            for p in sorted(ROOT.rglob("*.py"))}


def test_the_package_is_found():
    counts = _line_counts()
    assert "zooscope/__init__.py" in counts and len(counts) > 20


def test_no_module_over_500_lines():
    too_long = {path: n for path, n in _line_counts().items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by job): {too_long}"
