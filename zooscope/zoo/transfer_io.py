"""Export a zoo to a plain folder, and import such a folder as a new zoo, without recomputing anything.

Export layout (``zooscope export DIR`` / `export_zoo`)::

    DIR/manifest.json               format, source zoo's marker, schema version, row counts, sha256 of every file
    DIR/catalog/<table>.json        every catalog table (models, datasets, embeddings, failures, settings,
                                    results), as JSON records (ids kept: an embedding's id is its FAISS id)
    DIR/vectors/<kind>/<key>.npy    every vector file the catalog names (verified against its sha256 first)
    DIR/probes/<hash>.safetensors   every materialised probe set (verified first)
    DIR/probes/task2vec-<sha256>.*  the Task2Vec probe networks stored in the zoo (verified first)

FAISS indices are not exported: `import_zoo` rebuilds them from the vectors (same ids, so the same answers).
Nothing corrupt is exported: a vector or probe file that fails its sha256 stops the export with the file's name
(run ``zooscope check --fix`` first). `import_zoo` verifies every file against the manifest before it writes the
catalog, creates a new zoo (new marker and zoo id; ``settings["imported_from"]`` keeps the old id) and never
writes into an existing zoo.

An export folder is data, not code. `import_zoo` validates every name as `add-model` does, every id and integer
against what the zoo can hold (an input error, never an overflow), and accepts only model and probe specs that run
no code beyond zooscope and timm (`zooscope.nets.arch.is_registered_spec`) unless ``trust_code=True``; the
refusal names the specs. The new zoo is built in a hidden sibling folder and renamed to its place at the end: an
import refused or killed part-way leaves no zoo (a killed one's folder is swept by the next import to that path).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError, validate_name
from zooscope.nets.arch import is_registered_spec
from zooscope.zoo.catalog import schema
from zooscope.zoo.catalog.claims import _owner_dead
from zooscope.zoo.indices import LAYER_STRIDE
from zooscope.zoo.integrity import CorruptFileError, file_sha256, read_marker, verify_file

__all__ = ["FORMAT", "export_zoo", "import_zoo"]

FORMAT = "zooscope-export"
TABLES = ("models", "datasets", "embeddings", "failures", "settings", "results")
OPTIONAL_TABLES = ("results",)  # absent from exports of older zooscope versions: imported as empty
MAX_ROW_ID = (2**63 - 1) // LAYER_STRIDE  # an embedding id times LAYER_STRIDE is a FAISS id (int64)
_NAME_COLUMNS = {"models": ("name", "trained_on"), "datasets": ("name",), "embeddings": ("model", "dataset"),
                 "failures": ("model", "dataset"), "results": ("model", "dataset")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.isoformat()
    return v


def _empty_target(dest: Path, what: str) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ZooscopeInputError(f"{what} {dest} already exists and is not an empty folder; choose a new path "
                                 "(nothing is ever written over).")


def export_zoo(zoo: Any, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the zoo's catalog tables, vector files, probe files and marker to ``dest`` (a new folder).

    Returns
    -------
    dict
        The manifest written to ``dest/manifest.json``.

    Raises
    ------
    ZooscopeInputError
        ``dest`` exists and is not empty; a file the catalog names is missing or corrupt (named, with the fix).
    """
    dest = Path(dest).expanduser().resolve()
    root = Path(zoo.root).resolve()
    if dest == root or dest.is_relative_to(root):
        raise ZooscopeInputError(f"Export into a folder outside the zoo; {dest} is inside {root}.")
    _empty_target(dest, "The export folder")
    cat = zoo.catalog
    tables: dict[str, list[dict[str, Any]]] = {}
    with cat.engine.connect() as conn:
        for name in TABLES:
            t = schema.metadata.tables[name]
            order = t.c.id if "id" in t.c else t.c.key
            tables[name] = [{k: _jsonable(v) for k, v in r._mapping.items()}
                            for r in conn.execute(sa.select(t).order_by(order))]
    files: dict[str, str] = {}
    for r in tables["embeddings"]:
        try:
            src = zoo.store.path(r["vector_key"])
        except KeyError:
            raise ZooscopeInputError(f"The vector file of embedding {r['id']} ({r['kind']} of "
                                     f"{r['model'] or r['dataset']}) is missing; run `zooscope check --fix` before "
                                     "exporting.") from None
        verify_file(src, r.get("sha256"), f"{r['kind']} vector")
        files[str(src.relative_to(root))] = file_sha256(src)
    from zooscope.zoo.probes import ProbeContext, loadable_net, verified_probe

    pctx = ProbeContext(cat, zoo.typed_settings(), zoo.paths)
    for rec in zoo.typed_settings().probe_sets.values():
        src = root / rec["file"]
        if src.is_file():
            verified_probe(pctx, dict(rec))
            files[str(Path(rec["file"]))] = file_sha256(src)
    for net in zoo.typed_settings().task2vec_probes.values():  # a Task2Vec probe network stored in the zoo
        if net.get("checkpoint") and not Path(net["checkpoint"]).is_absolute():
            files[str(Path(net["checkpoint"]))] = file_sha256(loadable_net(pctx, dict(net))["checkpoint"])
    dest.mkdir(parents=True, exist_ok=True)
    for rel, sha in files.items():
        data = (root / rel).read_bytes()
        if atomic_write(dest / rel, data) != sha:
            raise CorruptFileError(f"{root / rel} changed while it was being exported; export again.", root / rel)
    for name, rows in tables.items():
        atomic_write(dest / "catalog" / f"{name}.json", json.dumps(rows, indent=1, default=str).encode())
    manifest = {"format": FORMAT, "schema_version": cat.schema_version, "marker": read_marker(root),
                "exported": dt.datetime.now(dt.UTC).isoformat(), "rows": {k: len(v) for k, v in tables.items()},
                "files": files}
    atomic_write(dest / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _read_manifest(src: Path) -> dict[str, Any]:
    p = src / "manifest.json"
    if not p.is_file():
        raise ZooscopeInputError(f"{src} is not a zooscope export (no manifest.json).")
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeError, ValueError) as e:
        raise ZooscopeInputError(f"{p} cannot be read ({e}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ZooscopeInputError(f"{p} is not a zooscope export manifest.")
    if int(manifest.get("schema_version", 0)) > schema.SCHEMA_VERSION:
        raise ZooscopeInputError(f"{src} was exported by a newer zooscope (schema {manifest['schema_version']} > "
                                 f"{schema.SCHEMA_VERSION}); upgrade zooscope to import it.")
    return manifest


def _safe_rel(rel: str, src: Path) -> Path:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] not in ("vectors", "probes"):
        raise ZooscopeInputError(f"The export at {src} names a file outside vectors/ and probes/ ({rel!r}); "
                                 "refusing it.")
    return p


