"""GAN training on several processes: a build (or ``expand train-gan``) with
``synthesis.train.processes`` above 1 launches ``torchrun`` on this machine, whose
processes run :func:`pipeline.build.runner.train_gan_distributed` (``python -m
pipeline.build.runner``) and leave the checkpoints and a summary in the output folder.

Several machines: start ``torchrun --nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT
--nproc-per-node G --no-python expand train-gan CONFIG --out DIR`` on each (see
docs/guide-gan.md), then pass DIR/best.pt as ``synthesis.checkpoint``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.core.errors import PipelineError

SUMMARY_FILE = "summary.json"  # what rank 0 returns, beside the checkpoints
CONFIG_FILE = "config.json"  # the resolved config the processes load
LOG_DIR = "torchrun-logs"  # torchrun's per-run log folders (else it leaves them in the system's temp)


def torchrun_command(
    processes: int, config_file: Path, out_dir: Path, resume: Path | None = None
) -> list[str]:
    """The command that trains on ``processes`` local processes (a standalone rendezvous
    on 127.0.0.1), torchrun's logs beside the checkpoints in ``out_dir``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        f"--log-dir={out_dir / LOG_DIR}",
        "-m",
        "pipeline.build.runner",
        str(config_file),
        str(out_dir),
        *([str(resume)] if resume else []),
    ]


def launch_train_gan(config: Config, out_dir: Path, *, resume: Path | None = None) -> dict[str, Any]:
    """Train the GAN of ``config`` on ``synthesis.train.processes`` processes of this
    machine; their output goes to this process's terminal.

    Returns:
        Rank 0's training summary (``checkpoint`` is ``out_dir/best.pt``).

    Raises:
        PipelineError: the distributed training failed (its error is printed above).
    """
    processes = config.synthesis.train.processes
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / CONFIG_FILE
    config_file.write_text(json.dumps(config.model_dump(mode="json"), sort_keys=True))
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
    done = subprocess.run(torchrun_command(processes, config_file, out_dir, resume), check=False)
    summary = out_dir / SUMMARY_FILE
    if done.returncode != 0 or not summary.is_file():
        raise PipelineError(
            f"synthesis.train.processes: GAN training on {processes} processes failed (torchrun exit "
            f"code {done.returncode}; its error is printed above)"
        )
    return json.loads(summary.read_text())
