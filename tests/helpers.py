"""Helpers shared by tests."""

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
