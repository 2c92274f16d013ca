"""`zooscope report`: the whole zoo as ONE self-contained, static HTML page.

The page is built from the zoo's public, read-only queries (``models``, ``datasets``, ``failures``, ``check``,
``settings``, ``results``, `zooscope.zoo.curate`, the kept `zooscope.zoo.kept.last_selection`) and
matplotlib figures: the zoo map is inline SVG (every point carries a ``<title>`` with the model's name), the
heat maps are SVG data URIs. A 30-line inline script sorts the tables on a header click. Nothing is fetched:
no CDN, no font, no network; a Content-Security-Policy (``default-src 'none'``, the script allowed by its
sha256) makes the browser refuse any request the page might try.

Names are data: every model, dataset, path or setting is HTML-escaped before it reaches the page (and ``$``
is escaped for matplotlib's mathtext), so a hostile name shows as text and never becomes markup.

Reads only: the one file written is the report itself (atomically, `zooscope._io.atomic_write`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError
from zooscope.report_html import _TICKS_MAX, _cluster_order, _figure, _img, esc, map_svg, matrix_figure, table

__all__ = ["KINDS", "build_report", "report_kinds", "write_report"]

log = logging.getLogger(__name__)

KINDS = ("cka", "task2vec", "gradsketch", "fisher")  # what the map can be drawn by, once the kind is registered
DUP_THRESHOLD = 0.995

_WHAT = {"cka": ("linear CKA of the models' penultimate-layer CKA signatures on the zoo's probe set", "models"),
         "gradsketch": ("gradient-sketch CKA of the models' penultimate layers on the zoo's probe set", "models"),
         "task2vec": ("1 − Task2Vec d_sym between the task vectors of the datasets the models were trained on",
                      "models with a task-embedded training set"),
         "fisher": ("Fisher-embedding similarity", "models")}


def report_kinds() -> list[str]:
    """Return the ``by`` values accepted now: `KINDS` that are registered embedding kinds."""
    from zooscope.embed._kinds import EMBEDDINGS

    have = set(EMBEDDINGS.available())
    return [k for k in KINDS if k in have]


def _check_by(by: str) -> None:
    kinds = report_kinds()
    if by not in kinds:
        extra = (" (no 'fisher' embedding kind exists in this zooscope yet)" if by == "fisher" else "")
        raise ZooscopeInputError(f"Cannot draw the report by {by!r}{extra}; available kinds: {', '.join(kinds)}.")


# -- small HTML helpers ---------------------------------------------------------------------------------------------
def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _try(what: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """``fn()``, or (None, a note) when the zoo cannot answer (not embedded yet, too few models)."""
    try:
        return fn(), None
    except ZooscopeInputError as e:
        return None, f"No {what}: {e}"


def _parameters(path: str | None, cache: dict[str, int | None]) -> int | None:
    """Parameter count from a safetensors header (shapes only; no tensor is read), None when unknown."""
    if not path:
        return None
    if path not in cache:
        cache[path] = None
        if path.endswith(".safetensors") and os.path.isfile(path):
            try:
                from safetensors import safe_open

                with safe_open(path, framework="numpy") as f:
                    cache[path] = int(sum(int(np.prod(f.get_slice(k).get_shape(), dtype=np.int64)) for k in f.keys()))
            except Exception as e:  # a damaged header: `check` reports it; here the count is unknown
                log.debug("cannot read the header of %s: %s", path, e)
    return cache[path]


def _metric(metrics: Any, *keys: str) -> Any:
    if isinstance(metrics, dict):
        for k in keys:
            if metrics.get(k) is not None:
                return metrics[k]
    return None


def _models_table(zoo: Any, embeddings: list[Any]) -> pd.DataFrame:
    models = zoo.models()
    kinds: dict[str, set[str]] = {}
    for r in embeddings:
        if r.model:
            kinds.setdefault(r.model, set()).add(r.kind)
    cache: dict[str, int | None] = {}
    rows = []
    for m in models.to_dict("records"):
        ckpt = m.get("checkpoint")
        sha = m.get("checkpoint_sha256") or ""
        params = _metric(m.get("metrics"), "parameters", "params", "n_params")
        rows.append({"name": m["name"], "arch": m.get("spec"), "trained on": m.get("trained_on") or "—",
                     "checkpoint": f"{sha[:12]} {Path(ckpt).name}" if ckpt else "— (random init)",
                     "parameters": params if params is not None else _parameters(ckpt, cache),
                     "FLOPs": _metric(m.get("metrics"), "flops", "FLOPs", "macs"),
                     "embedded": ", ".join(sorted(kinds.get(m["name"], ()))) or "—"})
    return pd.DataFrame(rows, columns=["name", "arch", "trained on", "checkpoint", "parameters", "FLOPs", "embedded"])


def _summary(zoo: Any, embeddings: list[Any], problems: pd.DataFrame | None, check_note: str | None,
             failures: pd.DataFrame) -> str:
    from zooscope._version import __version__

    per_kind = pd.Series([r.kind for r in embeddings], dtype=object).value_counts().sort_index()
    facts = [("zoo", str(getattr(zoo, "root", ""))), ("models", f"{len(zoo.models()):,}"),
             ("datasets", f"{len(zoo.datasets()):,}"),
             ("embeddings", ", ".join(f"{k}: {v:,}" for k, v in per_kind.items()) or "none yet"),
             ("failed pairs", f"{len(failures):,}" + (" (zooscope ls --failed)" if len(failures) else "")),
             ("check", check_note or ("OK: catalog, vectors, indices and checkpoints agree" if problems is not None
                                      and problems.empty else f"{len(problems)} problem(s), listed below")),
             ("zooscope", __version__),
             ("written", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    body = f'<dl class="facts">{dl}</dl>'
    if problems is not None and not problems.empty:
        body += table(problems, tid="check-table", caption="zooscope check: problems (zooscope check --fix repairs)")
    if len(failures):
        f = failures.copy()
        if "error" in f:
            f["error"] = [str(e).strip().splitlines()[0] if isinstance(e, str) and e.strip() else e for e in f["error"]]
        body += table(f, tid="failures-table", caption="failed embedding pairs")
    settings = json.dumps(zoo.settings(), indent=1, default=str, sort_keys=True)
    body += f"<details><summary>zoo settings</summary><pre>{esc(settings)}</pre></details>"
    return _section("summary", "Summary", body)


def _map_section(zoo: Any, by: str) -> str:
    from zooscope.zoo import curate

    what, subjects = _WHAT[by]
    S, note = _try(f"{by} similarity", lambda: curate.similarity_matrix(zoo, by))
    if note:
        return _section("map", "Zoo map and similarity", _note(note + " The map and heat map need it."))
    coords = curate.zoo_map(zoo, by=by)
    n = len(S)
    body = _figure(map_svg(coords, title=f"zoo map by {by}: distance = 1 − similarity"),
                   f"Zoo map: metric MDS (scikit-learn, seed 0) of the distance 1 − similarity, where similarity is "
                   f"{what}. Nearer points = more similar models; colour = training set. {n} {subjects}; hover a "
                   f"point for its name (at most 25 are labelled on the figure).")
    S = _cluster_order(S)
    fig = matrix_figure(S, title=f"model × model similarity by {by} (brighter = more similar)",
                        label=f"{by} similarity (higher = more similar)", axis="model", larger_is_more_similar=True,
                        vmin=0.0 if by != "task2vec" else None, vmax=1.0)
    body += _figure(_img(fig, f"model by model {by} similarity heat map"),
                    f"Model × model similarity: {what}; 1 on the diagonal, higher = more similar; blank where two "
                    f"models have no common probe set. {n} {subjects}, ordered by average-linkage clustering of "
                    "1 − similarity (scipy), so groups show as bright blocks"
                    + ("." if n <= _TICKS_MAX else " (too many to name on the axes: see the models table)."))
    return _section("map", "Zoo map and similarity", body)


def _dupes_section(zoo: Any, by: str) -> str:
    from zooscope.zoo import curate

    kind = by if by in ("cka", "gradsketch") else "cka"
    groups, note = _try(f"{kind} near-duplicate check", lambda: curate.duplicates(zoo, DUP_THRESHOLD, kind))
    if note:
        return _section("dupes", "Near-duplicate groups", _note(note))
    cap = (f"Groups of models whose {kind} similarity is ≥ {DUP_THRESHOLD} (connected components; "
           "min_similarity = the smallest similarity inside the group; higher = more alike).")
    body = _note("No near-duplicates.") if groups.empty else table(groups, tid="dupes-table", caption=cap)
    return _section("dupes", "Near-duplicate groups", body)


def _datasets_section(zoo: Any) -> str:
    from zooscope.zoo import curate

    ds = zoo.datasets()
    D = curate.task_distances(zoo)
    cols = ["name", "source", "size", "num_classes", "input_shape"]
    t = ds[cols].copy() if not ds.empty else pd.DataFrame(columns=cols)
    t["task2vec"] = [n in D.index for n in t["name"]]
    body = table(t, tid="datasets-table", caption="registered datasets (task2vec: a task vector is stored)")
    if len(D) >= 2:
        fig = matrix_figure(D, title="dataset × dataset Task2Vec distance d_sym (darker = more different)",
                            label="d_sym (lower = more similar)", axis="dataset", larger_is_more_similar=False,
                            vmin=0.0, vmax=max(float(np.nanmax(D.to_numpy())), 1e-6))
        body += _figure(_img(fig, "Task2Vec distance matrix of the datasets"),
                        f"Task2Vec distance d_sym between the task vectors (diagonal Fisher of the zoo's probe "
                        f"network) of {len(D)} datasets; 0 on the diagonal, lower = more similar tasks.")
    else:
        body += _note(f"No Task2Vec distance matrix: {len(D)} dataset(s) have a task vector (needs 2; "
                      "zooscope embed --kinds task2vec).")
    return _section("datasets", "Datasets", body)


def _results_section(zoo: Any) -> str:
    res = zoo.results()
    if res is None or len(res) == 0:
        return _section("results", "Recorded fine-tuning results",
                        _note("No fine-tuning results recorded (zooscope record MODEL DATASET --value …)."))
    body = ""
    for i, (metric, part) in enumerate(res.groupby("metric", sort=True)):
        M = part.pivot_table(index="model", columns="dataset", values="value", aggfunc="last")
        M.columns.name = None
        body += table(M, tid=f"results-table-{i}", index=True,
                      caption=f"{metric} after fine-tuning (rows: source model, columns: target dataset; "
                              "larger = better; — = not recorded)")
    return _section("results", "Recorded fine-tuning results", body)


def _bench_section(zoo: Any) -> str:
    from zooscope.zoo.kept import last_selection

    last = last_selection(zoo)
    if last is None:
        return _section("bench", "Model selection benchmark",
                        _note("No selection benchmark kept for this zoo (zooscope bench selection --truth FILE)."))
    head = _note(f"Last zooscope bench selection: truth {last['truth']}, metric {last['metric']}, "
                 f"run {last['created']}. tau_w = weighted Kendall τ between a method's scores and the fine-tuned "
                 "values (higher = better, 1 = same order); regret@k = best value − best among the top k "
                 "(lower = better).")
    return _section("bench", "Model selection benchmark",
                    head + table(last["summary"], tid="bench-summary", caption="mean over targets, per method")
                    + "<details><summary>per target</summary>"
                    + table(last["per_target"], tid="bench-per-target") + "</details>")


# -- the page -------------------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 16px 40px;color:#1b1b1b;background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
nav a{margin-right:12px}
.scroll{overflow-x:auto;max-width:100%}.scroll.tall{max-height:560px;overflow-y:auto}
.scroll.tall thead th{position:sticky;top:0;z-index:1}
table{border-collapse:collapse;margin:6px 0 14px;font-size:13px}
caption{caption-side:top;text-align:left;color:#555;padding:2px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td[data-sort]{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
figure{margin:10px 0 18px}figure img,figure svg{max-width:100%;height:auto;display:block}
figcaption{color:#444;font-size:13px;max-width:900px}
.note{color:#555}.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}
.facts dt{font-weight:600}.facts dd{margin:0;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;background:#f7f7f7;padding:8px}
svg .pt path,svg .pt use{cursor:help}
"""

