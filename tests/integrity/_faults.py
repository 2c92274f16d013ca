"""Real damage for the integrity tests and `benchmarks/faults.py`: bit flips, broken catalogs, CLI runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes (what 'nothing removed or changed' compares;
    SQLite's -wal/-shm working files, which a read-only open may create, are left out)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.name.endswith(("-wal", "-shm")):  # SQLite's own working files
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def flip_bit(path: Path, offset: int | None = None, bit: int = 0) -> int:
    """Flip one bit of a file in place (default: in the middle of its data); returns the byte offset."""
    data = bytearray(Path(path).read_bytes())
    offset = len(data) - 1 - len(data) // 3 if offset is None else offset
    data[offset] ^= 1 << bit
    Path(path).write_bytes(bytes(data))
    return offset


def damage_catalog(root: Path, how: str) -> None:
    """Really damage ``root/catalog.sqlite``: zero (0 bytes), truncated (first half), garbage (random bytes),
    scrambled (SQLite header kept, pages random), missing (deleted, the marker stays)."""
    cat = root / "catalog.sqlite"
    size = cat.stat().st_size
    rng = __import__("random").Random(13)
    if how == "zero":
        cat.write_bytes(b"")
    elif how == "truncated":
        cat.write_bytes(cat.read_bytes()[: size // 2])
    elif how == "garbage":
        cat.write_bytes(bytes(rng.randrange(256) for _ in range(size)))
    elif how == "scrambled":
        head = cat.read_bytes()[:100]
        cat.write_bytes(head + bytes(rng.randrange(256) for _ in range(size - 100)))
    elif how == "missing":
        cat.unlink()
    else:  # pragma: no cover
        raise ValueError(how)
    for extra in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (root / extra).unlink(missing_ok=True)


def cli(*args: object, env: dict | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process (CliRunner): (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from zooscope.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
