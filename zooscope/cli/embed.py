"""`zooscope embed`: embed every (model | dataset, kind) pair not yet embedded; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._common import open_zoo
from zooscope.cli._errors import EXIT_FOUND, Interrupted, say
from zooscope.cli._interrupt import on_abandon
from zooscope.cli._options import FormatOpt, ZooOpt
from zooscope.cli._output import emit

app = typer.Typer()


def n_saved(z: Any) -> int:
    """Embedding rows committed to the catalog (what a rerun will not redo)."""
    return len(z.catalog.embeddings())


def _failed_subjects(z: Any, kinds: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(kinds, models, datasets) of the recorded failures among ``kinds``."""
    f = z.failures()
    f = f[f["kind"].isin(kinds)] if len(f) else f
    models = sorted({m for m in f.get("model", []) if isinstance(m, str)})
    datasets = sorted({d for d in f.get("dataset", []) if isinstance(d, str)})
    return sorted(set(f.get("kind", []))), models, datasets


@app.command("embed")
def embed_cmd(
    zoo: ZooOpt,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated embedding kinds: cka, task2vec, gradsketch, fisher.")
    ] = "task2vec,cka,fisher",
    pairs: Annotated[list[str] | None, typer.Option(
        help="(model, dataset) pairs of --kinds fisher: trained-on (default), all, or MODEL:DATASET; repeat or "
             "comma-separate. Adds fisher to --kinds.")] = None,
    backend: Annotated[str, typer.Option(help="local (one process) or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --backend ray): auto, or "
                                                "ray://host:10001; default: a local cluster.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray: at most N tasks at once (and the CPUs of "
                                                "a local cluster).")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Ray: extra attempts for a failing pair before it is "
                                         "recorded as failed.")] = 2,
    model: Annotated[list[str] | None, typer.Option(help="Only this model; repeat for several.")] = None,
    dataset: Annotated[list[str] | None, typer.Option(help="Only this dataset; repeat for several.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Only retry the pairs listed by "
                                               "`zooscope ls --failed`.")] = False,
    fmt: FormatOpt = "table",
    out: Annotated[Path | None, typer.Option(help="Write the per-pair report to .csv/.json/.parquet.")] = None,
) -> None:
    """Embed the zoo's models and datasets and rebuild the FAISS indices.

    Finished pairs are recorded as they complete: Ctrl-C (or a crash) and rerun continues where it stopped.
    Failures are recorded and listed by `zooscope ls --failed`; exits 1 when a pair failed.

    Several `zooscope embed` on one zoo split the pairs (claims in the catalog); with --backend ray this process
    stays the only catalog writer and the tasks run on the cluster.

    Example: zooscope embed --kinds cka,task2vec --zoo ./zoo
    Example: zooscope embed --kinds fisher --pairs trained-on --pairs cnn0:svhn --zoo ./zoo
    Example: zooscope embed --backend ray --address auto --zoo postgresql://db/zoo --storage /shared/zoo
    """
    from zooscope._validation import check_choice

    check_choice(backend, ("local", "ray"), "--backend", "zooscope embed")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    if not kind_list:
        raise ZooscopeInputError(f"--kinds must name at least one kind, e.g. cka,task2vec; got {kinds!r}.")
    pair_items = [p.strip() for item in (pairs or []) for p in item.split(",") if p.strip()] or None
    if pair_items and "fisher" not in kind_list:
        kind_list.append("fisher")
    z = open_zoo(zoo)
    models, datasets = (list(model) if model else None), (list(dataset) if dataset else None)
    if retry_failed:  # a failed pair is not done, so embedding just the failed subjects retries exactly those
        kind_list, fmodels, fdatasets = _failed_subjects(z, kind_list)
        if not kind_list:
            say("no failed pairs to retry")
            return
        f = z.failures()
        pair_items = [f"{r.model}:{r.dataset}" for r in f.itertuples() if r.kind == "fisher"
                      and isinstance(r.model, str) and isinstance(r.dataset, str)] or pair_items
        models = [m for m in fmodels if models is None or m in models]
        datasets = [d for d in fdatasets if datasets is None or d in datasets]
        say(f"retrying {len(models)} models and {len(datasets)} datasets that failed ({', '.join(kind_list)})")
    before = n_saved(z)
    on_abandon(lambda: f"interrupted: {max(n_saved(z) - before, 0)} pairs saved, rerun to continue")
    try:
        summary = z.embed(kinds=tuple(kind_list), backend=backend, models=models, datasets=datasets,
                          progress=True, address=address, workers=workers, retries=retries, pairs=pair_items)
    except KeyboardInterrupt:
        try:
            saved = max(n_saved(z) - before, 0)
        except Exception:
            raise Interrupted("interrupted: rerun to continue") from None
        raise Interrupted(f"interrupted: {saved} pairs saved, rerun to continue") from None
    if summary is None or not len(summary):
        say("nothing to embed")
        return
    summary = pd.DataFrame(summary)
    orphans = summary.loc[summary["status"] == "skipped (no registered training set)", "model"].tolist()
    if orphans:  # one line, whatever their number
        shown = ", ".join(orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
        say(f"no default fisher pair for {len(orphans)} models without a registered training set ({shown}); "
            "record it (add-model --trained-on) or name pairs with --pairs MODEL:DATASET")
    if out is not None or fmt != "table":
        emit(summary, fmt, out, title="embedding run")
    else:
        counts = summary.groupby(["kind", "status"]).size().unstack(fill_value=0).reset_index()
        counts.columns.name = None
        emit(counts, fmt, title="embedding run (pairs)")
    failed = summary[summary["status"] == "failed"] if "status" in summary else summary.iloc[:0]
    if len(failed):
        first = failed.iloc[0]
        who = first.get("model") if isinstance(first.get("model"), str) else first.get("dataset")
        attempted = int((~summary["status"].astype(str).str.startswith("skipped")).sum())
        say(f"{len(failed)} of {attempted} pairs failed (first: {first['kind']} of {who}: {first.get('error')}); "
            "see `zooscope ls --failed`, fix the cause, then `zooscope embed --retry-failed`")
        raise typer.Exit(code=EXIT_FOUND)
