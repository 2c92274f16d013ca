"""One zoo owns its storage.

The storage folder and its sub-folders carry the zoo's id, and a catalog is only opened with storage that
carries its own id.

Two zoos whose files live in one folder would each take the other's vector files for orphans of an interrupted
run and delete them. So:

* a folder zoo's marker ``<zoo>/zoo.json`` holds its id, and so does the catalog (setting ``zoo_id``;
  `zooscope.zoo.integrity.check_catalog_matches`);
* a catalog URL (PostgreSQL) zoo gets the same pair: ``zoo.json`` in its ``--storage`` folder and the id as a
  row of the catalog's settings. `open_url_catalog` refuses a database without a zoo (unless creating one), a
  storage folder that is another zoo's (its marker names another id, or the catalog is new and the folder is a
  zoo already), and a storage folder without a marker for a catalog that has an id (the wrong or an emptied
  folder);
* each storage sub-folder (``vectors/``, ``indices/``, ``probes/``) holds ``.zoo-id`` (`own_subfolders`), so a
  sub-folder linked into two zoos is refused by the second one to open it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zooscope._io import atomic_write
from zooscope._validation import ZooscopeInputError
from zooscope.zoo.catalog import Catalog
from zooscope.zoo.integrity import read_marker, write_marker

__all__ = ["OWNED_SUBFOLDERS", "open_url_catalog", "own_subfolders"]

OWNED_SUBFOLDERS = ("vectors", "indices", "probes")
_ID_FILE = ".zoo-id"


def _database_has_zoo(url: str) -> bool:
    import sqlalchemy as sa

    from zooscope.zoo.catalog.schema import schema_version_table

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not Path(parsed.database).is_file():
        return False  # never create the file just to look into it
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(schema_version_table.name)
    finally:
        engine.dispose()


def _shown(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def open_url_catalog(url: str, root: Path, *, create: bool, writable: bool) -> Catalog:
    """Return the catalog at ``url`` whose storage folder is ``root``, after checking that each is the other's."""
    if not create and not _database_has_zoo(url):
        raise ZooscopeInputError(
            f"The database {_shown(url)} holds no zoo catalog (it is empty or another database). Check --zoo, or "
            f"create the zoo with `zooscope init --zoo URL --storage {root}`.")
    marker = read_marker(root) if root.is_dir() else None
    catalog = Catalog(url, readonly=False)
    try:
        stored = catalog.get_setting("zoo_id")
        if stored is None and marker is not None:
            raise ZooscopeInputError(
                f"The storage folder {root} belongs to another zoo (its zoo.json names zoo {marker['zoo_id'][:8]}…) "
                f"and the catalog {_shown(url)} is not that zoo's. Nothing was changed; give this zoo its own "
                "--storage folder.")
        if stored is not None and (marker is None or marker["zoo_id"] != stored):
            found = "no zoo marker" if marker is None else f"the marker of zoo {marker['zoo_id'][:8]}…"
            raise ZooscopeInputError(
                f"The storage folder {root} is not the storage of the catalog {_shown(url)} (zoo {stored[:8]}…): it "
                f"has {found}. Nothing was changed; point --storage at this zoo's own folder.")
        if stored is None:  # a new zoo (or one made before markers): the pair is written now
            if not writable:
                return catalog
            root.mkdir(parents=True, exist_ok=True)
            stored = write_marker(root)["zoo_id"]
            catalog.set_setting("zoo_id", stored)
    except BaseException:
        catalog.close()
        raise
    return catalog


def own_subfolders(root: Path, catalog: Any, *, writable: bool) -> None:
    """Check (and, writable, stamp) ``.zoo-id`` in each storage sub-folder.

    A folder another zoo stamped (a ``vectors/`` linked into two zoos) is refused. Zoos made before markers
    (no ``zoo_id``) are left alone.
    """
    zoo_id = catalog.get_setting("zoo_id")
    if not zoo_id:
        return
    for sub in OWNED_SUBFOLDERS:
        folder = root / sub
        stamp = folder / _ID_FILE
        try:
            found = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None
        except (OSError, UnicodeError):
            found = "?"
        if found is not None and found != zoo_id:
            where = f" (it links to {folder.resolve()})" if folder.is_symlink() else ""
            raise ZooscopeInputError(
                f"{folder}{where} belongs to another zoo ({found[:8]}…; this zoo is {zoo_id[:8]}…): two zoos "
                "must not share storage, each would delete the other's files. Nothing was changed; give this zoo "
                f"its own {sub}/ folder.")
        if found is None and writable and folder.is_dir():
            atomic_write(stamp, (zoo_id + "\n").encode())
