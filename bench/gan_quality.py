"""GAN synthesis quality on Fashion-MNIST with K real images per class (low-data regime).

Builds a version with ``expand``'s library (augmentation + GAN + utility gate) from K
images per class of ``../shared/datasets/fashion-mnist.tar.gz``, then trains the reference
classifier on real only, real+augmented, real+augmented+synthetic (as published, and
with the gate forced open for comparison) and reports accuracy on the full real test
split (10,000 images), with FD and CAS from the manifest.

    python bench/gan_quality.py --per-class 100 --steps 3000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.build import build
from pipeline.classifier import ClassifierSpec, accuracy, to_tensor, train_classifier
from pipeline.config import load_config
from pipeline.images import decode_png
from pipeline.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "datasets" / "fashion-mnist.tar.gz"
RECIPE = [
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"translate_percent": [-0.06, 0.06], "scale": [0.92, 1.08], "rotate": [-6, 6], "p": 0.7}},
]


def extract(per_class: int, seed: int, target: Path) -> Path:
    """K seeded train images per class and the whole test split, as an image folder."""
    rng = np.random.default_rng(seed)
    chosen = {str(c): {f"{k:04d}.png" for k in rng.choice(6000, per_class, replace=False)} for c in range(10)}
    with tarfile.open(TARBALL) as tar:
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


def rows(version: Path, split: str) -> dict[str, list]:
    tables = [
        pq.read_table(f, columns=["image", "label", "origin"])
        for f in sorted((version / "data").glob(f"{split}-*.parquet"))
    ]
    out = {"images": [], "labels": [], "origin": []}
    for table in tables:
        data = table.to_pydict()
        out["images"] += [decode_png(image["bytes"]) for image in data["image"]]
        out["labels"] += data["label"]
        out["origin"] += data["origin"]
    return out


def note(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)


def evaluate(train: dict, test: dict, origins: set[str], seeds: int, epochs: int) -> dict:
    keep = [i for i, o in enumerate(train["origin"]) if o in origins]
    if not keep:
        return {"rows": 0}
    x = to_tensor(np.stack([train["images"][i] for i in keep]))
    y = torch.as_tensor([train["labels"][i] for i in keep])
    tx, ty = to_tensor(np.stack(test["images"])), torch.as_tensor(test["labels"])
    runs = [
        accuracy(train_classifier(x, y, 10, seed=s, spec=ClassifierSpec(epochs=epochs)), tx, ty)
        for s in range(seeds)
    ]
    return {"rows": len(keep), "mean": float(np.mean(runs)), "std": float(np.std(runs)), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--copies", type=float, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not TARBALL.is_file():
        print(f"skipped: {TARBALL} not found", file=sys.stderr)
        return 0
    results: dict = {
        "per_class": args.per_class,
        "steps": args.steps,
        "width": args.width,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = extract(args.per_class, 0, Path(tmp) / "src")
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
            f"synthesis.gate.classifier_epochs={args.epochs}",
            f"synthesis.gate.seeds={args.seeds}",
        ]
        version, _ = build(load_config(None, overrides))
        results["build_seconds"] = time.perf_counter() - started
        note(f"built {version.name}", started)
        manifest = read_manifest(version)
        synthesis = manifest["synthesis"]
        results["metrics"] = {
            k: synthesis["metrics"][k] for k in ("fd", "kid", "precision", "recall", "cas_test")
        }
        results["gate"] = synthesis.get("gate")
        train, test = rows(version, "train"), rows(version, "test")
        results["real"] = evaluate(train, test, {"real"}, args.seeds, args.epochs)
        results["real+augmented"] = evaluate(train, test, {"real", "augmented"}, args.seeds, args.epochs)
        results["published"] = evaluate(
            train, test, {"real", "augmented", "synthetic"}, args.seeds, args.epochs
        )
        # The same generator with the gate forced open: what the gate protected us from (or not).
        note("evaluated the published version", started)
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
        forced_train = rows(forced, "train")
        results["real+augmented+synthetic (gate off)"] = evaluate(
            forced_train, test, {"real", "augmented", "synthetic"}, args.seeds, args.epochs
        )
        results["synthetic only (CAS)"] = evaluate(forced_train, test, {"synthetic"}, args.seeds, args.epochs)
        results["total_seconds"] = time.perf_counter() - started
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
