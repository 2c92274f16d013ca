"""The CLI's shared pieces: the error boundary's classification, validators, warning lines."""

import json
import warnings

import pytest
import typer

from zooscope._validation import ZooscopeInputError
from zooscope.cli._errors import Interrupted, handle_exception, say, warning_hint, warnings_as_lines
from zooscope.cli._validators import check_device, check_name, parse_shape


def _exit_of(exc, capsys):
    with pytest.raises(typer.Exit) as info:
        handle_exception(exc, "verb")
    return info.value.exit_code, capsys.readouterr().err


@pytest.mark.parametrize(("exc", "code"), [
    (ZooscopeInputError("bad\nthing"), 2), (ValueError("v"), 2), (FileNotFoundError(2, "No such file", "f.npz"), 2),
    (KeyError("unknown model 'x'"), 2), (json.JSONDecodeError("Expecting value", "{bad", 1), 2),
    (KeyboardInterrupt(), 130), (Interrupted("interrupted: 3 pairs saved, rerun to continue"), 130),
    (RuntimeError("boom"), 3), (TypeError("t"), 3),
])
def test_every_exception_becomes_one_line_with_its_exit_code(exc, code, capsys):
    got, err = _exit_of(exc, capsys)
    assert got == code
    assert len(err.strip().splitlines()) == 1
    if code == 3:
        assert "internal error in `zooscope verb` (RuntimeError" in err or "TypeError" in err


def test_sqlalchemy_errors_are_one_line_without_sql(capsys, tmp_path):
    import sqlalchemy as sa

    (tmp_path / "x.sqlite").write_bytes(b"garbage" * 100)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with pytest.raises(sa.exc.DatabaseError) as info, engine.connect() as con:
        con.execute(sa.text("select * from models"))
    code, err = _exit_of(info.value, capsys)
    assert code == 2 and "file is not a database" in err and "select" not in err.lower()


def test_debug_reraises_bugs(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        handle_exception(RuntimeError("boom"), "verb")


def test_file_options_are_named_for_low_level_read_errors(capsys):
    with pytest.raises(typer.Exit):
        handle_exception(EOFError("reading array header"), "compare", {"data": "x.npy"})
    assert "(while reading --data 'x.npy')" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "shape"), [("3,224,224", (3, 224, 224)), ("1x8x8", (1, 8, 8)), ("40", (40,))])
def test_parse_shape(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["", "a,b", "0,8,8", "1,2,3,4", "-1"])
def test_parse_shape_refuses(text):
    with pytest.raises(ZooscopeInputError, match="--input-shape"):
        parse_shape(text)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", "x" * 201, "a\x00b", "a\nb", ".."])
def test_names_are_data_not_paths(name):
    with pytest.raises(ZooscopeInputError, match="not allowed"):
        check_name(name, "model")


def test_device_validation():
    assert check_device("cpu") == "cpu"
    with pytest.raises(ZooscopeInputError, match="--device"):
        check_device("banana")
    with pytest.raises(ZooscopeInputError, match="--device 'cuda:99'"):
        check_device("cuda:99")


def test_warnings_become_one_line_with_the_option(capsys):
    with warnings_as_lines(["--batch-size", "--n"], "compare"):
        warnings.warn("MinibatchCKA skipped a batch of 3 examples:\nuse a larger batch size", UserWarning,
                      stacklevel=1)
        warnings.warn("MinibatchCKA skipped a batch of 3 examples:\nuse a larger batch size", UserWarning,
                      stacklevel=1)
        warnings.warn("something else entirely", UserWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: MinibatchCKA skipped a batch of 3 examples: use a larger batch size "
                   "(change it with --batch-size)",
                   "warning: something else entirely (options: `zooscope compare --help`)"]


def test_a_warning_that_names_its_option_gets_no_second_hint():
    text = "input shape 3×32×32 guessed for 1 model (a); set it with add-model NAME --replace --input-shape C,H,W"
    assert warning_hint(text, ["--zoo"], "embed") == ""
    assert warning_hint("input shape guessed", ["--zoo"], "embed") == "change it with zooscope configure"


def test_markup_is_printed_as_text(capsys):
    say("pip install 'zooscope[ray]' [red]x[/red]")
    assert capsys.readouterr().err == "pip install 'zooscope[ray]' [red]x[/red]\n"
