"""GAN synthesis quality on Fashion-MNIST with K real images per class (low-data regime).

Builds a version with ``expand``'s library (augmentation + GAN + utility gate) from K
images per class of ``../shared/datasets/fashion-mnist.tar.gz``, then runs the evaluation
of ``expand evaluate`` (:mod:`pipeline.evaluate.evaluation`) on it: the reference classifier trained
on real only, real+augmented, real+augmented+synthetic and synthetic only (CAS), tested on
the full real test split (10,000 images); and again on the same generator's samples with
the gate forced open. FD, KID, precision/recall come from the manifest.

    python bench/gan_quality.py --per-class 100 --steps 3000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.build import build, load_config
from pipeline.config import EvaluateConfig
from pipeline.evaluate.evaluation import evaluate
from pipeline.version.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "datasets" / "fashion-mnist.tar.gz"
RECIPE = [
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"translate_percent": [-0.06, 0.06], "scale": [0.92, 1.08], "rotate": [-6, 6], "p": 0.7}},
]


def extract(per_class: int | list[int], seed: int, target: Path, tarball: Path = TARBALL) -> Path:
    """K seeded train images per class (or K[c] of class c) and the whole test split, as an
    image folder."""
    rng = np.random.default_rng(seed)
    counts = per_class if isinstance(per_class, list) else [per_class] * 10
    chosen = {
        str(c): {f"{k:04d}.png" for k in rng.choice(6000, n, replace=False)} for c, n in enumerate(counts)
    }
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3:
                continue
            split, cls, name = parts
            if split == "test" or (split == "train" and name in chosen[cls]):
                members.append(member)
        tar.extractall(target, members=members, filter="data")
    return target


def note(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--copies", type=float, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="classifier epochs of the evaluation")
    parser.add_argument(
        "--gate-epochs", type=int, help="synthesis.gate.classifier_epochs (default: --epochs)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--loss", choices=["hinge", "minimax"], default="hinge", help="synthesis.train.loss")
    parser.add_argument("--betas", type=float, nargs=2, help="synthesis.train.betas (default: the config's)")
    parser.add_argument("--compile", choices=["default", "reduce-overhead"], help="synthesis.train.compile")
    parser.add_argument("--min-confidence", type=float, default=0.0, help="synthesis.filter.min_confidence")
    parser.add_argument("--fill-short", action="store_true", help="synthesis.filter.fill_short")
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="copy both versions (gate on, gate off) here")
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    results: dict = {
        "per_class": args.per_class,
        "steps": args.steps,
        "width": args.width,
        "loss": args.loss,
        "betas": args.betas,
        "min_confidence": args.min_confidence,
        "fill_short": args.fill_short,
        "epochs": args.epochs,
        "gate_epochs": args.gate_epochs or args.epochs,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }

    def save() -> None:  # after each stage, so a run cut short still leaves its figures
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = extract(args.per_class, 0, Path(tmp) / "src", args.tarball)
        note("extracted", started)
        overrides = [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"output.root={Path(tmp) / 'out'}",
            f"augment.copies_per_image={args.copies}",
            f"augment.transforms={json.dumps(RECIPE)}",
            "synthesis.enabled=true",
            "synthesis.ratio=1.0",
            f"synthesis.train.steps={args.steps}",
            f"synthesis.train.width={args.width}",
            f"synthesis.train.batch_size={args.batch}",
            f"synthesis.train.eval_every={max(1, args.steps // 4)}",
            f"synthesis.train.device={args.device}",
            f"synthesis.train.loss={args.loss}",
            *([f"synthesis.train.betas={json.dumps(args.betas)}"] if args.betas else []),
            *([f"synthesis.train.compile={args.compile}"] if args.compile else []),
            f"synthesis.filter.min_confidence={args.min_confidence}",
            f"synthesis.filter.fill_short={str(args.fill_short).lower()}",
            f"synthesis.gate.classifier_epochs={args.gate_epochs or args.epochs}",
            f"synthesis.gate.seeds={args.seeds}",
        ]
        version, _ = build(load_config(None, overrides))
        results["build_seconds"] = time.perf_counter() - started
        note(f"built {version.name}", started)
        synthesis = load_manifest(version).synthesis
        results["metrics"] = {
            k: synthesis.metrics.get(k) for k in ("fd", "kid", "precision", "recall", "cas_test", "note")
        }
        results["gate"] = synthesis.gate.model_dump(mode="json") if synthesis.gate else None
        save()
        evaluating = time.perf_counter()
        settings = EvaluateConfig(seeds=args.seeds, epochs=args.epochs)
        results["published"] = evaluate(version, settings)["results"]
        results["evaluate_seconds"] = time.perf_counter() - evaluating
        note("evaluated the published version", started)
        save()
        # The same generator with the gate forced open: what the gate protected us from (or not).
        forced, _ = build(
            load_config(
                None,
                [
                    *overrides,
                    f"synthesis.checkpoint={version / 'gan/generator.pt'}",
                    "synthesis.gate.enabled=false",
                ],
            )
        )
        with_synthetic = ("real+augmented+synthetic", "synthetic only (CAS)")
        results["gate_off"] = evaluate(forced, settings, with_synthetic)["results"]
        results["total_seconds"] = time.perf_counter() - started
        if args.keep:
            for built in (version, forced):
                shutil.copytree(built, args.keep / built.name, symlinks=True)
    print(json.dumps(results, indent=1))
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
