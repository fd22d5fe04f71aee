"""One stamp and one safe loader for every task's checkpoints: a crafted file cannot run
code, and a missing, empty, truncated, damaged, foreign or wrong-task file is refused with
one clear line; checkpoints of earlier releases still load."""

import os
import zipfile

import pytest
import torch

from lightning_compress.checkpoint_io import (
    FORMAT, AtomicCheckpointIO, CheckpointError, load_checkpoint, stamp_checkpoint, weights_checksum,
)
from lightning_compress.cli import main

from helpers import REPO

FIXTURES = REPO / "tests" / "fixtures"


def _stamped(path, task="bytes", **extra):
    state = {"net.weight": torch.arange(4096, dtype=torch.float32).reshape(64, 64), "net.bias": torch.ones(64)}
    checkpoint = {"state_dict": state, "hyper_parameters": {}, **extra}
    stamp_checkpoint(checkpoint, task, {"task": task, "name": "x"}, {"source": "s", "fingerprint": "f"})
    torch.save(checkpoint, path)
    return path


def test_stamp_round_trip(tmp_path):
    loaded = load_checkpoint(_stamped(tmp_path / "a.ckpt"))
    assert (loaded.task, loaded.config["name"], loaded.backbone) == ("bytes", "x", {"source": "s", "fingerprint": "f"})
    assert loaded.raw["lightning_compress"]["format"] == FORMAT
    assert loaded.raw["lightning_compress"]["weights_sha256"] == weights_checksum(loaded.state_dict)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_cannot_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    # Resuming reads through the same loader.
    with pytest.raises(CheckpointError, match="could run code"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crafted.ckpt" in err and "could run code" in err
    assert not marker.exists(), "loading the checkpoint ran its code"


def _damage(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _tensor_offset(path) -> int:
    """Byte offset of the first tensor's data inside the checkpoint's zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 4096)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
    return info.header_offset + 30 + name_len + extra_len + 100


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p: p.write_text("step,loss\n1,2.0\n"), "not a checkpoint: not a PyTorch file"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("notes.txt", "hello"), "not a PyTorch checkpoint"),
        (lambda p: p.write_bytes(_stamped(p).read_bytes()[: p.stat().st_size // 2]), "truncated or damaged"),
        (lambda p: _damage(_stamped(p), _tensor_offset(p)), "damaged"),
        (lambda p: torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, p), "not a lightning_compress checkpoint"),
        (lambda p: torch.save([1, 2, 3], p), "holds a list"),
    ],
    ids=["missing", "empty", "text", "foreign zip", "truncated", "damaged weights", "foreign Lightning", "not a dict"],
)
def test_bad_files_are_refused_with_one_line(tmp_path, capsys, make, message):
    path = tmp_path / "model.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert main(["eval", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_checksum_catches_weights_changed_after_saving(tmp_path):
    path = _stamped(tmp_path / "a.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["net.bias"][3] = 2.0
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        load_checkpoint(path)


def test_wrong_task_and_newer_format_are_refused(tmp_path):
    path = _stamped(tmp_path / "a.ckpt", task="bytes")
    with pytest.raises(CheckpointError, match="is a `bytes` checkpoint; this command needs a `prompt` checkpoint"):
        load_checkpoint(path, task="prompt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["lightning_compress"]["format"] = FORMAT + 1
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="newer lightning_compress"):
        load_checkpoint(path)


def test_checkpoints_of_earlier_releases_load():
    prompt = load_checkpoint(FIXTURES / "legacy_prompt_v1.ckpt")
    assert prompt.task == "prompt" and prompt.backbone["source"] == "tiny-random" and prompt.state_dict
    byte = load_checkpoint(FIXTURES / "legacy_bytes_v0.ckpt")
    assert byte.task == "bytes" and byte.config["model"]["size"] == "tiny"
    with pytest.raises(CheckpointError, match="needs a `prompt`"):
        load_checkpoint(FIXTURES / "legacy_bytes_v0.ckpt", task="prompt")


def test_checksum_covers_every_weight_dtype():
    # The checksum reads raw tensor bytes: every dtype a model saves must be viewable.
    sums = {weights_checksum({"t": torch.zeros(3, dtype=dtype)}) for dtype in
            (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool)}
    assert len(sums) == 5, "dtype or shape not part of the checksum"


def _dead_pid() -> int:
    pid = 2**22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_stale_temporaries_of_killed_writers_are_removed_and_never_read_as_checkpoints(tmp_path):
    from lightning_compress.atomic import atomic_write_bytes

    target = tmp_path / "best.ckpt"
    stale = tmp_path / f".best.ckpt.tmp-{_dead_pid()}"
    live = tmp_path / f".best.ckpt.tmp-{os.getppid()}"  # a writer that still runs: left alone
    other = tmp_path / f".other.ckpt.tmp-{_dead_pid()}"  # another file's: not ours to judge here
    for path in (stale, live, other):
        path.write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(CheckpointError, match="temporary file of an interrupted or unfinished write"):
        load_checkpoint(stale)
    atomic_write_bytes(target, b"done")
    assert target.read_bytes() == b"done"
    assert not stale.exists() and live.exists() and other.exists()


def test_a_stamp_with_fake_metadata_is_refused_before_any_model_loads(tmp_path, capsys):
    fake = tmp_path / "fake.ckpt"
    torch.save({"state_dict": {}, "lightning_compress": {"format": 2, "task": "prompt"}}, fake)
    assert main(["eval", str(fake)]) == 2
    error = capsys.readouterr().err
    assert "stamp is incomplete" in error and "Loading weights" not in error
