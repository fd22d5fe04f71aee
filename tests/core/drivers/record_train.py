"""Runs `lightning_compress.runner.run_fit` with callbacks that record, per rank, what each
process saw: the texts of every training and validation batch (with the step that used it),
the reduced validation metrics, and what files exist. Optionally SIGKILLs itself after a
given step, like a pre-empted job. Started by tests, directly or under torchrun.

    python record_train.py OUT_DIR [--kill-after-step K] key=value ...
"""

import argparse
import json
import os
import signal
import sys

from lightning.pytorch.callbacks import Callback

from lightning_compress.config import load_config
from lightning_compress.runner import run_fit as train


class Recorder(Callback):
    def __init__(self, out_dir: str, kill_after_step: int | None):
        self.out_dir, self.kill_after_step = out_dir, kill_after_step
        self.handle = None

    def _write(self, trainer, record: dict) -> None:
        if self.handle is None:
            path = os.path.join(self.out_dir, f"rank{trainer.global_rank}.jsonl")
            self.handle = open(path, "a", encoding="utf-8")
        self.handle.write(json.dumps({"rank": trainer.global_rank, "pid": os.getpid(), "world_size": trainer.world_size, **record}) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())  # survives the SIGKILL below

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._write(trainer, {"kind": "train", "step": trainer.global_step, "texts": batch["text"]})
        if self.kill_after_step is not None and trainer.global_step >= self.kill_after_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._write(trainer, {"kind": "val_batch", "step": trainer.global_step, "texts": batch["text"]})

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self._write(trainer, {"kind": "val", "step": trainer.global_step, "metrics": metrics})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--kill-after-step", type=int)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    result = train(load_config(None, args.overrides), callbacks=[Recorder(args.out_dir, args.kill_after_step)])
    if result:
        with open(os.path.join(args.out_dir, "result.json"), "w", encoding="utf-8") as handle:
            json.dump({"checkpoint": result["checkpoint"], "run_dir": result["run_dir"], "metrics": result["metrics"]}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
