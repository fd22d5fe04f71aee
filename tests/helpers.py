"""Helpers shared by tests."""

from pathlib import Path

import pytest
import torch


def overfit_until_exact(module, ids: torch.Tensor, lr: float, max_steps: int, check_every: int) -> tuple[str, str, int]:
    """Train `module` on one batch of prompts until greedy regeneration reproduces them.
    Returns (regenerated, reference, steps taken) of the first prompt."""
    reference = module.decode(ids.tolist())[0]
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    regenerated = None
    for step in range(1, max_steps + 1):
        loss, _ = module.loss_and_accuracy(ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % check_every == 0:
            regenerated = module.regenerate(ids)[0]
            if regenerated == reference:
                break
    return regenerated, reference, step


# The project's sample sets live beside the checkout (../shared/data), as in CI; tests that
# read them are marked with `needs_shared_data` and skip with this reason when it is absent.
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SHARED_DATA_MISSING = f"sample data not found at {SHARED_DATA} (../shared/data beside the checkout, as in CI)"
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=SHARED_DATA_MISSING)

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"

# What makes the CPU default run (experiments/prompt/aoc.yaml) small enough for a unit test.
SHRINK_PROMPT = [
    "decoder.source=tiny-random", "data.n_tokens=12", "data.batch_size=4", "data.val_size=4", "model.memory_tokens=3",
    "model.encoder.lora.r=4", "eval.num_samples=4", "eval.batch_size=4", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]


def mutated(blob: bytes, count: int, seed: int = 0) -> list[bytes]:
    """`count` damaged copies of a file, as a fuzzer would make them: bit flips (anywhere, and
    in the first 64 bytes where headers live), truncations, inserted, deleted and overwritten
    runs, appended junk, and the empty file."""
    import random

    rng = random.Random(seed)
    out = [b""]
    while len(out) < count:
        data = bytearray(blob)
        kind = rng.randrange(6)
        if kind == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[rng.randrange(min(64, len(data)))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del data[rng.randrange(len(data)):]
        elif kind == 3:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 4:
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 8)]
        else:
            at = rng.randrange(len(data))
            data[at : at + 4] = bytes(rng.randrange(256) for _ in range(4))
        if bytes(data) != blob:
            out.append(bytes(data))
    return out


def assert_cli_refuses(argv_of, blobs: list[bytes], folder, capsys) -> None:
    """Each blob, written to a file and given to the CLI (`argv_of(path, out)`), ends in exit
    code 2 with one line on stderr and no output file: no traceback, no internal error."""
    import os

    from lightning_compress.cli import main

    source, out = os.path.join(folder, "fuzzed.bin"), os.path.join(folder, "fuzzed.out")
    for index, blob in enumerate(blobs):
        with open(source, "wb") as handle:
            handle.write(blob)
        code = main(argv_of(source, out))
        error = capsys.readouterr().err.strip()
        assert code == 2 and len(error.splitlines()) == 1 and "internal error" not in error, (index, code, error)
        assert not os.path.exists(out), f"mutation {index} wrote an output"
