"""pipeline/build/torchrun.py: a build whose GAN trains on several processes."""

from __future__ import annotations

import sys

from conftest import TINY_GAN
from pipeline.build import build
from pipeline.build.torchrun import torchrun_command
from pipeline.version.manifest import load_manifest, verify


def test_the_command_runs_the_runner_module_on_local_processes(tmp_path):
    command = torchrun_command(3, tmp_path / "c.json", tmp_path / "out", tmp_path / "last.pt")
    assert command[:5] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=3",
    ]
    assert command[5:] == [
        "-m",
        "pipeline.build.runner",
        *(str(tmp_path / p) for p in ("c.json", "out", "last.pt")),
    ]


def test_a_build_trains_its_gan_on_two_processes_and_publishes(tiny_config):
    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false", "synthesis.train.processes=2")
    version, created = build(config)
    assert created and verify(version) == []
    manifest = load_manifest(version)
    assert manifest.synthesis.checkpoint_step in {2, 4}
    assert manifest.config["synthesis"]["train"]["processes"] == 2
    assert manifest.splits["train"].by_origin["synthetic"] > 0
    assert (version / manifest.synthesis.files.curves).is_file()  # drawn from rank 0's history
