"""Every bad input ends in one line on stderr, a non-zero exit code and nothing written."""

import os

import pytest

from lightning_compress import cli
from lightning_compress.cli import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, main


def _fails_cleanly(capsys, argv, match: str, code: int = EXIT_USER_ERROR, written=()):
    assert main(argv) == code, argv
    # Progress bars may come first (carriage returns); the error itself is one line.
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lcompress:")]
    assert len(error) == 1 and match in error[0], error
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


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no one may write into: chmod 500, or for root (who ignores modes) a tmpfs
    mounted read-only."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    yield from _mounted_tmpfs(folder, "ro,size=64k")


def _mounted_tmpfs(folder, options: str):
    """Yield `folder` with a tmpfs mounted on it (needs the right to mount, as root in a
    container; the test is skipped elsewhere), unmounted afterwards."""
    import subprocess

    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip(f"cannot mount a tmpfs ({options}) here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_output_folder_is_one_line(read_only_folder, text, capsys):
    target = str(read_only_folder / "out.lclm")
    match = "Permission denied" if os.geteuid() != 0 else "Read-only file system"
    _fails_cleanly(capsys, ["compress", str(text), target, "--lm", "tiny-random"], match, written=[target])


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


AOC = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "prompt", "aoc.yaml")

BAD_FILES = {
    "base: 5\n": "`base` must be the path of one YAML file (a string), got int 5",
    "base: [x.yaml]\n": "`base` must be the path of one YAML file (a string), got list",
    "base: {aoc}\nname: ${{oc.env:LCOMPRESS_NOPE_NOT_SET}}\n": "`name` cannot be resolved: KeyError raised while resolving "
                                                                "interpolation: \"Environment variable 'LCOMPRESS_NOPE_NOT_SET' not found\"",
    "base: {aoc}\nname: ${{nope.key}}\n": "`name` cannot be resolved: Interpolation key 'nope.key' not found",
    "base: {aoc}\nname: ???\n": "`name` is ??? (mandatory)",
}


@pytest.mark.parametrize("text", list(BAD_FILES))
def test_check_config_rejects_exactly_what_train_rejects(tmp_path, capsys, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text.format(aoc=os.path.abspath(AOC)))
    for argv in (["check-config", str(path)], ["train", str(path), f"output_dir={tmp_path / 'runs'}"]):
        _fails_cleanly(capsys, argv, BAD_FILES[text])
    assert not (tmp_path / "runs").exists()


BAD_OVERRIDES = {
    "trainer.devices=abc": "trainer.devices='abc'; expected auto, a count >= 1",
    "trainer.val_check_interval=abc": "trainer.val_check_interval='abc'; expected steps",
    "trainer.val_check_interval=0": "trainer.val_check_interval=0; expected steps",
    "trainer.max_steps=0": "trainer.max_steps=0; expected an integer >= 1",
    "trainer.log_every_n_steps=0": "trainer.log_every_n_steps=0; expected an integer >= 1",
    "trainer.precision=fp7": "trainer.precision='fp7'; expected one of",
    "model.max_new_tokens=-5": "model.max_new_tokens must be >= 0",
    "data.n_tokens=abc": "invalid config value: `data.n_tokens`: Value 'abc' of type 'str' could not be converted to Integer",
    "data.n_tokens=???": "`data.n_tokens` is ??? (mandatory)",
    "data.val_per_mille=-5": "data.val_per_mille=-5",
    "eval.num_samples=0": "eval.num_samples must be >= 1, got 0",
    # A mapping where the schema has a list: OmegaConf does not name the key, we do.
    "model.encoder.lora.target_modules={x: 1}": "invalid config value: `model.encoder.lora.target_modules`: Cannot merge "
                                                "incompatible container types (expected a list)",
}


@pytest.mark.parametrize("override", list(BAD_OVERRIDES))
def test_bad_values_are_refused_before_a_model_loads(tmp_path, capsys, override):
    _fails_cleanly(capsys, ["train", AOC, override, f"output_dir={tmp_path / 'runs'}"], BAD_OVERRIDES[override])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["3", "-1", "x"])
def test_byte_model_kv_heads_must_divide_the_heads(tmp_path, capsys, value):
    bytes_yaml = os.path.join(os.path.dirname(AOC), "..", "bytes", "bytes.yaml")
    _fails_cleanly(capsys, ["train", bytes_yaml, f"model.kv_heads={value}", f"output_dir={tmp_path / 'runs'}"],
                   "model.kv_heads" if value == "x" else f"model.kv_heads={value}; expected 0 (one per head) or a divisor")
    assert not (tmp_path / "runs").exists()


def test_the_lm_coders_dtype_is_checked_with_the_config(tmp_path, capsys):
    bytes_yaml = os.path.join(os.path.dirname(AOC), "..", "bytes", "bytes.yaml")
    _fails_cleanly(capsys, ["train", bytes_yaml, "codecs.lm_dtype=float8", f"output_dir={tmp_path / 'runs'}"],
                   "codecs.lm_dtype='float8'; expected one of ['float32', 'bfloat16', 'float16']")
    assert not (tmp_path / "runs").exists()


