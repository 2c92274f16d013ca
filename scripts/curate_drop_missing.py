#!/usr/bin/env python
"""Remove the models whose checkpoint file is gone (story 4).

Uses only the public ``zooscope`` API: ``Zoo.models`` lists each model's recorded checkpoint path; a model whose
file no longer exists is removed with ``Zoo.remove_model`` (its catalog row, vectors and index entries). Models
registered without a checkpoint (a factory's own weights) are kept. ``--dry-run`` prints the list and writes
nothing.

Usage::

    python scripts/curate_drop_missing.py --zoo ./zoo --dry-run
    python scripts/curate_drop_missing.py --zoo ./zoo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zooscope as zs


def missing(zoo: zs.Zoo) -> list[tuple[str, str]]:
    """(model, checkpoint path) of every model whose recorded checkpoint file does not exist."""
    models = zoo.models()
    return [(name, ckpt) for name, ckpt in zip(models["name"], models["checkpoint"], strict=True)
            if isinstance(ckpt, str) and ckpt and not Path(ckpt).is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True, help="the zoo folder (or catalog URL)")
    ap.add_argument("--dry-run", action="store_true", help="print the models, change nothing")
    args = ap.parse_args(argv)
    zoo = zs.Zoo.open(args.zoo)
    gone = missing(zoo)
    for name, ckpt in gone:
        print(f"{name}\tcheckpoint missing: {ckpt}")
    if args.dry_run:
        print(f"dry run: would remove {len(gone)} model(s)")
        return 0
    for name, _ in gone:
        zoo.remove_model(name)
    print(f"removed {len(gone)} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
