"""Every bad input ends in one line on stderr, a non-zero exit code and nothing written."""

import os

import pytest

from lightning_compress import cli
from lightning_compress.cli import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, main


def _fails_cleanly(capsys, argv, match: str, code: int = EXIT_USER_ERROR, written=()):
    assert main(argv) == code, argv
    error = capsys.readouterr().err.strip()
    assert match in error, error
    assert len(error.splitlines()) == 1, error
    for path in written:
        assert not os.path.exists(path), f"{path} was written"
        folder = os.path.dirname(path) or "."
        if os.path.isdir(folder):
            name = os.path.basename(path)
            assert not [f for f in os.listdir(folder) if f.startswith(f".{name}.tmp")], "a temporary file was left"


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("some text to compress\n")
    return path


def test_paths_are_checked_before_any_model_loads(tmp_path, text, capsys):
    out = str(tmp_path / "out.lclm")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "a_dir").mkdir()
    cases = [
        ([str(tmp_path / "nope.txt"), out], "nope.txt does not exist"),
        ([str(tmp_path), out], "is a directory; expected a file to read"),
        (["/dev/zero", out], "/dev/zero is not a regular file"),
        ([str(text), str(text)], "is the input file itself"),
        ([str(text), str(tmp_path / "a_dir")], "a_dir is a directory; expected the path of the file to write"),
        ([str(text), str(a_file / "out.lclm")], "a_file is a file"),
        ([str(text), str(tmp_path / "missing" / "out.lclm")], "missing does not exist"),
    ]
    for verb in ("compress", "decompress"):
        for paths, match in cases:
            extra = ["--lm", "tiny-random"] if verb == "compress" else []
            _fails_cleanly(capsys, [verb, *paths, *extra], match, written=[out])
    assert text.read_text() == "some text to compress\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(tmp_path, text, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        _fails_cleanly(capsys, ["compress", str(text), str(folder / "out.lclm"), "--lm", "tiny-random"],
                       "Permission denied", written=[str(folder / "out.lclm")])
    finally:
        folder.chmod(0o700)


def test_an_unexpected_failure_is_one_line_with_exit_1_and_debug_shows_the_traceback(tmp_path, text, capsys, monkeypatch):
    from lightning_compress.tasks.bytes import lm_api

    def broken(*args, **kwargs):
        raise RuntimeError("something the code did not foresee\nsecond line")

    monkeypatch.setattr(lm_api.LmCompressor, "load", broken)
    argv = ["compress", str(text), str(tmp_path / "out.lclm"), "--lm", "tiny-random"]
    _fails_cleanly(capsys, argv, "internal error: RuntimeError: something the code did not foresee second line",
                   code=EXIT_INTERNAL_ERROR, written=[str(tmp_path / "out.lclm")])
    monkeypatch.setenv("LCOMPRESS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="did not foresee"):
        main(argv)


def test_one_line_names_the_file_of_an_os_error():
    assert cli.one_line(IsADirectoryError(21, "Is a directory", "out/")) == "out/: Is a directory"
    assert cli.one_line(ValueError("a\n  b\tc")) == "a b c"
