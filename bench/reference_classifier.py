"""How strong is the reference classifier? Fashion-MNIST, K real images per class, the whole
test split (10,000 images): test accuracy of the real-only arm trained by epochs (the old
protocol: 30 passes over its own rows) and by a fixed number of steps (the equal-compute
protocol gives every arm the steps of the largest one), over seeds, with the paired gain.

    python bench/reference_classifier.py --per-class 100 --steps 1500 2820 --seeds 3 --json out.json
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
import torch
from PIL import Image

from pipeline.evaluate.classifier import ClassifierSpec, correct, to_tensor, train_classifier
from pipeline.evaluate.stats import paired_interval, spread

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "datasets" / "fashion-mnist.tar.gz"


def load(tarball: Path, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    chosen = {str(c): {f"{k:04d}.png" for k in rng.choice(6000, per_class, replace=False)} for c in range(10)}
    train, test = ([], []), ([], [])
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tarball) as tar:
        members = [
            m
            for m in tar
            if m.isfile()
            and len(parts := m.name.split("/")) == 3
            and (parts[0] == "test" or (parts[0] == "train" and parts[2] in chosen[parts[1]]))
        ]
        tar.extractall(tmp, members=members, filter="data")
        for member in members:
            split, cls, _ = member.name.split("/")
            target = test if split == "test" else train
            target[0].append(np.asarray(Image.open(Path(tmp) / member.name)))
            target[1].append(int(cls))
    return np.stack(train[0]), np.asarray(train[1]), np.stack(test[0]), np.asarray(test[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, nargs="+", default=[1500])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    x, y, test_x, test_y = load(args.tarball, args.per_class, 0)
    x, y, test_x = to_tensor(x), torch.as_tensor(y), to_tensor(test_x)
    arms = {f"{args.epochs} epochs": ClassifierSpec(epochs=args.epochs)}
    arms.update({f"{s} steps": ClassifierSpec(steps=s) for s in args.steps})
    results: dict = {
        "per_class": args.per_class,
        "test_rows": len(test_y),
        "threads": torch.get_num_threads(),
    }
    answers = {}
    for name, spec in arms.items():
        started = time.perf_counter()
        right = [
            correct(train_classifier(x, y, 10, seed=s, spec=spec), test_x, test_y) for s in range(args.seeds)
        ]
        answers[name] = np.stack(right).astype(np.float64)
        runs = answers[name].mean(axis=1)
        results[name] = {
            "mean": float(runs.mean()),
            "std": spread(runs),
            "runs": runs.tolist(),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    first = next(iter(answers))
    results["gain_over_epochs"] = {
        n: paired_interval(a - answers[first]) for n, a in answers.items() if n != first
    }
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
