"""SentenceAutoencoder: a sentence -> ONE vector -> the sentence.

Encoder: token + learned position embeddings, L bidirectional pre-norm transformer layers, a
pooling to one vector of `width` values (mean over real tokens, a learned query attending
over them, or the first token's output), then a LayerNorm.

Decoder: L causal pre-norm transformer layers over [vector, y_1 .. y_{t-1}] predicting
y_1 .. y_T, EOS. Its only inputs are the vector and its own previous tokens (teacher forcing
feeds the reference tokens in training; generation feeds back its own argmaxes), so nothing
of the input sentence reaches it except through the vector. With `conditioning="every"` a
learned linear map of the vector is also added to every decoder input: each position then
reads the sentence from its own input instead of only through attention to position 0, which
is what a 1-layer decoder otherwise learns slowly (it falls back on being a language model).

Vocabulary: the tokenizer's ids (or the compact ids of a trimmed vocabulary, whose last id is
UNK: tokens not seen in training; never generated), then EOS and PAD of our own (ids V and V+1),
whatever the tokenizer's specials are.
"""

from __future__ import annotations

import torch
from torch import nn

from .precision import fake_quantize


def _layers(width: int, heads: int, ffn_mult: int, dropout: float, count: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, ffn_mult * width, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, count, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class SentenceAutoencoder(nn.Module):
    def __init__(self, vocab: int, width: int = 512, layers: int = 1, heads: int = 8, ffn_mult: int = 4,
                 dropout: float = 0.0, max_tokens: int = 32, pooling: str = "mean", tie_embeddings: bool = True,
                 conditioning: str = "first", unk: int | None = None):
        super().__init__()
        self.vocab, self.eos, self.pad, self.unk = vocab, vocab, vocab + 1, unk
        self.max_tokens, self.pooling, self.conditioning = max_tokens, pooling, conditioning
        self.embed = nn.Embedding(vocab + 2, width)
        self.encoder_positions = nn.Embedding(max_tokens, width)
        self.decoder_positions = nn.Embedding(max_tokens + 1, width)
        self.encoder = _layers(width, heads, ffn_mult, dropout, layers)
        self.decoder = _layers(width, heads, ffn_mult, dropout, layers)
        if pooling == "query":
            self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
            self.pool_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.vector_norm = nn.LayerNorm(width)
        if conditioning == "every":
            self.condition = nn.Linear(width, width, bias=False)
        self.head = nn.Linear(width, vocab + 2, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        # One scale for tokens and positions: nn.Embedding's default N(0, 1) positions would
        # drown the tokens' N(0, 0.02) and leave the encoder nearly blind to which token is where.
        for table in (self.embed, self.encoder_positions, self.decoder_positions):
            nn.init.normal_(table.weight, std=0.02)

    @property
    def width(self) -> int:
        return self.embed.embedding_dim

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T] ids (padded) -> [B, width] sentence vectors."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        padding = positions[None, :] >= lengths[:, None].to(ids.device)
        hidden = self.encoder(self.embed(ids) + self.encoder_positions(positions), src_key_padding_mask=padding)
        if self.pooling == "first":
            pooled = hidden[:, 0]
        elif self.pooling == "query":
            pooled = self.pool_attention(self.query.expand(len(ids), -1, -1), hidden, hidden,
                                         key_padding_mask=padding, need_weights=False)[0][:, 0]
        else:
            keep = (~padding).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * keep).sum(1) / keep.sum(1)
        return self.vector_norm(pooled)

    def decode_hidden(self, vectors: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Decoder states [B, t+1, width] over [vector, previous[:, :t]]."""
        inputs = torch.cat([vectors.unsqueeze(1), self.embed(previous)], 1)
        if self.conditioning == "every":
            inputs = inputs + self.condition(vectors).unsqueeze(1)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        causal = nn.Transformer.generate_square_subsequent_mask(inputs.shape[1], device=inputs.device, dtype=inputs.dtype)
        return self.decoder(inputs + self.decoder_positions(positions), mask=causal, is_causal=True)

    def decode_logits(self, vectors: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Logits [B, t+1, V+2] of the next token after [vector, previous[:, :t]]."""
        return self.head(self.decode_hidden(vectors, previous))

    def targets(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T+1]: the tokens, then EOS, then PAD."""
        out = torch.full((ids.shape[0], ids.shape[1] + 1), self.pad, dtype=torch.long, device=ids.device)
        out[:, :-1] = ids
        out[torch.arange(len(ids), device=ids.device), lengths.to(ids.device)] = self.eos
        return out

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, precision: str = "float32",
                quantize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced (logits [B, T+1, V+2], targets [B, T+1])."""
        vectors = self.encode(ids, lengths)
        if quantize:
            vectors = fake_quantize(vectors, precision)
        targets = self.targets(ids, lengths)
        previous = targets[:, :-1].masked_fill(targets[:, :-1] == self.pad, self.eos)
        return self.decode_logits(vectors, previous), targets

    @torch.no_grad()
    def generate(self, vectors: torch.Tensor, max_tokens: int | None = None) -> list[list[int]]:
        """Greedy decoding from the vectors alone, until EOS or max_tokens."""
        limit = max_tokens or self.max_tokens
        previous = torch.empty(len(vectors), 0, dtype=torch.long, device=vectors.device)
        done = torch.zeros(len(vectors), dtype=torch.bool, device=vectors.device)
        for _ in range(limit + 1):
            # Only the last position's logits: the head over a large vocabulary dominates a step.
            logits = self.head(self.decode_hidden(vectors, previous)[:, -1])[:, : self.vocab + 1]  # never PAD
            if self.unk is not None:
                logits[:, self.unk] = float("-inf")  # UNK is a token the vocabulary dropped: never an answer
            step = logits.argmax(-1)
            step = step.masked_fill(done, self.eos)
            done |= step == self.eos
            previous = torch.cat([previous, step[:, None]], 1)
            if bool(done.all()) or previous.shape[1] > limit:
                break
        out = []
        for row in previous.tolist():
            out.append(row[: row.index(self.eos)] if self.eos in row else row[:limit])
        return out
