#!/usr/bin/env python
"""Keep the best model of each near-duplicate group; remove the others (story 4).

Uses only the public ``zooscope`` API: ``Zoo.duplicates`` finds the groups (connected components of
"similarity >= --threshold", by CKA signatures by default), and each member is scored by

* ``--metric NAME`` (default ``accuracy``): the mean of the fine-tuning results recorded for it with that metric
  (``zooscope record`` / ``Zoo.record_result``), when any member of the group has one;
* else its ``add_model(metrics={NAME: …})`` value.

The member with the highest score is kept (ties: the first name in alphabetical order); a group with no score for
any member is left alone (nothing says which to keep). ``--dry-run`` prints the plan and writes nothing.

Usage::

    python scripts/curate_keep_best.py --zoo ./zoo --threshold 0.995 --metric accuracy --dry-run
    python scripts/curate_keep_best.py --zoo ./zoo          # removes the others (their vectors and index entries)
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

import zooscope as zs


def scores(zoo: zs.Zoo, metric: str) -> tuple[dict[str, float], dict[str, float]]:
    """(mean recorded result per model, add_model metric per model) for ``metric``."""
    res = zoo.results()
    recorded = res[res["metric"] == metric].groupby("model")["value"].mean().to_dict() if len(res) else {}
    given = {}
    for name, metrics in zip(zoo.models()["name"], zoo.models()["metrics"], strict=True):
        value = (metrics or {}).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            given[name] = float(value)
    return recorded, given


def plan(zoo: zs.Zoo, threshold: float, by: str, metric: str) -> pd.DataFrame:
    """One row per member of every duplicate group: group, model, score, source, action (keep/remove/leave)."""
    recorded, given = scores(zoo, metric)
    rows = []
    for group, members in zoo.duplicates(threshold=threshold, by=by).groupby("group"):
        names = sorted(members["model"])
        source = "recorded results" if any(n in recorded for n in names) else "add_model metrics"
        table = recorded if source == "recorded results" else given
        scored = [n for n in names if n in table]
        best = min(scored, key=lambda n: (-table[n], n)) if scored else None
        for n in names:
            action = "leave" if best is None else ("keep" if n == best else "remove")
            rows.append({"group": int(group), "model": n, "score": table.get(n, float("nan")),
                         "source": source if n in table else "none", "action": action})
    return pd.DataFrame(rows, columns=["group", "model", "score", "source", "action"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True, help="the zoo folder (or catalog URL)")
    ap.add_argument("--threshold", type=float, default=0.995, help="similarity that makes two models duplicates")
    ap.add_argument("--by", default="cka", help="similarity: cka (default), task2vec or gradsketch")
    ap.add_argument("--metric", default="accuracy", help="recorded-result metric (else add_model metric) to rank by")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = ap.parse_args(argv)
    zoo = zs.Zoo.open(args.zoo)
    todo = plan(zoo, args.threshold, args.by, args.metric)
    if todo.empty:
        print("no duplicate groups")
        return 0
    print(todo.to_string(index=False))
    for group in sorted(set(todo.loc[todo["action"] == "leave", "group"])):
        print(f"group {group}: no member has a {args.metric!r} score; left alone")
    gone = list(todo.loc[todo["action"] == "remove", "model"])
    if args.dry_run:
        print(f"dry run: would remove {len(gone)} model(s)")
        return 0
    for name in gone:
        zoo.remove_model(name)
    print(f"removed {len(gone)} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
