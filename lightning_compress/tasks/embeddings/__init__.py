"""Token-embedding compression ("Direction is what you need"): a model's input-embedding matrix
stored as low-rank factors by truncated SVD, a token-frequency-weighted SVD, or the
cosine-direction linear autoencoder, scored by the LM's perplexity with the reconstruction.

Config `config.py`, texts `texts.py`, SVD baselines `factorize.py`, the autoencoder and its
LightningModule `autoencoder.py`, perplexity and row errors `score.py`, the command `run.py`,
verbs `commands.py`. The factors file and the factored embedding/head live in the core
(`embedding_factors.py`): every task's decoder can run on them (`decoder.embedding_factors`).
"""

from __future__ import annotations

from ...task import Task, register_task
from .commands import add_commands
from .config import TASK, EmbedExperimentConfig

register_task(Task(
    name=TASK, schema=EmbedExperimentConfig,
    description="embedding compression: the decoder's token embedding as SVD / weighted-SVD / cosine-autoencoder "
                "factors, scored by perplexity",
    add_commands=add_commands, verbs=("embed-compress",),
))
