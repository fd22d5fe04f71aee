"""The cosine-direction linear autoencoder of "Direction is what you need", trained by Lightning.

A row e (d) is encoded to z = e A^T + a (k) and decoded to e_hat = z W + b (d). What is stored
is the codes of every row, W and b (the encoder is only needed to train): the same tensors as
an SVD, so both are compared at the same parameter count (embedding_factors.py).

Loss (the paper's code, losses/*.py): cos_weight * (1 - cos(e_hat, e)) + lp_weight * mean|e_hat - e|^p,
p annealed linearly from p_start to p_end over the epochs. The cosine term is what the paper
adds: a Llama-style LM normalises its input (RMSNorm) before the first layer reads it, so an
embedding's direction matters more than its length; plain SVD spends its rank on the length
of large rows instead.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from ...embedding_factors import EmbeddingFactors


class EmbeddingAutoencoder(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.encoder = nn.Linear(d, k)
        self.decoder = nn.Linear(k, d)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(rows))

    @torch.no_grad()
    def init_from(self, svd: EmbeddingFactors) -> None:
        """Start at the SVD: z = (e - b) V_k^T, e_hat = z V_k + b."""
        self.encoder.weight.copy_(svd.decoder)
        self.encoder.bias.copy_(-(svd.decoder @ svd.bias))
        self.decoder.weight.copy_(svd.decoder.T)
        self.decoder.bias.copy_(svd.bias)

    @torch.no_grad()
    def factors(self, matrix: torch.Tensor) -> EmbeddingFactors:
        return EmbeddingFactors(self.encoder(matrix).float(), self.decoder.weight.T.float().clone(),
                                self.decoder.bias.float().clone(), method="autoencoder")


def direction_loss(reconstruction: torch.Tensor, rows: torch.Tensor, cos_weight: float, lp_weight: float,
                   p: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's loss per row, averaged over the rows (weighted by `weights` if given)."""
    cosine = 1 - F.cosine_similarity(reconstruction, rows, dim=1)
    # |x|^p with p < 1 has an unbounded slope at 0: a small floor keeps the gradient finite.
    lp = ((reconstruction - rows).abs() + 1e-6).pow(p).mean(1)
    per_row = cos_weight * cosine + lp_weight * lp
    return per_row.mean() if weights is None else (per_row * weights).sum() / weights.sum()


class EmbeddingAutoencoderModule(pl.LightningModule):
    """Trains an EmbeddingAutoencoder over the rows of `matrix`; validation = perplexity of
    the LM with the reconstruction as its input embedding, on the validation texts. With
    `row_weights` (beyond the paper: token frequencies) each row's loss counts by its weight."""

    def __init__(self, matrix: torch.Tensor, k: int, settings, scorer=None, init: EmbeddingFactors | None = None,
                 head: torch.Tensor | None = None, row_weights: torch.Tensor | None = None):
        super().__init__()
        self.save_hyperparameters({"k": k, **dict(settings)})
        self.settings = settings
        self.autoencoder = EmbeddingAutoencoder(matrix.shape[1], k)
        if init is not None:
            self.autoencoder.init_from(init)
        self.matrix = matrix.detach().float()  # not a buffer: kept out of the checkpoints
        self.scorer = scorer
        self.head = matrix if head is None else head  # the LM's output matrix, kept original (input mode)
        self.row_weights = torch.ones(len(matrix)) if row_weights is None else row_weights.float()

    def p(self) -> float:
        s = self.settings
        fraction = self.current_epoch / max(1, s.epochs - 1)
        return s.p_start + (s.p_end - s.p_start) * min(1.0, fraction)

    def train_dataloader(self):
        # Whole batches drawn by index (one tensor gather a batch, not batch_size item calls).
        sampler = BatchSampler(RandomSampler(self.matrix, generator=torch.Generator().manual_seed(0)),
                               self.settings.batch_size, drop_last=False)
        return DataLoader(TensorDataset(self.matrix, self.row_weights), batch_size=None, sampler=sampler)

    def val_dataloader(self):
        return DataLoader([0], batch_size=None)  # one step: the scorer walks its own texts

    def training_step(self, batch, batch_idx):
        rows, weights = batch
        s = self.settings
        loss = direction_loss(self.autoencoder(rows), rows, s.cos_weight, s.lp_weight, self.p(), weights)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/p", self.p())
        return loss

    def validation_step(self, batch, batch_idx):
        matrix = self.matrix.to(self.device)
        reconstruction = self.autoencoder.factors(matrix).matrix()
        cosine = 1 - F.cosine_similarity(reconstruction, matrix, dim=1).mean()
        self.log("val/cosine_distance", cosine, batch_size=1)
        if self.scorer is not None:
            score = self.scorer.score(reconstruction, {"input": self.head})["input"]
            self.log("val/perplexity", score["perplexity"], prog_bar=True, batch_size=1)

    def configure_optimizers(self):
        s = self.settings
        optimizer = torch.optim.Adam(self.autoencoder.parameters(), lr=s.lr)
        return {"optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, s.lr_step_epochs, s.lr_gamma)}
