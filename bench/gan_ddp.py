"""Data-parallel GAN training throughput: N processes against one, at equal per-process batch.

Run it alone for one process and under torchrun for N; each prints one JSON row (rank 0):

    python bench/gan_ddp.py --per-process-batch 64 --device cuda
    torchrun --standalone --nproc-per-node 2 bench/gan_ddp.py --per-process-batch 64 --device cuda

The global batch is N x the per-process batch (``synthesis.train.batch_size``), so the
scaling is images/s with N against images/s with 1. The trainer is the pipeline's own
(``GanTrainer``: DDP, global-batch BatchNorm, seeded global streams). On the CPU (gloo),
each process gets ``--threads`` threads, so 2 processes x 1 thread compare with 1 x 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import GanTrainConfig  # noqa: E402
from pipeline.gan.checkpoint import GanShape  # noqa: E402
from pipeline.gan.distributed import World, joined, launched_distributed  # noqa: E402
from pipeline.gan.train import GanTrainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-process-batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 10 cpu, 200 cuda)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--compile", choices=["default", "reduce-overhead"])
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if not launched_distributed():
        return measure(args, World())
    with joined(args.device) as world:
        return measure(args, world)


def measure(args: argparse.Namespace, world: World) -> int:
    """Time this process's share of the training steps; rank 0 prints the JSON row."""
    size = world.size
    steps = args.steps or (10 if args.device == "cpu" else 200)
    shape = (4096, args.resolution, args.resolution, args.channels)
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    if args.channels == 1:
        images = images[..., 0]
    settings = GanTrainConfig(
        batch_size=args.per_process_batch * size, width=args.width, device=args.device, compile=args.compile
    )
    trainer = GanTrainer(
        images=images,
        labels=np.arange(len(images)) % 10,
        shape=GanShape(10, args.channels, args.resolution, args.resolution),
        settings=settings,
        seed=0,
    )
    for _ in range(3 if args.device == "cpu" else 30):  # warm-up (and compile)
        trainer.train_step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    if world.main:
        row = {
            "processes": size,
            "device": args.device,
            "per_process_batch": args.per_process_batch,
            "global_batch": settings.batch_size,
            "resolution": args.resolution,
            "width": args.width,
            "threads_per_process": args.threads if args.device == "cpu" else None,
            "img_per_s": settings.batch_size * steps / elapsed,
            "it_per_s": steps / elapsed,
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
