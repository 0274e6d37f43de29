"""pipeline/build/torchrun.py: a build whose GAN trains on several processes."""

from __future__ import annotations

import json
import sys

from conftest import TINY_GAN
from pipeline.build import build
from pipeline.build.torchrun import torchrun_command
from pipeline.version.manifest import load_manifest, verify


def test_the_command_runs_the_runner_module_on_local_processes(tmp_path):
    command = torchrun_command(3, tmp_path / "c.json", tmp_path / "out", tmp_path / "last.pt")
    assert command[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=3",
        f"--log-dir={tmp_path / 'out' / 'torchrun-logs'}",
    ]
    assert command[6:] == [
        "-m",
        "pipeline.build.runner",
        *(str(tmp_path / p) for p in ("c.json", "out", "last.pt")),
    ]


def test_a_build_trains_its_gan_on_two_processes_and_publishes(tiny_config, tmp_path, monkeypatch):
    temp = tmp_path / "system-temp"  # torchrun's own default for its logs
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false", "synthesis.train.processes=2")
    version, created = build(config)
    assert not list(temp.glob("torchelastic_*"))  # its logs went to the run's folder
    assert created and verify(version) == []
    manifest = load_manifest(version)
    assert manifest.synthesis.checkpoint_step in {2, 4}
    assert manifest.config["synthesis"]["train"]["processes"] == 2
    assert manifest.splits["train"].by_origin["synthetic"] > 0
    assert (version / manifest.synthesis.files.curves).is_file()  # drawn from rank 0's history


def test_train_gan_alone_in_a_process_group_of_one(tiny_config, tmp_path, monkeypatch):
    """What each torchrun process runs: join the group, train as its rank, leave; rank 0
    writes the checkpoints and the summary where ``expand train-gan`` puts them."""
    import socket

    from torch import distributed as dist

    from pipeline.build.runner import gan_out_dir, train_gan_distributed
    from pipeline.build.torchrun import SUMMARY_FILE

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false")
    out = gan_out_dir(config)
    assert out == config.output.root / f"{config.dataset_name()}-gan"
    assert gan_out_dir(config, tmp_path / "here") == tmp_path / "here"
    summary = train_gan_distributed(config, out)
    assert not dist.is_initialized()  # left the group
    assert summary["checkpoint"] == str(out / "best.pt") and (out / "last.pt").is_file()
    assert json.loads((out / SUMMARY_FILE).read_text())["sha256"] == summary["sha256"]


def test_a_failed_launch_says_which_setting_and_where_the_error_is(tiny_config, tmp_path):
    import pytest

    from pipeline.build.torchrun import launch_train_gan
    from pipeline.core.errors import PipelineError

    config = tiny_config(*TINY_GAN, "synthesis.train.processes=2", "synthesis.train.batch_size=7")
    with pytest.raises(PipelineError, match="GAN training on 2 processes failed .*printed above"):
        launch_train_gan(config, tmp_path / "gan")
