"""Data-parallel GAN training with gloo on 2 CPU processes (torchrun), against one process.

Tolerance: 1e-4 absolute on every loss and score. The processes sum their gradients and
batch statistics in another order than one process does, which moves float32 results in
the sixth digit; a wrong split of the batch, of a random stream or of a statistic moves
them by 0.01 or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.gan.distributed import SyncedBatchNorm2d, World, my_rows

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
TOLERANCE = 1e-4


def _torchrun(tmp_path: Path, name: str, steps: int, *extra: str) -> list[dict[str, float]]:
    out = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += [f"--log-dir={tmp_path / 'torchrun-logs'}"]  # not the system's temp folder
    command += [str(WORKER), str(out), str(steps), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["world"] == 2
    return document["history"]


def _one_process(steps: int, resume: Path | None = None) -> list[dict[str, float]]:
    sys.path.insert(0, str(WORKER.parent))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return ddp_worker.run(steps, resume)
        finally:
            torch.set_num_threads(threads)


def _assert_same_curve(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert [h["step"] for h in a] == [h["step"] for h in b]
    for x, y in zip(a, b, strict=True):
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "ada_p"):
            assert abs(x[key] - y[key]) < TOLERANCE, (x["step"], key, x[key], y[key])


def test_each_process_takes_its_rows_of_every_part():
    values = torch.arange(12)  # 2 parts x 2 processes x 3 rows
    assert my_rows(values, World(0, 2), parts=2).tolist() == [0, 1, 2, 6, 7, 8]
    assert my_rows(values, World(1, 2), parts=2).tolist() == [3, 4, 5, 9, 10, 11]
    assert my_rows(values, World(1, 4)).tolist() == [3, 4, 5]
    assert my_rows(values, World()) is values


def test_synced_batch_norm_is_plain_batch_norm_alone():
    torch.manual_seed(0)
    synced, plain = SyncedBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    synced.sync = True  # no process group: nothing to sync with
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(synced(x), plain(x))
    assert torch.equal(synced.running_var, plain.running_var)


def test_two_processes_train_as_one_on_the_same_global_batch(tmp_path):
    two = _torchrun(tmp_path, "two", 6)
    one = _one_process(6)
    _assert_same_curve(two, one)
    assert len({round(h["g_loss"], 3) for h in one}) > 1  # the curve moves: the test can fail


def test_a_checkpoint_resumes_the_curve_at_any_world_size(tmp_path):
    """Three steps on 2 processes, then three more on 2 processes or on one, continue the
    six-step curve of one process (every random stream is the global batch's)."""
    checkpoint = tmp_path / "after3.pt"
    first = _torchrun(tmp_path, "first", 3, "--save", str(checkpoint))
    on_two = _torchrun(tmp_path, "rest", 3, "--resume", str(checkpoint))
    on_one = _one_process(3, checkpoint)
    straight = _one_process(6)
    _assert_same_curve(first + on_two, straight)
    _assert_same_curve(first + on_one, straight)
    assert np.isfinite([h["d_loss"] for h in on_two]).all()


def test_a_global_batch_that_does_not_split_is_refused(monkeypatch):
    from conftest import TINY_GAN_SETTINGS, tiny_gan_trainer
    from pipeline.core.errors import ConfigError
    from pipeline.gan import train

    monkeypatch.setattr(train, "current_world", lambda: World(0, 2))
    with pytest.raises(ConfigError, match="batch_size 7 is the global batch, split over 2 processes"):
        tiny_gan_trainer(settings=TINY_GAN_SETTINGS.model_copy(update={"batch_size": 7}))


@pytest.fixture
def group_of_one(monkeypatch):
    """A gloo process group of one process, as torchrun would describe it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    yield
    from pipeline.gan.distributed import shutdown

    shutdown()


def test_the_process_group_helpers_in_a_group_of_one(group_of_one, monkeypatch):
    from torch import distributed as dist

    from pipeline.gan.distributed import (
        barrier,
        current_world,
        init_from_env,
        launched_distributed,
        mean_across,
        shutdown,
        sum_across_,
        sync_batch_norm,
    )
    from pipeline.gan.models import Generator

    assert not launched_distributed()  # WORLD_SIZE 1: not one of several
    world = init_from_env("cpu")
    assert dist.is_initialized() and world == World(0, 1, 0) == current_world() and world.main
    values = torch.tensor([1.0, 3.0])
    barrier()
    assert torch.equal(mean_across(values), values)
    sum_across_(values)
    assert values.tolist() == [1.0, 3.0]
    g = Generator(num_classes=2, channels=1, resolution=8, z_dim=4, width=8)
    sync_batch_norm(g)
    norms = [m for m in g.modules() if isinstance(m, SyncedBatchNorm2d)]
    assert norms and all(m.sync for m in norms)
    sync_batch_norm(g, on=False)
    assert not any(m.sync for m in norms)
    shutdown()
    assert not dist.is_initialized() and current_world() == World()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_distributed()


def test_joined_leaves_the_group_after_the_block_and_on_an_error(group_of_one):
    from torch import distributed as dist

    from pipeline.gan.distributed import joined

    with joined("cpu") as world:
        assert dist.is_initialized() and world == World(0, 1, 0)
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="rank failed"), joined("cpu"):
        assert dist.is_initialized()
        raise RuntimeError("rank failed")
    assert not dist.is_initialized()
