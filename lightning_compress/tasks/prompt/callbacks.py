"""Rank-zero callbacks that show what the memory holds, as TensorBoard text tables.

Both use fixed validation prompts (the first usable ones of the val split), so tables from
different steps compare the same texts.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from ...metrics import exact_match, prefix_match, sentence_bleu4
from ...reports import headed_cell, markdown_table


def _fixed_prompts(trainer, count: int) -> torch.Tensor | None:
    datamodule = trainer.datamodule
    if datamodule is None or count <= 0:
        return None
    examples = datamodule.first_examples("val", count)
    if not examples:
        return None
    return torch.stack([e["input_ids"] for e in examples])


def _log_text(trainer, tag: str, text: str) -> None:
    logger = trainer.logger
    if logger is not None and hasattr(logger.experiment, "add_text"):
        logger.experiment.add_text(tag, text, global_step=trainer.global_step)


class RegenerationSamples(Callback):
    """Reference vs regenerated text of fixed validation prompts after each validation."""

    def __init__(self, num_samples: int = 4):
        self.num_samples = num_samples
        self._prompts = None

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        if self._prompts is None:
            self._prompts = _fixed_prompts(trainer, self.num_samples)
        if self._prompts is None:
            return
        ids = self._prompts.to(module.device)
        outputs = module.regenerate(ids)
        references = module.decode(ids.tolist())
        rows = [[headed_cell(f"#{i}", ref),
                  headed_cell(f"BLEU {sentence_bleu4(ref, out):.2f} · prefix {prefix_match(ref, out):.2f} · "
                              f"exact {'yes' if exact_match(ref, out) else 'no'}", out)]
                for i, (ref, out) in enumerate(zip(references, outputs))]
        _log_text(trainer, "regeneration/samples", markdown_table(["reference", "regenerated"], rows))


class LatentInterpolation(Callback):
    """Regenerate from memories between two compressed prompts, linear and spherical."""

    def __init__(self, points: int = 5):
        if points < 2:
            raise ValueError("interpolation needs at least 2 points (both ends)")
        self.points = points
        self._prompts = None

    def table(self, module, ids: torch.Tensor) -> str:
        with torch.no_grad():
            memory = module.compress(ids).detach()
        a, b = memory.select(slice(0, 1)), memory.select(slice(1, 2))
        ts = [i / (self.points - 1) for i in range(self.points)]
        columns = {}
        for method in ("lerp", "slerp"):
            mixed = [getattr(a, method)(b, t) for t in ts]
            batch = type(memory)(
                [torch.cat([m.keys[l] for m in mixed]) for l in range(len(memory.keys))],
                [torch.cat([m.values[l] for m in mixed]) for l in range(len(memory.values))],
            )
            columns[method] = module.regenerate_memory(batch)
        first, second = module.decode(ids[:2].tolist())
        # The two prompts being mixed (t = 0 is A, t = 1 is B), then one row per t.
        ends = markdown_table(["A (t = 0)", "B (t = 1)"], [[first, second]])
        rows = [[headed_cell(f"t = {t:.2f}", lerp), headed_cell(f"t = {t:.2f}", slerp)]
                for t, lerp, slerp in zip(ts, columns["lerp"], columns["slerp"])]
        return ends + "\n\n" + markdown_table(["lerp", "slerp"], rows)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        if self._prompts is None:
            self._prompts = _fixed_prompts(trainer, 2)
        if self._prompts is None or len(self._prompts) < 2:
            return
        _log_text(trainer, "regeneration/interpolation", self.table(module, self._prompts.to(module.device)))
