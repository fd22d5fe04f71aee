"""Checkpoint writing that never leaves a half-written file behind."""

from __future__ import annotations

from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)
