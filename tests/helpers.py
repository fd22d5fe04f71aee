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
