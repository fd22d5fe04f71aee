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
