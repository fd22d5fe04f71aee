"""The cram task's verbs: `lcompress cram CONFIG` and `lcompress cram-decode FILE`."""

from __future__ import annotations


def _cram(args) -> int:
    from ...config import load_config
    from .run import run_cram

    run_cram(load_config(args.config, args.overrides))
    return 0


def _decode(args) -> int:
    from .vectors import decode_file

    decoded = decode_file(args.file, args.source)
    for entry in decoded:
        print(f"[{entry['text_index']}] {'same text' if entry['matches'] else 'DIFFERS from the crammed text'}: {entry['text']}")
    same = sum(e["matches"] for e in decoded)
    print(f"{same}/{len(decoded)} texts regenerated exactly")
    return 0 if same == len(decoded) else 1


def add_commands(sub) -> None:
    p = sub.add_parser("cram", help="cram: optimise k input vectors per text until the frozen LM regenerates it")
    p.add_argument("config", help="experiment YAML with task: cram, e.g. experiments/cram/cram.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. cram.length=64 cram.vectors=2")
    p.set_defaults(run=_cram)
    p = sub.add_parser("cram-decode", help="cram: regenerate the texts of a vectors.pt written by `lcompress cram`")
    p.add_argument("file")
    p.add_argument("--source", help="the model, if it moved (default: the source recorded in the file)")
    p.set_defaults(run=_decode)
