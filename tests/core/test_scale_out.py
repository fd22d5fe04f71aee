"""Resume after SIGKILL and a real 2-process DDP run (gloo, torchrun), on a tiny decoder.

Both start `tests/core/drivers/record_train.py` in subprocesses: SIGKILL and torchrun cannot
run inside pytest's own process. The driver records, per rank, the texts of every batch.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_modules.arxiv_abstracts import ArxivAbstractsDataModule, ResumableLoader, collate, split_of
from data_modules.records import shipped_sample
from helpers import REPO
from lightning_compress.config import load_config

DRIVER = Path(__file__).resolve().parent / "drivers" / "record_train.py"
VAL_PM, TEST_PM = 200, 200


def _small_corpus(path: Path, train: int, val: int, test: int) -> list[str]:
    """A JSONL file whose hash splits hold exactly train/val/test abstracts; returns the
    train texts in file order."""
    wanted = {"train": train, "val": val, "test": test}
    chosen, train_texts = [], []
    with gzip.open(shipped_sample(), "rt", encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["abstract"]
            split = split_of(text, VAL_PM, TEST_PM)
            if wanted[split] > 0:
                wanted[split] -= 1
                chosen.append(line)
                if split == "train":
                    train_texts.append(text)
            if not any(wanted.values()):
                break
    path.write_text("".join(chosen), encoding="utf-8")
    return train_texts


def _overrides(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "decoder.source=tiny-random", f"data.source={data}", "data.n_tokens=12", "data.val_size=8",
        f"data.val_per_mille={VAL_PM}", f"data.test_per_mille={TEST_PM}", "model.memory_tokens=3",
        "model.encoder.lora.r=4", "eval.num_samples=4", "eval.batch_size=4", "callbacks.num_samples=2",
        "callbacks.interpolation_points=0", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0", f"output_dir={tmp_path / 'runs'}", "name=scale",
        *extra,
    ]


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _records(out: Path, rank: int) -> list[dict]:
    path = out / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_resumable_loader_skips_exactly_what_was_consumed(tiny_backbone_session):
    """Loader level, 0 and 2 workers: a loader resumed after k batches yields batch k onwards."""
    dm = ArxivAbstractsDataModule(tiny_backbone_session.tokenizer, n_tokens=12, batch_size=3)
    for workers in (0, 2):

        def loader(consumed):
            dataset = dm.dataset("train", repeat=True, rank=0, world_size=1)
            return ResumableLoader(dataset, lambda: consumed, batch_size=3, collate_fn=collate, num_workers=workers)

        def first(dl, count):
            iterator = iter(dl)
            return [next(iterator)["text"] for _ in range(count)]

        reference = first(loader(0), 9)
        for consumed in (1, 5, 6):
            resumed = loader(0)
            resumed.load_state_dict(loader(consumed).state_dict())
            assert first(resumed, 3) == reference[consumed : consumed + 3], f"num_workers={workers}, after {consumed}"
        with pytest.raises(ValueError, match="num_workers"):
            ResumableLoader(dm.dataset("train", repeat=True), lambda: 0, batch_size=3, num_workers=0 if workers else 1).load_state_dict(
                loader(5).state_dict()
            )


def test_sigkilled_run_resumes_same_data_order(tmp_path, tiny_backbone_session):
    data = tmp_path / "abstracts.jsonl"
    _small_corpus(data, train=60, val=8, test=4)
    steps, batch, kill_after, every = 8, 4, 5, 3
    common = _overrides(tmp_path, data, "data.batch_size=4", "data.num_workers=2", f"trainer.max_steps={steps}",
                        "trainer.val_check_interval=4", f"checkpoint_every_n_steps={every}")
    first = _run([sys.executable, str(DRIVER), str(tmp_path), "--kill-after-step", str(kill_after), *common], tmp_path)
    assert first.returncode == -9, f"the first run was meant to be SIGKILLed:\n{first.stderr[-3000:]}"
    checkpoint = tmp_path / "runs" / "scale" / "version_0" / "checkpoints" / "last.ckpt"
    saved_step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    assert saved_step == every, "last.ckpt should come from the periodic save before the kill"
    assert not list(checkpoint.parent.glob(".*.tmp-*")), "a temporary checkpoint was left behind"
    killed_run = [r for r in _records(tmp_path, 0) if r["kind"] == "train"]
    assert [r["step"] for r in killed_run] == list(range(1, kill_after + 1))

    (tmp_path / "rank0.jsonl").rename(tmp_path / "killed.jsonl")
    second = _run([sys.executable, str(DRIVER), str(tmp_path), *common, "resume=true"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [r for r in _records(tmp_path, 0) if r["kind"] == "train"]
    assert [r["step"] for r in resumed] == list(range(saved_step + 1, steps + 1))

    # The order an uninterrupted run sees: the loader's own stream from the start (shuffled,
    # seeded as the run's config says).
    cfg = load_config(None, common)  # as the driver builds it
    assert cfg.data.shuffle_buffer > 1, "the test should cover the shuffled order"
    dm = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, tiny_backbone_session.tokenizer, seed=cfg.seed)
    dm.batch_size = batch
    stream = iter(ResumableLoader(dm.dataset("train", repeat=True, rank=0, world_size=1), lambda: 0,
                                  batch_size=batch, collate_fn=collate, num_workers=2))
    expected = [next(stream)["text"] for _ in range(steps)]
    seen = [r["texts"] for r in killed_run if r["step"] <= saved_step] + [r["texts"] for r in resumed]
    assert seen == expected, "the resumed run repeated or skipped training examples"
    # The resumed run continued the same log folder instead of starting version_1.
    assert [p.name for p in (tmp_path / "runs" / "scale").iterdir()] == ["version_0"]


def test_two_process_ddp_run(tmp_path):
    """torchrun, 2 CPU processes (gloo): both train, val metrics are reduced, rank 0 alone
    writes, and the epoch's examples are split across ranks exactly once each."""
    data = tmp_path / "abstracts.jsonl"
    train_texts = _small_corpus(data, train=24, val=8, test=4)
    # Global batch 4 = 1 per device x 2 processes x 2 accumulated; 6 steps = 24 examples.
    overrides = _overrides(tmp_path, data, "data.batch_size=4", "data.micro_batch_size=1", "trainer.max_steps=6",
                           "trainer.val_check_interval=3", "trainer.devices=2", "trainer.strategy=ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(DRIVER),
               str(tmp_path), *overrides]
    result = _run(command, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [_records(tmp_path, rank) for rank in (0, 1)]
    seen = []
    for rank, records in enumerate(ranks):
        train = [r for r in records if r["kind"] == "train"]
        assert train and all(r["world_size"] == 2 for r in records), f"rank {rank} did not train in a world of 2"
        assert all(len(r["texts"]) == 1 for r in train), "micro-batch should be 1 prompt"
        assert len(train) == 12, f"rank {rank}: 6 steps x 2 accumulated micro-batches expected"
        seen.append([t for r in train for t in r["texts"]])
    assert not set(seen[0]) & set(seen[1]), "the ranks trained on overlapping examples"
    assert sorted(seen[0] + seen[1]) == sorted(train_texts), "an example was skipped or repeated in the epoch"

    val_texts = [{t for r in records if r["kind"] == "val_batch" for t in r["texts"]} for records in ranks]
    assert val_texts[0] and val_texts[1] and not val_texts[0] & val_texts[1], "validation shards should differ"
    metrics = [[r["metrics"] for r in records if r["kind"] == "val"] for records in ranks]
    # Before training, at step 3 and at the last step (6).
    assert len(metrics[0]) == 3 and metrics[0] == metrics[1], "validation metrics were not reduced across ranks"

    run_dir = tmp_path / "runs" / "scale"
    assert [p.name for p in run_dir.iterdir()] == ["version_0"], "a rank other than 0 wrote a log folder"
    # Event files are named events.out.tfevents.<time>.<host>.<pid>.<k>: all must be rank 0's.
    writers = {int(p.name.split(".")[-2]) for p in (run_dir / "version_0").glob("events.out.tfevents*")}
    assert writers == {ranks[0][0]["pid"]}, "a process other than rank 0 wrote TensorBoard events"
    checkpoints = sorted(p.name for p in (run_dir / "version_0" / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    saved = torch.load(run_dir / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["state_dict"] and not any(k.startswith("decoder.") for k in saved["state_dict"])
    assert json.loads((tmp_path / "result.json").read_text())["metrics"]["samples"] == 4


def test_a_cell_that_fails_on_one_rank_fails_on_all_and_the_grid_goes_on(tmp_path):
    data = tmp_path / "abstracts.jsonl"
    _small_corpus(data, train=16, val=8, test=4)
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"kind: sweep\ntask: prompt\nrun: {REPO / 'experiments' / 'prompt' / 'aoc.yaml'}\nname: grid\n"
                    f"output_dir: {tmp_path / 'runs'}\nencoders: [mlp_free]\npairs: [[12, 3], [12, 6]]\n")
    overrides = [o for o in _overrides(tmp_path, data) if not o.startswith(("name=", "output_dir=", "model.memory_tokens"))]
    overrides += ["data.batch_size=2", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.devices=2",
                  "trainer.strategy=ddp", "trainer.enable_progress_bar=false", "distributed_timeout_minutes=3"]
    driver = DRIVER.parent / "sweep_one_rank_fails.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(driver),
               str(grid), *overrides]
    result = _run(command, tmp_path, timeout=600)
    assert result.returncode != 0  # the grid has a failed cell
    statuses = [(tmp_path / f"status{rank}.txt").read_text() for rank in (0, 1)]
    assert statuses == ["mlp_free_n12_m3=failed mlp_free_n12_m6=ok"] * 2, result.stderr[-3000:]
    failed = tmp_path / "runs" / "grid" / "mlp_free_n12_m3"
    assert "another process failed while building the task" in json.loads((failed / "cell.json").read_text())["error"]
    assert "injected failure on rank 1" in (failed / "error-rank1.txt").read_text()
    assert json.loads((tmp_path / "runs" / "grid" / "mlp_free_n12_m6" / "cell.json").read_text())["status"] == "ok"
