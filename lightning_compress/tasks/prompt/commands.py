"""The prompt task's verbs: `lcompress ablation` (the sweep of encoders x (n, m) pairs)."""

from __future__ import annotations

from ...task import lazy


def add_commands(sub) -> None:
    p = sub.add_parser("ablation", help="prompt: train and evaluate a grid of encoders x (n, m) pairs (= sweep)")
    p.add_argument("grid", help="grid YAML, e.g. experiments/prompt/lora_ablation.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell's run config")
    p.set_defaults(run=lazy("lightning_compress.sweep", "sweep_command"))