# Sorts a table on a click (or Enter) on its header: numbers by data-sort, text otherwise; again = reverse.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th").forEach(function (th, col) {
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      t.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(r) { var c = r.cells[col]; var s = c.getAttribute("data-sort");
        return s === null ? c.textContent.trim().toLowerCase() : parseFloat(s); }
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        var n = typeof x === "number" && typeof y === "number" ? x - y
          : typeof x === "number" ? -1 : typeof y === "number" ? 1 : x < y ? -1 : x > y ? 1 : 0;
        return asc ? n : -n; });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
});
"""


def _page(title: str, sections: Iterable[str], nav: Sequence[tuple[str, str]]) -> str:
    js_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{js_hash}'; "
           "base-uri 'none'; form-action 'none'")
    links = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><nav>{links}</nav>{''.join(sections)}<script>{_JS}</script></body></html>\n")


def build_report(zoo: Any, by: str = "cka") -> str:
    """Return the report page of ``zoo`` as HTML text (see the module docstring). Reads only.

    Parameters
    ----------
    zoo : Zoo
    by : str, default="cka"
        The embedding kind of the zoo map and the model × model heat map (`report_kinds`).

    Raises
    ------
    ZooscopeInputError
        ``by`` is not an available kind.
    """
    _check_by(by)
    embeddings = list(zoo.catalog.embeddings())
    problems, check_note = _try("check", zoo.check)
    failures = zoo.failures()
    models = _models_table(zoo, embeddings)
    nav = [("summary", "Summary"), ("models", "Models"), ("map", "Map"), ("dupes", "Near-duplicates"),
           ("datasets", "Datasets"), ("results", "Results"), ("bench", "Selection benchmark")]
    sections = [
        _summary(zoo, embeddings, problems, check_note, failures),
        _section("models", f"Models ({len(models)})",
                 table(models, tid="models-table", caption="click a column header to sort; checkpoint = sha256 "
                       "(first 12 hex digits) and file name; parameters from the checkpoint's header")),
        _map_section(zoo, by),
        _dupes_section(zoo, by),
        _datasets_section(zoo),
        _results_section(zoo),
        _bench_section(zoo),
    ]
    return _page(f"zooscope report: {Path(str(getattr(zoo, 'root', 'zoo'))).name}", sections, nav)


def write_report(zoo: Any, path: str | os.PathLike[str], by: str = "cka") -> Path:
    """Write `build_report` to ``path`` (one .html file, atomically); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ZooscopeInputError(f"The report is an HTML page: give a .html path, not {path.name!r}.")
    text = build_report(zoo, by)
    atomic_write(path, text.encode("utf-8"))
    return path
