"""`lcompress <command>`: the command-line entry point.

  lcompress train CONFIG [key=value ...]       train the experiment's task, then evaluate it
  lcompress eval CHECKPOINT [key=value ...]    evaluate a checkpoint of any task (the task is in its stamp)
  lcompress sweep GRID [key=value ...]         run a grid of experiments, one table and figure
  lcompress check-config FILE [FILE ...]       validate experiment and grid files without loading models

and each task's own verbs (listed below), added by the task package that owns them.
Every error ends in one line on stderr and an exit code (LCOMPRESS_DEBUG=1 shows the
traceback): 2 for what the user can fix (a config, path, data file, checkpoint or compressed
file, a full disk or a read-only folder), 1 for anything else (a bug: please report it),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from .checkpoint_io import CheckpointError, load_checkpoint
from .config import ConfigError, load_config
from .task import all_tasks, get_task, lazy


def _train(args) -> int:
    from .runner import run_fit

    run_fit(load_config(args.config, args.overrides))
    return 0


def _eval(args) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    task = get_task(checkpoint.task)
    if task.evaluate is None:
        raise ConfigError(f"{args.checkpoint}: task {task.name!r} has no `lcompress eval`")
    return task.evaluate(checkpoint, args.overrides, args.out)


def _check(args) -> int:
    from .sweep import is_sweep_file, load_sweep

    for path in args.configs:
        if is_sweep_file(path):
            _, task, cells = load_sweep(path)
            print(f"ok  {path} ({task.name} grid of {len(cells)} cells)")
        else:
            cfg = load_config(path)
            print(f"ok  {path} ({cfg.task})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    tasks = all_tasks()
    epilog = "tasks:\n" + "\n".join(
        f"  {t.name:<10} {t.description}" + (f"\n             verbs: {', '.join(t.verbs)}" if t.verbs else "") for t in tasks
    )
    parser = argparse.ArgumentParser(prog="lcompress", description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from an experiment YAML (its `task:` says what is trained)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.n_tokens=96")
    p.set_defaults(run=_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint of any task on held-out data (or data.source=FILE)")
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", help="results folder (default: beside the run's checkpoints/)")
    p.set_defaults(run=_eval)
    p = sub.add_parser("sweep", help="train and evaluate every cell of a grid file, then one table and figure")
    p.add_argument("grid", help="grid YAML (kind: sweep), e.g. experiments/prompt/lora_ablation.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell's run config")
    p.set_defaults(run=lazy("lightning_compress.sweep", "sweep_command"))
    p = sub.add_parser("check-config", help="validate experiment and grid YAML files without loading models")
    p.add_argument("configs", nargs="+")
    p.set_defaults(run=_check)
    for task in tasks:
        if task.add_commands is not None:
            task.add_commands(sub)
    return parser


EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


def one_line(err: BaseException) -> str:
    """An exception's message on one line (whitespace runs, newlines included, collapsed)."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("lcompress: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, CheckpointError, ValueError, OSError) as err:
        # OSError: missing files, a directory where a file was expected, a full disk, a
        # read-only folder; writes are atomic, so nothing half-written is left behind.
        if os.environ.get("LCOMPRESS_DEBUG"):
            raise
        print(f"lcompress: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:  # the last resort: never a raw traceback
        if os.environ.get("LCOMPRESS_DEBUG"):
            raise
        print(f"lcompress: internal error: {type(err).__name__}: {one_line(err)} (rerun with LCOMPRESS_DEBUG=1 for the "
              "traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
