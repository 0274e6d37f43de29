"""CUDA path of GAN training, as one prepared check (run by hand on a GPU machine).

Trains the pipeline's GAN on the digits (8x8, L) and on random 32x32 RGB data with
``device: cuda`` (bf16 autocast, channels_last), checks that losses stay finite, that the
checkpoints load with ``weights_only=True`` and resume, and runs the best-checkpoint loop
and sampling of the synthesis stage; then builds the digits demo, whose sampling and
classifiers run on ``synthesis.device: auto`` (the GPU). Prints one JSON line per check.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Config, GanTrainConfig
from pipeline.gan.checkpoint import GanShape, load_checkpoint, provenance, save_checkpoint
from pipeline.gan.sample import generate
from pipeline.gan.synthesis import train_gan
from pipeline.gan.train import GanTrainer
from pipeline.ingest.store import RealData
from pipeline.sources.digits import open_digits


def digits() -> tuple[np.ndarray, np.ndarray]:
    reader = open_digits()
    samples = list(reader.samples())
    return np.stack([s.pixels for s in samples]), np.array([s.label for s in samples])


def check_trainer(name, images, labels, shape, steps, batch, width):
    settings = GanTrainConfig(batch_size=batch, width=width, device="cuda")
    trainer = GanTrainer(images=images, labels=labels, shape=shape, settings=settings, seed=0)
    trainer.train(20)
    torch.cuda.synchronize()
    started = time.perf_counter()
    history = trainer.train(steps, log_every=steps)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pt"
        save_checkpoint(trainer.state_dict(), path)
        state = load_checkpoint(path, "cuda")
        recorded = provenance(state)
        resumed = GanTrainer(images=images, labels=labels, shape=shape, settings=settings, seed=0)
        resumed.load_state_dict(state)
        after = resumed.train(10, log_every=10)[-1]
    trainer.recompute_ema_batchnorm()
    seeds = np.arange(64)
    pictures, scores = generate(
        trainer.G_ema, trainer.D, labels[:64], seeds, out_size=(shape.height, shape.width)
    )
    many = np.arange(4096)  # sampling with discriminator scores, as synthesis.device: cuda does
    torch.cuda.synchronize()
    started = time.perf_counter()
    generate(trainer.G_ema, trainer.D, many % shape.num_classes, many, out_size=(shape.height, shape.width))
    torch.cuda.synchronize()
    sample_rate = len(many) / (time.perf_counter() - started)
    print(
        json.dumps(
            {
                "check": name,
                "device": torch.cuda.get_device_name(),
                "batch": batch,
                "width": width,
                "steps": steps,
                "img_per_s": batch * steps / elapsed,
                "last": history[-1],
                "finite": bool(np.isfinite([history[-1]["d_loss"], history[-1]["g_loss"]]).all()),
                "resumed_step": after["step"],
                "checkpoint_libraries": recorded["libraries"],
                "checkpoint_has_config": bool(recorded["settings"]),
                "sample_shape": list(pictures.shape),
                "sample_dtype": str(pictures.dtype),
                "d_score_mean": float(np.mean(scores)),
                "sample_img_per_s": sample_rate,
            }
        ),
        flush=True,
    )


def main() -> None:
    x, y = digits()
    check_trainer("digits-8x8", x, y, GanShape(10, 1, 8, 8), steps=500, batch=256, width=64)
    rgb = np.random.default_rng(0).integers(0, 256, (8192, 32, 32, 3), dtype=np.uint8)
    check_trainer(
        "random-32x32-rgb", rgb, np.arange(8192) % 10, GanShape(10, 3, 32, 32), steps=300, batch=256, width=64
    )
    config = Config.model_validate(
        {
            "synthesis": {
                "enabled": True,
                "train": {"steps": 1000, "eval_every": 250, "batch_size": 256, "width": 64, "device": "cuda"},
                "gate": {"classifier_epochs": 10},
            }
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = train_gan(
            config, RealData(x, y, [str(i) for i in range(len(y))]), GanShape(10, 1, 8, 8), Path(tmp)
        )
        print(
            json.dumps(
                {
                    "check": "train_gan-digits-cuda",
                    "seconds": time.perf_counter() - started,
                    "best": summary["best"],
                    "fd_history": [h for h in summary["history"] if "fd" in h],
                }
            ),
            flush=True,
        )


def check_build() -> None:
    """The digits demo (tuning off, 600 GAN steps) with every synthesis stage on the
    machine's GPU."""
    from pipeline.build import build, load_config
    from pipeline.version.manifest import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"output.root={tmp}", "augment.tune.enabled=false", "synthesis.train.steps=600"]
        config = load_config("config/digits.yaml", overrides)
        started = time.perf_counter()
        version, _ = build(config)
        synthesis = load_manifest(version).synthesis
        print(
            json.dumps(
                {
                    "check": "build-digits-synthesis-device-auto",
                    "devices": {
                        "synthesis": config.content_dict()["synthesis"]["device"],
                        "train": config.content_dict()["synthesis"]["train"]["device"],
                    },
                    "seconds": time.perf_counter() - started,
                    "candidates": synthesis.candidates,
                    "fd": synthesis.metrics.get("fd"),
                    "cas_test": synthesis.metrics.get("cas_test"),
                    "gate": synthesis.gate.reason,
                    "published": synthesis.published,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--build-only"]:  # the last check alone (it runs on a CPU too)
        check_build()
    else:
        main()
        check_build()
