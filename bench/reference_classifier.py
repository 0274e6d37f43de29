"""How strong is the reference classifier? Fashion-MNIST, K real images per class, the whole
test split (10,000 images): test accuracy of the real-only arm trained by epochs (the old
protocol: 30 passes over its own rows) and by a fixed number of steps (the equal-compute
protocol gives every arm the steps of the largest one), over seeds, with the paired gain.

    python bench/reference_classifier.py --per-class 100 --steps 1500 2820 --seeds 3 --json out.json

With ``--arms``, it compares network shapes instead (``w32-g1``: width 32, the head on the
global average; ``w32-g3``: on the last map pooled to 3x3), each trained ``--steps``
steps: scored on ``--validation`` images per class drawn from the rest of the training
split (the choice is made there), and on the test split only with ``--report-test``.

    python bench/reference_classifier.py --arms w32-g1 w32-g3 w48-g1 --steps 1500 --validation 200

``--tarball`` reads any ImageFolder tarball (the CIFAR-10 subset has no test split: use it
with ``--arms``), or ``digits``, the embedded ones.
"""

from __future__ import annotations

import argparse
import io
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
from pipeline.sources.digits import open_digits

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "datasets" / "fashion-mnist.tar.gz"


def load(
    tarball: Path, per_class: int, seed: int, validation: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """K seeded training images per class and the test split; with ``validation``, the
    "test" returned is that many other training images per class instead. Any ImageFolder
    tarball (``train/<class>/<file>``, classes in sorted order, files picked by their rank
    in sorted order): Fashion-MNIST, the CIFAR-10 subset (which has no test split: use it
    with ``validation``)."""
    with tarfile.open(tarball) as tar:
        listed = [m.name.split("/") for m in tar if m.isfile() and m.name.count("/") == 2]
    classes = sorted({cls for split, cls, _ in listed if split == "train"})
    files = {c: sorted(name for split, cls, name in listed if split == "train" and cls == c) for c in classes}
    rng = np.random.default_rng(seed)
    picks = {c: rng.choice(len(files[c]), per_class, replace=False) for c in classes}
    chosen = {c: {files[c][k] for k in picks[c]} for c in classes}
    held: dict[str, set[str]] = {}
    if validation:
        other = np.random.default_rng(seed + 1)
        for c in classes:
            rest = np.setdiff1d(np.arange(len(files[c])), picks[c])
            held[c] = {files[c][k] for k in other.choice(rest, validation, replace=False)}
    elif not any(split == "test" for split, _, _ in listed):
        raise SystemExit(f"{tarball} has no test split: use --arms with --validation")
    train, test = ([], []), ([], [])
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tarball) as tar:
        members = [
            m
            for m in tar
            if m.isfile()
            and len(parts := m.name.split("/")) == 3
            and parts[1] in chosen
            and (
                (parts[0] == "test" and not validation)
                or (
                    parts[0] == "train"
                    and (parts[2] in chosen[parts[1]] or parts[2] in held.get(parts[1], ()))
                )
            )
        ]
        tar.extractall(tmp, members=members, filter="data")
        for member in members:
            split, cls, name = member.name.split("/")
            target = train if split == "train" and name in chosen[cls] else test
            target[0].append(np.asarray(Image.open(Path(tmp) / member.name)))
            target[1].append(classes.index(cls))
    return np.stack(train[0]), np.asarray(train[1]), np.stack(test[0]), np.asarray(test[1])


def digits_tarball(target: Path) -> Path:
    """The embedded digits, as the ``digits`` source reads them, as an ImageFolder tarball
    (``train/<label>/<index>.png``), for ``--tarball digits``."""
    with tarfile.open(target, "w:gz") as tar:
        for index, sample in enumerate(open_digits().samples()):
            encoded = io.BytesIO()
            Image.fromarray(sample.pixels).save(encoded, "PNG")
            member = tarfile.TarInfo(f"train/{sample.label}/{index:04d}.png")
            member.size = encoded.tell()
            encoded.seek(0)
            tar.addfile(member, encoded)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, nargs="+", default=[1500])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--tarball",
        type=Path,
        default=TARBALL,
        help="an ImageFolder tarball, or 'digits' (the embedded ones)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--arms", nargs="*", default=[], help="network shapes: w<width>-g<grid>")
    parser.add_argument(
        "--validation", type=int, default=200, help="with --arms: validation images per class"
    )
    parser.add_argument(
        "--report-test", action="store_true", help="with --arms: also score on the test split"
    )
    args = parser.parse_args()
    if str(args.tarball) == "digits":
        scratch = tempfile.TemporaryDirectory()
        args.tarball = digits_tarball(Path(scratch.name) / "digits.tar.gz")
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    if args.arms:
        return compare_shapes(args)
    x, y, test_x, test_y = load(args.tarball, args.per_class, 0)
    classes = int(y.max()) + 1
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
            correct(train_classifier(x, y, classes, seed=s, spec=spec), test_x, test_y)
            for s in range(args.seeds)
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


def compare_shapes(args: argparse.Namespace) -> int:
    """The ``--arms`` mode: each network shape on validation (and with ``--report-test``,
    test) images, paired with the first arm."""
    x, y, val_x, val_y = load(args.tarball, args.per_class, 0, args.validation)
    splits = {"validation": (to_tensor(val_x), val_y)}
    if args.report_test:
        _, _, test_x, test_y = load(args.tarball, args.per_class, 0)
        splits["test"] = (to_tensor(test_x), test_y)
    classes = int(y.max()) + 1
    x, y = to_tensor(x), torch.as_tensor(y)
    results: dict = {
        "tarball": args.tarball.name,
        "per_class": args.per_class,
        "steps": args.steps[0],
        "threads": torch.get_num_threads(),
    }
    answers: dict[str, dict[str, np.ndarray]] = {split: {} for split in splits}
    for arm in args.arms:
        width, grid = (int(part[1:]) for part in arm.split("-"))
        spec = ClassifierSpec(steps=args.steps[0], width=width, grid=grid)
        started = time.perf_counter()
        models = [train_classifier(x, y, classes, seed=s, spec=spec) for s in range(args.seeds)]
        results[arm] = {"seconds": round(time.perf_counter() - started, 1)}
        for split, (images, labels) in splits.items():
            right = np.stack([correct(m, images, labels) for m in models]).astype(np.float64)
            answers[split][arm] = right
            runs = right.mean(axis=1)
            results[arm][split] = {"mean": float(runs.mean()), "std": spread(runs), "runs": runs.tolist()}
            first = args.arms[0]
            if arm != first:
                results[arm][split]["gain_over_" + first] = paired_interval(right - answers[split][first])
        print(arm, json.dumps(results[arm]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
