"""`lcompress <command>`: the command-line entry point.

  lcompress train CONFIG [key=value ...]       train the experiment's task, then evaluate it
  lcompress config CONFIG [key=value ...]      print the resolved config, every key with its comment
  lcompress config --keys [--task NAME]        every key of a task: type, default, comment
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
from .config import ConfigError, load_config, task_of_file
from .config_help import annotated_yaml, keys_reference
from .task import all_tasks, default_task, get_task, lazy


def _task_for(config: str | None, task_name: str | None):
    """The task named by --task, else by the file's `task:`, else the default task."""
    if task_name:
        return get_task(task_name)
    return get_task(task_of_file(config)) if config else default_task()


def _train(args) -> int:
    if args.help or not args.config:
        task = _task_for(args.config, None)
        args.parser.print_help()
        print(f"\nkeys of a `{task.name}` experiment file (another task's: lcompress config --keys --task NAME; "
              f"a run's resolved config: lcompress train CONFIG [key=value ...] --print-config):\n")
        print(keys_reference(task.schema))
        return 0 if args.help else EXIT_USER_ERROR
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        return _print_config(cfg, args.config, get_task(cfg.task))
    from .distributed import close_process_group
    from .runner import run_fit

    run_fit(cfg)
    close_process_group()
    return 0


def _print_config(cfg, path, task) -> int:
    print(f"# resolved config of {path or 'the defaults'} (task {task.name}); run: lcompress train {path or 'CONFIG'}")
    print(annotated_yaml(cfg, task.schema), end="")
    return 0


def _config(args) -> int:
    """`lcompress config [FILE] [key=value ...] [--keys] [--task NAME]`."""
    task = _task_for(args.config, args.task)
    if args.keys:
        print(keys_reference(task.schema))
        return 0
    cfg = load_config(args.config, args.overrides, schema=task.schema if not args.config else None)
    return _print_config(cfg, args.config, task)


def _eval(args) -> int:
    from .run_dir import new_eval_folder, record_evaluated_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    task = get_task(checkpoint.task)
    if task.evaluate is None:
        raise ConfigError(f"{args.checkpoint}: task {task.name!r} has no `lcompress eval`")
    step = checkpoint.raw.get("global_step")
    folder = args.out or str(new_eval_folder(checkpoint.path, step))
    code = task.evaluate(checkpoint, args.overrides, folder)
    record_evaluated_checkpoint(f"{folder}/metrics.json", checkpoint.path, step)
    return code


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
    p = sub.add_parser("train", help="train from an experiment YAML (its `task:` says what is trained)", add_help=False,
                       description="Train the experiment's task, then evaluate its best checkpoint. Smoke test of "
                                   "any config: add trainer.fast_dev_run=true (one training and one validation batch, "
                                   "then the task's evaluation: the whole pipeline in seconds).")
    p.add_argument("config", nargs="?", help="experiment YAML, e.g. experiments/prompt/aoc.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.n_tokens=96")
    p.add_argument("-h", "--help", action="store_true", help="this help and every key of the config's task")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every key, with its comment) and exit without training")
    p.set_defaults(run=_train, parser=p)
    p = sub.add_parser("eval", help="evaluate a checkpoint of any task on held-out data (or data.source=FILE)")
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", help="results folder (default: a new folder <run>/eval/<checkpoint>-step<N>, so the "
                                 "run's own eval_test/ and earlier evaluations are kept)")
    p.set_defaults(run=_eval)
    p = sub.add_parser("sweep", help="train and evaluate every cell of a grid file, then one table and figure")
    p.add_argument("grid", help="grid YAML (kind: sweep), e.g. experiments/prompt/lora_ablation.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell's run config")
    p.set_defaults(run=lazy("lightning_compress.sweep", "sweep_command"))
    p = sub.add_parser("config", help="print a run's resolved config with every key's comment, or (--keys) the keys "
                                      "of a task with types, defaults and comments")
    p.add_argument("config", nargs="?", help="experiment YAML (default: the defaults of --task)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--keys", action="store_true", help="list the keys: type, default, comment")
    p.add_argument("--task", help="the task whose keys or defaults to show (default: the file's task, else the default task)")
    p.set_defaults(run=_config)
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
