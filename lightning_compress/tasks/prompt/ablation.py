"""The prompt task's sweep: encoder x (n, m) cells (AOC's LoRA ablation), BLEU vs n/m.

    lcompress ablation experiments/prompt/lora_ablation.yaml    (= lcompress sweep ...)

The generic sweep (`lightning_compress/sweep.py`) runs the cells, reuses finished ones and
records failed ones; this module gives it the axes, the data check and the figure. Before
anything trains it refuses unknown encoder names, pairs that are not [n, m] with
1 <= m <= n, and an n the data cannot supply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import ConfigError
from ...reports import finish_figure, new_figure
from ...sweep import SweepConfig, SweepSpec
from .config import ENCODER_NAMES, TASK

COLUMNS = ["encoder", "n", "m", "ratio", "bleu", "exact_match", "prefix_match", "rouge_l", "rouge_l_paper", "token_accuracy", "trainable_params"]


@dataclass
class AblationGridConfig(SweepConfig):
    task: str = TASK
    run: str = "aoc.yaml"
    name: str = "ablation"
    encoders: list = field(default_factory=lambda: list(ENCODER_NAMES))
    # (n, m) pairs: prompt tokens, memory slots.
    pairs: list = field(default_factory=lambda: [[16, 4]])


def cells(grid: AblationGridConfig, where: str) -> list[tuple[str, dict, list[str]]]:
    for encoder in grid.encoders:
        if encoder not in ENCODER_NAMES:
            raise ConfigError(f"{where}: encoders: unknown encoder {encoder!r}; expected some of {ENCODER_NAMES}")
    if not grid.encoders or not grid.pairs:
        raise ConfigError(f"{where}: `encoders` and `pairs` must each list at least one entry")
    for pair in grid.pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, int) and v >= 1 for v in pair)):
            raise ConfigError(f"{where}: pairs: {pair!r} is not an [n, m] pair of positive integers")
        if pair[1] > pair[0]:
            raise ConfigError(f"{where}: pairs: m={pair[1]} > n={pair[0]} would expand, not compress, the prompt")
    return [
        (f"{encoder}_n{n}_m{m}", {"encoder": encoder, "n": n, "m": m, "ratio": n / m},
         [f"model.encoder.name={encoder}", f"data.n_tokens={n}", f"model.memory_tokens={m}"])
        for encoder in grid.encoders for n, m in grid.pairs
    ]


def check_data_supply(cells: list) -> None:
    """Refuse an n the data cannot supply, before anything trains: the splits must hold the
    validation and test prompts the config asks for, and training at least one batch."""
    from data_modules.arxiv_abstracts import probe_supply
    from data_modules.records import resolve_local

    from ...backbone import load_tokenizer

    seen = {}
    for cell in cells:
        cfg = cell.config
        resolve_local(cfg.data.source)
        # With data.pad_to_n every non-empty text is a prompt (padded up to n).
        shortest = 1 if cfg.data.pad_to_n else cfg.data.n_tokens
        key = (cfg.decoder.source, cfg.data.source, cfg.data.text_field, shortest, cfg.data.val_per_mille, cfg.data.test_per_mille)
        if key not in seen:
            tokenizer = load_tokenizer(cfg.decoder.source)
            seen[key] = probe_supply(cfg.data.source, tokenizer, shortest, cfg.data.text_field,
                                     cfg.data.val_per_mille, cfg.data.test_per_mille, cfg.data.hub_split)
        counts = seen[key]
        needs = {"train": cfg.data.batch_size, "val": min(cfg.data.val_size, 1), "test": 1}
        if counts["complete"]:
            needs["val"] = cfg.data.val_size
            needs["test"] = cfg.eval.num_samples if cfg.eval.split == "test" else 1
        short = [f"{split}: {counts[split]} < {need}" for split, need in needs.items() if counts[split] < need]
        if short:
            scope = "the whole source" if counts["complete"] else f"the first {counts['records']} records"
            raise ConfigError(
                f"cell {cell.name}: data.source={cfg.data.source!r} cannot supply prompts of n={cfg.data.n_tokens} "
                f"tokens: texts with at least {shortest} tokens in {scope} per split: {'; '.join(short)} "
                f"(needed: data.batch_size for train, data.val_size for val, eval.num_samples for test); "
                "data.pad_to_n=true pads shorter texts up to n, as the papers do"
            )


def bleu_figure(rows: list[dict], title: str):
    """BLEU vs compression ratio n/m, one line per encoder (failed cells left out)."""
    figure, axis = new_figure()
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        points = sorted((r["ratio"], r["bleu"]) for r in rows if r["encoder"] == encoder and r["status"] == "ok")
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=encoder)
    axis.set_xscale("log", base=2)
    ratios = sorted({r["ratio"] for r in rows})
    axis.set_xticks(ratios, [f"{r:g}" for r in ratios])
    axis.minorticks_off()
    return finish_figure(figure, axis, "compression ratio n / m", "BLEU-4 (test)", title)


def _title(grid, cells) -> str:
    cfg = cells[0].config
    return f"{grid.name}: {cfg.decoder.source} decoder, {cfg.trainer.max_steps} steps"


ABLATION = SweepSpec(
    schema=AblationGridConfig, cells=cells, columns=COLUMNS, figure=bleu_figure, figure_name="bleu_vs_ratio",
    title=_title, preflight=check_data_supply,
    # Grid files written before `kind: sweep` are recognised by their (n, m) pairs.
    recognise=lambda user: "kind" not in user and "pairs" in user,
)