def _rows(src: Path, name: str) -> list[dict[str, Any]]:
    p = src / "catalog" / f"{name}.json"
    if not p.is_file():
        if name in OPTIONAL_TABLES:
            return []
        raise ZooscopeInputError(f"The export at {src} has no catalog/{name}.json.")
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeError, ValueError) as e:
        raise ZooscopeInputError(f"{p} cannot be read ({e}).") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ZooscopeInputError(f"{p} is not a list of rows.")
    t = schema.metadata.tables[name]
    out = []
    for i, r in enumerate(rows):
        r = {k: v for k, v in r.items() if k in t.c}
        for col in t.c:
            v = r.get(col.name)
            where = f"{p} row {i + 1}, column {col.name!r}"
            if isinstance(col.type, sa.DateTime) and isinstance(v, str):
                try:
                    r[col.name] = dt.datetime.fromisoformat(v)
                except ValueError:
                    raise ZooscopeInputError(f"{where}: {v[:40]!r} is not a date.") from None
            elif isinstance(col.type, sa.Integer) and v is not None:
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ROW_ID:
                    raise ZooscopeInputError(f"{where}: {str(v)[:40]!r} is not an integer in [0, {MAX_ROW_ID}] "
                                             "(ids and sizes past that cannot be held); refusing the export.")
        for col in _NAME_COLUMNS.get(name, ()):
            if r.get(col):  # "" or None: absent (a dataset-only embedding has no model)
                validate_name(r[col], f"{name} {col}")
        out.append(r)
    return out


