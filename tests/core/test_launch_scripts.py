"""The launch scripts in experiments/launch/: valid shell, and the torchrun ones really
start a DDP run (one node x 2 processes; two "nodes" of one process on this host)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXPERIMENTS

LAUNCH = EXPERIMENTS / "launch"
SCRIPTS = sorted(p for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch"))
TINY = [
    "decoder.source=tiny-random", "data.n_tokens=12", "data.batch_size=4", "data.val_size=4", "model.memory_tokens=3",
    "eval.num_samples=4", "eval.batch_size=4", "callbacks.num_samples=1", "callbacks.interpolation_points=0",
    "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
    "name=launch",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_shell_and_documents_its_use(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert os.access(script, os.X_OK) and "experiments/launch/" in text


def test_slurm_script_requeues_and_resumes():
    text = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=SIGUSR1@" in text and "resume=auto" in text


def _env() -> dict:
    # The scripts call `torchrun` and `python` from PATH: this interpreter's.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_single_node_script_trains_with_two_processes(tmp_path):
    cmd = ["bash", str(LAUNCH / "torchrun_single_node.sh"), str(EXPERIMENTS / "prompt" / "aoc.yaml"), *TINY, f"output_dir={tmp_path}"]
    result = subprocess.run(cmd, env={**_env(), "GPUS": "2"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 per device x 2 processes" in result.stdout
    assert (tmp_path / "launch" / "version_0" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_multi_node_script_with_two_nodes_on_this_host(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = ["bash", str(LAUNCH / "torchrun_multi_node.sh"), str(EXPERIMENTS / "prompt" / "aoc.yaml"), *TINY, f"output_dir={tmp_path}"]
    nodes = [
        subprocess.Popen(cmd, env={**_env(), "NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port), "GPUS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "2 per device x 2 processes" in outputs[0]
    assert [p.name for p in (tmp_path / "launch").iterdir()] == ["version_0"]