def test_a_gpu_run_is_valid_anywhere_but_trains_only_where_there_is_a_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["check-config", AOC]) == 0
    capsys.readouterr()
    _fails_cleanly(capsys, ["train", AOC, "trainer.accelerator=gpu", f"output_dir={tmp_path / 'runs'}"],
                   "trainer.accelerator=gpu but this machine has no CUDA GPU")
    assert not (tmp_path / "runs").exists()


def _bad_data(tmp_path):
    import gzip
    import json

    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    records = gzip.compress("\n".join(json.dumps({"abstract": "word " * 200}) for _ in range(300)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(records[: len(records) // 2])
    return {
        "nope.jsonl": "data.source='nope.jsonl': no such file",
        "nope/file.jsonl": "data.source='nope/file.jsonl': no such file",
        # Checked before any model loads (records.check_local_source), not when the reader gets there.
        str(tmp_path / "bad.jsonl.gz"): "bad.jsonl.gz: not a complete gzip file (BadGzipFile: Not a gzipped file",
        str(tmp_path / "cut.jsonl.gz"): "cut.jsonl.gz: not a complete gzip file (EOFError: Compressed file ended",
    }


def test_bad_data_files_are_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nope.jsonl must not exist here either
    for source, match in _bad_data(tmp_path).items():
        _fails_cleanly(capsys, ["train", AOC, f"data.source={source}", "decoder.source=tiny-random", "trainer.max_steps=2",
                                "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
                                f"output_dir={tmp_path / 'runs'}"], match)
        assert not (tmp_path / "runs").exists()  # refused before a run folder or a model


EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")
JUNK = [None, -5, 0, 10**12, 1.5, -0.5, "abc", "", "???", "${nope}", "${oc.env:LCOMPRESS_NOPE}", [1, 2], {"a": 1}, True, [], {}]


def _mutated_configs(count: int, seed: int = 0):
    """(name, YAML text) of `count` experiment and grid files with one fault each: a value
    replaced by junk of another type or range, a key deleted or invented, or a YAML syntax error."""
    import glob
    import random

    import yaml

    rng = random.Random(seed)
    files = sorted(glob.glob(os.path.join(EXPERIMENTS, "*", "*.yaml")))
    for index in range(count):
        source = rng.choice(files)
        data = yaml.safe_load(open(source))
        if isinstance(data.get("base"), str):  # keep `base:` resolvable from the temporary folder
            data["base"] = os.path.abspath(os.path.join(os.path.dirname(source), data["base"]))
        paths, stack = [], [((), data)]
        while stack:
            prefix, node = stack.pop()
            for key, value in node.items():
                (stack.append((prefix + (key,), value)) if isinstance(value, dict) and value else paths.append(prefix + (key,)))
        path = rng.choice(paths)
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        kind = rng.randrange(4)
        if kind == 0:
            parent[path[-1]] = rng.choice(JUNK)
        elif kind == 1:
            del parent[path[-1]]
        elif kind == 2:
            parent[f"{path[-1]}_typo"] = 1
        text = yaml.safe_dump(data)
        if kind == 3:
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice([": :", "{", "\t- ", "]", "'"]) + text[at:]
        yield f"{index}-{os.path.basename(source)}", text


def test_200_mutated_configs_end_in_ok_or_one_line_never_an_internal_error(tmp_path, capsys):
    refused = 0
    for name, text in _mutated_configs(200):
        path = tmp_path / name
        path.write_text(text)
        code = main(["check-config", str(path)])
        error = capsys.readouterr().err.strip()
        assert code in (0, EXIT_USER_ERROR), (name, code, error)
        if code:
            refused += 1
            # One line that names the file or the key at fault.
            assert len(error.splitlines()) == 1 and (str(path) in error or "`" in error or "=" in error), (name, error)
    assert refused > 100, f"only {refused} of 200 faults were caught"


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a real full disk."""
    mount = tmp_path / "full"
    mount.mkdir()
    yield from _mounted_tmpfs(mount, "size=64k")


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, full_disk, capsys):
    big = tmp_path / "big.txt"
    big.write_bytes(b" " * 100_000)  # few tokens (long runs of spaces merge), more than the 64 KiB disk holds
    packed = tmp_path / "big.lclm"
    assert main(["compress", str(big), str(packed), "--lm", "tiny-random", "--window", "512", "--batch", "64"]) == 0
    capsys.readouterr()
    target = full_disk / "big.txt"
    _fails_cleanly(capsys, ["decompress", str(packed), str(target)], "No space left on device", written=[str(target)])
    assert os.listdir(full_disk) == []


def test_eval_overrides_get_the_same_one_line_as_train(capsys):
    fixture = os.path.join(os.path.dirname(__file__), "..", "fixtures", "legacy_prompt_v1.ckpt")
    _fails_cleanly(capsys, ["eval", fixture, "data.n_tokens=abc"],
                   "invalid config value: `data.n_tokens`: Value 'abc' of type 'str' could not be converted to Integer")
    _fails_cleanly(capsys, ["eval", fixture, "eval.num_samples=0"], "eval.num_samples must be >= 1, got 0")
