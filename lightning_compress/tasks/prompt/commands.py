"""The prompt task's verbs: `lcompress ablation` (the sweep of encoders x (n, m) pairs)."""

from __future__ import annotations


def _ablation(args) -> int:
    from ...sweep import run_sweep

    records = run_sweep(args.grid, args.overrides)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def add_commands(sub) -> None:
    p = sub.add_parser("ablation", help="prompt: train and evaluate a grid of encoders x (n, m) pairs (= sweep)")
    p.add_argument("grid", help="grid YAML, e.g. experiments/prompt/lora_ablation.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell's run config")
    p.set_defaults(run=_ablation)
