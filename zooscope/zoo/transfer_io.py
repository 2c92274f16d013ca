"""Export a zoo to a plain folder, and import such a folder as a new zoo, without recomputing anything.

Export layout (``zooscope export DIR`` / `export_zoo`)::

    DIR/manifest.json               format, source zoo's marker, schema version, row counts, sha256 of every file
    DIR/catalog/<table>.json        every catalog table (models, datasets, embeddings, failures, settings), as
                                    JSON records (ids kept: an embedding's id is its FAISS id)
    DIR/vectors/<kind>/<key>.npy    every vector file the catalog names (verified against its sha256 first)
    DIR/probes/<hash>.safetensors   every materialised probe set (verified first)
    DIR/probes/task2vec-<sha256>.*  the Task2Vec probe networks stored in the zoo (verified first)

FAISS indices are not exported: `import_zoo` rebuilds them from the vectors (same ids, so the same answers).
Nothing corrupt is exported: a vector or probe file that fails its sha256 stops the export with the file's name
(run ``zooscope check --fix`` first). `import_zoo` verifies every file against the manifest before it writes the
catalog, creates a new zoo (new marker and zoo id; ``settings["imported_from"]`` keeps the old id) and never
writes into an existing zoo.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import schema
from zooscope.zoo.integrity import CorruptFileError, file_sha256, read_marker, verify_file

__all__ = ["FORMAT", "export_zoo", "import_zoo"]

FORMAT = "zooscope-export"
TABLES = ("models", "datasets", "embeddings", "failures", "settings")


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
        raise ZooscopeInputError(f"The export at {src} has no catalog/{name}.json.")
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeError, ValueError) as e:
        raise ZooscopeInputError(f"{p} cannot be read ({e}).") from None
    t = schema.metadata.tables[name]
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k in t.c}
        for col in t.c:
            if isinstance(col.type, sa.DateTime) and isinstance(r.get(col.name), str):
                r[col.name] = dt.datetime.fromisoformat(r[col.name])
        out.append(r)
    return out


def import_zoo(src: str | os.PathLike[str], dest: str | os.PathLike[str], zoo_cls: Any) -> Any:
    """Create a new zoo at ``dest`` from an export folder ``src``: files verified, catalog restored, indices
    rebuilt. Returns the opened zoo. ``zoo_cls`` is the facade class (`zooscope.Zoo`: its ``create``/``open``);
    passed in because nothing in ``zooscope.zoo`` imports the facade.

    Raises
    ------
    ZooscopeInputError
        ``dest`` exists and is not empty; ``src`` is not an export; a file differs from the manifest's sha256.
    """
    from zooscope.embed._kinds import EMBEDDINGS

    src = Path(src).expanduser().resolve()
    dest = Path(dest).expanduser().resolve()
    _empty_target(dest, "The zoo folder")
    manifest = _read_manifest(src)
    files = {str(_safe_rel(rel, src)): sha for rel, sha in manifest["files"].items()}
    for rel, sha in files.items():  # everything verified before anything is written
        if not (src / rel).is_file():
            raise ZooscopeInputError(f"The export at {src} lacks {rel}; it is incomplete.")
        verify_file(src / rel, sha, "exported")
    tables = {name: _rows(src, name) for name in TABLES}
    zoo = zoo_cls.create(dest)
    for rel, sha in files.items():
        if atomic_write(dest / rel, (src / rel).read_bytes()) != sha:
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
    zoo = zoo_cls.open(dest)
    kinds = sorted({r["kind"] for r in tables["embeddings"]} & set(EMBEDDINGS.available()))
    zoo.check_context().indices.rebuild(kinds)
    return zoo