def _untrusted_specs(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Return the model and probe specs of an export that would import code other than zooscope's and timm's."""
    specs = [f"model {r.get('name')!r}: {r.get('spec')!r}" for r in tables["models"]
             if not is_registered_spec(r.get("spec"))]
    for r in tables["settings"]:
        if r.get("key") == "task2vec_probes":
            probes = r.get("value") if isinstance(r.get("value"), dict) else {"?": r.get("value")}
            for shape, probe in probes.items():
                arch = probe.get("arch") if isinstance(probe, dict) else probe
                if not is_registered_spec(arch):
                    specs.append(f"task2vec probe of {shape}: {arch!r}")
    return specs


def _dangling(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Embedding rows that name a model or dataset the export does not hold (a ghost row is never imported)."""
    models = {r["name"] for r in tables["models"]}
    datasets = {r["name"] for r in tables["datasets"]}
    return [f"embedding {r.get('id')} ({r.get('kind')} of {r.get('model') or r.get('dataset')!r})"
            for r in tables["embeddings"]
            if (r.get("model") and r["model"] not in models) or (r.get("dataset") and r["dataset"] not in datasets)]


def _staging(dest: Path) -> Path:
    """Return the hidden sibling folder an import of ``dest`` builds in; stale ones of killed imports are swept."""
    for old in dest.parent.glob(f".{dest.name}.importing-*"):
        pid = old.name.rpartition("-")[2]
        if pid.isdigit() and _owner_dead(f"{socket.gethostname()}:{pid}:x"):
            shutil.rmtree(old, ignore_errors=True)
    return dest.parent / f".{dest.name}.importing-{os.getpid()}"


def import_zoo(src: str | os.PathLike[str], dest: str | os.PathLike[str], zoo_cls: Any, *,
               trust_code: bool = False) -> Any:
    """Create a new zoo at ``dest`` from an export folder ``src``.

    Files verified, catalog restored, indices rebuilt. Returns the opened zoo. ``zoo_cls`` is the facade class
    (`zooscope.Zoo`: its ``create``/``open``); passed in because nothing in ``zooscope.zoo`` imports the
    facade.

    ``trust_code``: accept model and probe specs naming any ``package.module:factory`` (by default only
    zooscope's own factories and ``timm:`` names: an export folder is data, it must not choose code to run).

    Raises
    ------
    ZooscopeInputError
        ``dest`` exists and is not empty; ``src`` is not an export; a file differs from the manifest's sha256;
        a bad name, id or integer; a spec naming other code (without ``trust_code``); a row naming a model or
        dataset the export lacks.
    """
    from zooscope.embed._kinds import EMBEDDINGS

    src = Path(src).expanduser().resolve()
    dest = Path(dest).expanduser().resolve()
    _empty_target(dest, "The zoo folder")
    manifest = _read_manifest(src)
    files = {str(_safe_rel(rel, src)): sha for rel, sha in manifest["files"].items()}
    tables = {name: _rows(src, name) for name in TABLES}
    untrusted = [] if trust_code else _untrusted_specs(tables)
    if untrusted:
        raise ZooscopeInputError(
            f"The export at {src} names code to run that is neither zooscope's nor timm's: {'; '.join(untrusted)}. "
            "Nothing was imported. If you trust its author, import it with --trust-code (trust_code=True).")
    dangling = _dangling(tables)
    if dangling:
        raise ZooscopeInputError(f"The export at {src} has rows for models or datasets it does not hold: "
                                 f"{', '.join(dangling[:5])}. Nothing was imported; export the zoo again after "
                                 "`zooscope check --fix`.")
    for rel, sha in files.items():  # everything verified before anything is written
        if not (src / rel).is_file():
            raise ZooscopeInputError(f"The export at {src} lacks {rel}; it is incomplete.")
        verify_file(src / rel, sha, "exported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = _staging(dest)
    try:
        _build(src, stage, files, tables, manifest, zoo_cls, sorted({r["kind"] for r in tables["embeddings"]}
                                                                    & set(EMBEDDINGS.available())))
        os.rename(stage, dest)  # one step: the zoo appears whole at dest (an empty dest folder is replaced)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return zoo_cls.open(dest)


def _build(src: Path, stage: Path, files: dict[str, str], tables: dict[str, list[dict[str, Any]]],
           manifest: dict[str, Any], zoo_cls: Any, kinds: list[str]) -> None:
    """Return the imported zoo, built whole in ``stage`` (then closed, ready to be renamed)."""
    zoo = zoo_cls.create(stage)
    try:
        for rel, sha in files.items():
            if atomic_write(stage / rel, (src / rel).read_bytes()) != sha:
                raise CorruptFileError(f"{src / rel} changed while it was being imported; import again.", src / rel)
        new_id = zoo.catalog.get_setting("zoo_id")
        old_id = (manifest.get("marker") or {}).get("zoo_id")
        with zoo.catalog._write() as conn:
            for name in TABLES:
                t = schema.metadata.tables[name]
                rows = tables[name]
                if name == "settings":
                    conn.execute(t.delete())
                    rows = [r for r in rows if r["key"] not in ("zoo_id", "imported_from")]
                    rows += [{"key": "zoo_id", "value": new_id}, {"key": "imported_from", "value": old_id}]
                if rows:
                    conn.execute(t.insert(), rows)
        zoo.catalog.close()
        zoo = zoo_cls.open(stage)
        zoo.check_context().indices.rebuild(kinds)
    finally:
        zoo.catalog.close()
