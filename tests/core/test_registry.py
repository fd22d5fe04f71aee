"""The task registry: tasks register themselves, clashes fail at import time, the CLI and
the config loader find tasks only through it."""

import subprocess
import sys

import pytest

from lightning_compress import task as registry
from lightning_compress.cli import build_parser
from lightning_compress.config import ConfigError, ExperimentBase, load_config
from lightning_compress.task import Task, all_tasks, get_task, register_task


@pytest.fixture
def fresh_registry(monkeypatch):
    """The real tasks, in a copy of the registry that the test may add to."""
    all_tasks()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))


def test_the_tasks_register_themselves():
    names = {t.name for t in all_tasks()}
    assert {"prompt", "bytes"} <= names
    assert [t.name for t in all_tasks() if t.default] == ["prompt"]
    assert get_task("bytes").verbs == ("compress", "decompress", "bench-codecs")


@pytest.mark.parametrize(
    "task, message",
    [
        (Task(name="prompt", schema=ExperimentBase), "task 'prompt' registered twice"),
        (Task(name="other", schema=ExperimentBase, verbs=("compress",)), "verb 'compress' is already taken by task 'bytes'"),
        (Task(name="other", schema=ExperimentBase, verbs=("eval",)), "verb 'eval' is already taken by the core CLI"),
        (Task(name="other", schema=ExperimentBase, default=True), "another task is already the default"),
    ],
)
def test_clashes_fail_at_registration(fresh_registry, task, message):
    with pytest.raises(ValueError, match=message):
        register_task(task)


def test_a_clash_fails_when_the_package_is_imported(tmp_path):
    # A second package registering `bytes` again: the import itself fails, naming the task.
    (tmp_path / "clash.py").write_text(
        "from lightning_compress.task import Task, all_tasks, register_task\n"
        "from lightning_compress.tasks.bytes.config import ByteExperimentConfig\n"
        "all_tasks()\n"
        "register_task(Task(name='bytes', schema=ByteExperimentConfig))\n"
    )
    run = subprocess.run([sys.executable, "-c", "import clash"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0 and "task 'bytes' registered twice" in run.stderr


def test_unknown_task_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"task='crammming'; registered tasks: .*bytes.*prompt"):
        load_config(None, ["task=crammming"])


def test_a_file_without_task_means_the_default_task(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("name: old\ndata: {n_tokens: 20}\n")
    cfg = load_config(path)
    assert cfg.task == "prompt" and cfg.data.n_tokens == 20


def test_task_verbs_come_from_their_task():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"train", "eval", "sweep", "check-config", "ablation", "compress", "decompress", "bench-codecs"} <= set(commands)
