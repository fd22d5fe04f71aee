"""The shared AdamW: fused where Lightning allows it, foreach where its mixed precision would refuse."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.optimizers import adamw


class Regression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return adamw(self, self.parameters(), lr=1e-2)


@pytest.mark.parametrize("precision, fused", [("32-true", True), ("bf16-mixed", False)])
def test_fused_where_lightning_allows_clipping_with_it(precision, fused, tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    module = Regression()
    before = module.layer.weight.detach().clone()
    # Gradient clipping with a fused optimiser under a mixed-precision plugin raises in
    # Lightning: the run must train either way.
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", precision=precision, gradient_clip_val=1.0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(data, batch_size=4))
    assert bool(trainer.optimizers[0].defaults["fused"]) is fused
    assert not torch.equal(module.layer.weight, before)


def test_a_module_outside_a_trainer_gets_the_fused_kernel():
    module = Regression()
    assert adamw(module, module.parameters(), lr=1e-3).defaults["fused"] is True
