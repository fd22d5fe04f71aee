"""Runs a prompt-task sweep where building the cell with model.memory_tokens=3 raises on
rank 1 only (as a data shard or a file visible to one node might), to show that every rank
then records that cell as failed and both go on to the next cell together. Started by a test
under torchrun.

    python sweep_one_rank_fails.py GRID.yaml key=value ...
"""

import os
import sys

from lightning_compress.sweep import run_sweep
from lightning_compress.tasks.prompt import module as prompt_module

_original_init = prompt_module.PromptCompressor.__init__


def _init_failing_on_rank_1(self, config, backbone=None):
    if os.environ.get("RANK") == "1" and config.model.memory_tokens == 3:
        raise RuntimeError("injected failure on rank 1")
    _original_init(self, config, backbone)


prompt_module.PromptCompressor.__init__ = _init_failing_on_rank_1

if __name__ == "__main__":
    records = run_sweep(sys.argv[1], sys.argv[2:])
    status = {r["cell"]: r["status"] for r in records}
    with open(os.path.join(os.path.dirname(sys.argv[1]), f"status{os.environ['RANK']}.txt"), "w") as handle:
        handle.write(" ".join(f"{k}={v}" for k, v in sorted(status.items())))
    sys.exit(1 if "failed" in status.values() else 0)
