"""A zoo whose catalog is empty, truncated, garbage, scrambled or missing: every verb exits 2 with one line,
the library refuses it (Zoo.open and Zoo.create), and not one file of the zoo is removed or changed."""

from __future__ import annotations

import json

import pytest
from _faults import cli, damage_catalog, listing, one_error_line
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope._validation import ZooscopeInputError

DAMAGE = ("zero", "truncated", "garbage", "scrambled", "missing")


def verbs(zoo, tmp_path):
    """Every zoo verb, with valid arguments (only the catalog is wrong)."""
    ckpt = checkpoints(1)[0]
    z = ["--zoo", zoo]
    return [
        ["init", *z],
        ["ls", "models", *z], ["ls", "datasets", *z],
        ["add-model", "new", "--arch", SPEC, "--checkpoint", ckpt, "--kwargs", json.dumps(KW), *z],
        ["add-dataset", "new", "--source", "builtin:digits", *z],
        ["remove", "model", "cnn0", *z],
        ["configure", "--probe-n", "64", *z],
        ["embed", "--kinds", "cka", *z],
        ["similar", "cnn0", "--k", "2", *z],
        ["select", "digits", "--k", "2", *z],
        ["check", *z], ["check", "--fix", *z],
        ["curate", "dupes", *z], ["curate", "clusters", *z], ["curate", "map", *z],
        ["record", "cnn0", "digits", "--value", "0.9", *z], ["results", *z],
        ["export", tmp_path / "export", *z],
        ["report", "--out", tmp_path / "report.html", *z],
    ]


def _zoo_verbs() -> set[str]:
    """Every CLI command with a --zoo option (from the command tree, so a new verb is not forgotten)."""
    import typer

    from zooscope.cli import app

    found: set[str] = set()

    def walk(c, path):
        if hasattr(c, "commands"):
            for n, sub in c.commands.items():
                walk(sub, [*path, n])
        elif any("--zoo" in p.opts for p in c.params):
            found.add(" ".join(path))

    walk(typer.main.get_command(app), [])
    return found


def test_the_list_covers_every_zoo_verb(tmp_path):
    listed = {f"{argv[0]} {argv[1]}" if argv[0] in ("curate", "bench") else argv[0]
              for argv in verbs(tmp_path / "zoo", tmp_path)}
    # import writes a new zoo (tested in test_export_import); bench selection reads a truth file first
    assert _zoo_verbs() - {"import", "bench selection"} <= listed, _zoo_verbs() - listed


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_catalog_is_refused_by_every_verb_and_nothing_is_removed(zoo_copy, tmp_path, how):
    damage_catalog(zoo_copy, how)
    before = listing(zoo_copy)
    assert any(k.startswith("vectors/") for k in before) and any(k.startswith("indices/") for k in before)
    for argv in verbs(zoo_copy, tmp_path):
        code, _out, err = cli(*argv)
        line = one_error_line(err)
        assert code == 2, (argv, err)
        assert "catalog" in line, (argv, line)
        assert listing(zoo_copy) == before, f"{argv} changed the zoo folder"
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("how", DAMAGE)
def test_the_library_refuses_it_too_and_never_reinitialises(zoo_copy, how):
    damage_catalog(zoo_copy, how)
    before = listing(zoo_copy)
    for opener in (Zoo.open, Zoo.create):
        with pytest.raises(ZooscopeInputError, match="catalog") as e:
            opener(zoo_copy)
        assert "Nothing was changed" in str(e.value)
    assert listing(zoo_copy) == before


def test_a_catalog_from_another_zoo_is_refused(zoo_copy, tmp_path):
    other = Zoo.create(tmp_path / "other")
    other.catalog.close()
    (zoo_copy / "catalog.sqlite").write_bytes((tmp_path / "other" / "catalog.sqlite").read_bytes())
    before = listing(zoo_copy)
    with pytest.raises(ZooscopeInputError, match="belongs to another zoo"):
        Zoo.open(zoo_copy)
    code, _, err = cli("embed", "--kinds", "cka", "--zoo", zoo_copy)
    assert code == 2 and "another zoo" in one_error_line(err)
    assert listing(zoo_copy) == before


def test_create_writes_the_marker_and_its_id_into_the_catalog(tmp_path):
    zoo = Zoo.create(tmp_path / "z")
    marker = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert marker["format"] == "zooscope-zoo" and marker["schema_version"] == zoo.catalog.schema_version
    assert zoo.catalog.get_setting("zoo_id") == marker["zoo_id"]
    assert Zoo.create(tmp_path / "z").catalog.get_setting("zoo_id") == marker["zoo_id"]  # reopened, not re-made


@pytest.mark.parametrize("page_no", [2, 3, 4, -1])
def test_a_damaged_page_is_refused_or_reported_never_repaired(zoo_copy, page_no):
    """A catalog whose header is fine but one page is overwritten: `Zoo.open` refuses it, or (when the page is
    not read at open) `check` names it (exit 1) and `check --fix` changes nothing."""
    from zooscope.zoo.check import _catalog_problem

    cat = zoo_copy / "catalog.sqlite"
    data = bytearray(cat.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    n = len(data) // page
    first = (n + page_no if page_no < 0 else page_no - 1) * page
    data[first:first + page] = bytes((i * 37 + 11) % 256 for i in range(page))
    cat.write_bytes(bytes(data))
    before = listing(zoo_copy)
    try:
        zoo = Zoo.open(zoo_copy)
    except ZooscopeInputError as e:
        assert "catalog" in str(e) and "Nothing was changed" in str(e)
        code, _, err = cli("check", "--fix", "--zoo", zoo_copy)
        assert code == 2 and "catalog" in one_error_line(err)
    else:
        assert _catalog_problem(zoo.catalog) is not None  # quick_check sees every page in use
        zoo.catalog.close()
        code, out, _ = cli("check", "--zoo", zoo_copy)
        assert code == 1 and "damaged catalog" in out
        code, _, _ = cli("check", "--fix", "--zoo", zoo_copy)
        assert code == 1
    assert listing(zoo_copy) == before
