"""The embeddings task's verb: `lcompress embed-compress CONFIG [key=value ...] [--save FILE]`."""

from __future__ import annotations


def _embed_compress(args) -> int:
    from ...config import load_config
    from .run import run_embed_compress

    run_embed_compress(load_config(args.config, args.overrides), save=args.save)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("embed-compress", help="embeddings: factor the decoder's token embedding (SVD, weighted SVD, "
                                              "cosine autoencoder) and score the LM's perplexity with it")
    p.add_argument("config", help="experiment YAML with task: embeddings, e.g. experiments/embeddings/embed_compress.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. embed.ratios=[2,4] embed.methods=[svd]")
    p.add_argument("--save", metavar="FILE", help="write the compressed embedding (one method, one ratio) as factors; "
                                                  "load it with decoder.embedding_factors=FILE")
    p.set_defaults(run=_embed_compress)
