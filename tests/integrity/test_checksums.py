"""One flipped bit in a vector file or in the probe file: `check` reports it, queries refuse or skip it,
`check --fix` + `embed` restore the same answers."""

from __future__ import annotations

import json

import pytest
from _faults import cli, flip_bit, listing, one_error_line
from zoo_helpers import KW, SPEC, checkpoints

from zooscope import Zoo
from zooscope.zoo.integrity import CorruptFileError


def _vector_file(zoo: Zoo, model: str):
    row = zoo.catalog.embeddings(kind="cka", model=model)[0]
    return zoo.store.path(row.vector_key)


def _ranking(zoo_path, model="cnn0"):
    return Zoo.open(zoo_path).similar(model, k=3, exact=True)[["model", "score"]]


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_flipped_bit_in_a_vector_file_is_reported_skipped_and_repaired(zoo_copy, where):
    zoo = Zoo.open(zoo_copy)
    reference = _ranking(zoo_copy)
    path = _vector_file(zoo, "cnn2")
    flip_bit(path, offset=20 if where == "header" else None, bit=6)

    code, out, err = cli("check", "--zoo", zoo_copy, "--format", "json")
    assert code == 1
    problems = json.loads(out)
    assert [p["problem"] for p in problems if p["subject"] == "cnn2"] == ["corrupt vector"]
    assert path.name in problems[0]["detail"] and "check --fix" in problems[0]["detail"]

    table = Zoo.open(zoo_copy).similar("cnn0", k=3)  # one bad model never blocks the query
    assert "cnn2" not in set(table["model"]) and len(table) == 2
    assert table["score"].between(0, 1 + 1e-9).all()
    assert [m for m, _ in table.attrs["skipped"]] == ["cnn2"]
    code, out, err = cli("similar", "cnn0", "--k", "3", "--zoo", zoo_copy, "--format", "csv")
    assert code == 0 and "cnn2" not in out
    assert [ln for ln in err.splitlines() if ln.startswith("skipped cnn2:")]  # one line on stderr
    with pytest.raises(CorruptFileError, match="check --fix"):  # the corrupt model itself as the query: refused
        Zoo.open(zoo_copy).similar("cnn2", k=3)
    code, _, err = cli("similar", "cnn2", "--zoo", zoo_copy)
    assert code == 2 and path.name in one_error_line(err)

    before = set(listing(zoo_copy))
    code, out, err = cli("check", "--fix", "--zoo", zoo_copy)
    assert code == 0, out + err
    removed = {f for f in before - set(listing(zoo_copy)) if not f.startswith("indices/")}  # indices: rebuilt
    assert removed == {str(path.relative_to(zoo_copy))}  # only the row it listed
    Zoo.open(zoo_copy).embed(kinds=("cka",))
    assert Zoo.open(zoo_copy).check().empty
    after = _ranking(zoo_copy)
    assert list(after["model"]) == list(reference["model"])
    assert after["score"].to_numpy() == pytest.approx(reference["score"].to_numpy(), abs=1e-6)


def test_a_flipped_bit_in_the_probe_file_is_reported_and_refused(zoo_copy):
    zoo = Zoo.open(zoo_copy)
    reference = zoo.similar("query", k=2, arch=SPEC, checkpoint=checkpoints(1)[0], kwargs=KW)
    rec = next(iter(zoo.settings()["probe_sets"].values()))
    probe = zoo_copy / rec["file"]
    assert "digits" not in probe.name  # named by a hash, never by the dataset's name
    flip_bit(probe, bit=3)

    code, out, _ = cli("check", "--zoo", zoo_copy, "--format", "json")
    assert code == 1 and [p["problem"] for p in json.loads(out)] == ["corrupt probe set"]
    with pytest.raises(CorruptFileError, match=probe.name):
        Zoo.open(zoo_copy).similar("query", k=2, arch=SPEC, checkpoint=checkpoints(1)[0], kwargs=KW)
    code, _, err = cli("similar", "query", "--arch", SPEC, "--checkpoint", checkpoints(1)[0], "--kwargs",
                       json.dumps(KW), "--zoo", zoo_copy)
    assert code == 2 and "check --fix" in one_error_line(err)

    code, _, _ = cli("check", "--fix", "--zoo", zoo_copy)
    assert code == 0
    assert (probe.parent / (probe.name + ".corrupt")).is_file()  # set aside, never deleted
    Zoo.open(zoo_copy).embed(kinds=("cka",))  # re-makes the same probe set: nothing to re-embed
    again = Zoo.open(zoo_copy).similar("query", k=2, arch=SPEC, checkpoint=checkpoints(1)[0], kwargs=KW)
    assert list(again["model"]) == list(reference["model"])
    assert again["score"].to_numpy() == pytest.approx(reference["score"].to_numpy(), abs=1e-6)
    assert Zoo.open(zoo_copy).check().empty


def test_every_vector_file_is_verified(zoo_copy):
    """Each vector file in turn, one flipped bit: check names exactly that file."""
    zoo = Zoo.open(zoo_copy)
    for row in zoo.catalog.embeddings():
        path = zoo.store.path(row.vector_key)
        original = path.read_bytes()
        flip_bit(path, bit=1)
        table = zoo.check()
        assert list(table["problem"]) == ["corrupt vector"] and path.name in table["detail"].iloc[0]
        path.write_bytes(original)
    assert zoo.check().empty
