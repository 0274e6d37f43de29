"""One rank of the data-parallel tests (tests/gan/test_distributed.py), started by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/gan/ddp_worker.py \
        OUT.json STEPS [--resume CKPT] [--save CKPT]

Trains the tiny GAN of the tests (16x16 grey, 4 classes, LeCam and ADA on, so every
quantity that spans processes is exercised) with gloo, and rank 0 writes the per-step
metrics (averaged over the processes) to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.config import GanTrainConfig
from pipeline.gan.checkpoint import GanShape, load_checkpoint, save_checkpoint
from pipeline.gan.distributed import current_world, joined
from pipeline.gan.train import GanTrainer

SHAPE = GanShape(4, 1, 16, 16)
SETTINGS = GanTrainConfig(
    batch_size=8, width=8, z_dim=8, device="cpu", lecam=0.3, ada_target=0.6, ada_kimg=0.01
)


def trainer() -> GanTrainer:
    """The same trainer in every process: data, seed and settings."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
    return GanTrainer(images=images, labels=np.arange(40) % 4, shape=SHAPE, settings=SETTINGS, seed=3)


def run(steps: int, resume: Path | None = None, save: Path | None = None) -> list[dict[str, float]]:
    """``steps`` steps (after ``resume``'s), every step's metrics; rank 0 saves to ``save``."""
    t = trainer()
    if resume is not None:
        t.load_state_dict(load_checkpoint(resume))
    history = t.train(steps, log_every=1)
    if save is not None and current_world().main:
        save_checkpoint(t.state_dict(), save)
    return [{k: h[k] for k in ("step", "d_loss", "g_loss", "d_real", "d_fake", "ada_p")} for h in history]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("steps", type=int)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with joined("cpu") as world:
        history = run(args.steps, args.resume, args.save)
        if world.main:
            args.out.write_text(json.dumps({"world": world.size, "history": history}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
