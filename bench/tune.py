"""Does the tuned expansion help? Fashion-MNIST with K real images per class (``augment.tune``).

From K images per class of ``../shared/datasets/fashion-mnist.tar.gz`` (the same seeded pick
as ``bench/gan_quality.py``), builds two versions with ``expand``'s library:

- classic: the textbook torchvision recipe (RandomRotation 15, RandomHorizontalFlip,
  RandomAffine translate 0.1 / scale 0.9-1.1 / shear 10), 4 copies per image, not tuned;
- tuned: ``augment.tune`` over that recipe's strength, the copy count and TrivialAugmentWide
  (plus no augmentation), optionally with GAN synthesis on top (the gate picks the share).

Then trains the reference classifier (:mod:`pipeline.evaluate.evaluation`, as ``expand evaluate``)
on real only, real + classic copies, real + tuned copies (and + synthetic rows) and tests
on the full real test split (10,000 images), over several seeds.

    python bench/tune.py --per-class 100 --seeds 3 --epochs 15 [--synthesis]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gan_quality import TARBALL, extract, note  # noqa: E402

from pipeline.build import build, load_config  # noqa: E402
from pipeline.config import EvaluateConfig
from pipeline.evaluate.evaluation import evaluate  # noqa: E402
from pipeline.version.manifest import load_manifest  # noqa: E402

CLASSIC = [
    {"RandomRotation": {"degrees": 15}},
    {"RandomHorizontalFlip": {}},
    {"RandomAffine": {"degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": 10}},
]


def classic_settings(source: Path, out: Path) -> list[str]:
    """Overrides that expand the image folder ``source`` into ``out`` with the classic
    recipe (the copy count is the caller's)."""
    return [
        "source.kind=imagefolder",
        f"source.path={source}",
        f"output.root={out}",
        "augment.backend=torchvision",
        f"augment.transforms={json.dumps(CLASSIC)}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--strengths", default="0.25,0.5,1", help="tune.strengths, comma-separated")
    parser.add_argument("--copies", default="2,4", help="tune.copies, comma-separated")
    parser.add_argument("--synthesis", action="store_true", help="also train a GAN; the gate picks the share")
    parser.add_argument("--gan-steps", type=int, default=1200)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not TARBALL.is_file():
        print(f"skipped: {TARBALL} not found", file=sys.stderr)
        return 0
    results: dict = {
        "per_class": args.per_class,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
    }
    settings = EvaluateConfig(seeds=args.seeds, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = extract(args.per_class, 0, Path(tmp) / "src")
        base = [*classic_settings(source, Path(tmp) / "out"), "augment.copies_per_image=4"]
        classic, _ = build(load_config(None, [*base, "name=classic"]))
        note("built the classic version", started)
        found = evaluate(classic, settings, ("real", "real+augmented"))["results"]
        results["real"] = found["real"]
        results["classic"] = found["real+augmented"]
        note("evaluated it", started)

        tuned_overrides = [
            *base,
            "name=tuned",
            "augment.tune.enabled=true",
            f"augment.tune.strengths=[{args.strengths}]",
            f"augment.tune.copies=[{args.copies}]",
            "augment.tune.policies=[TrivialAugmentWide]",
            f"augment.tune.seeds={min(args.seeds, 2)}",
            f"augment.tune.classifier_epochs={args.epochs}",
        ]
        if args.synthesis:
            tuned_overrides += [
                "synthesis.enabled=true",
                "synthesis.ratio=1.0",
                f"synthesis.train.steps={args.gan_steps}",
                "synthesis.train.width=16",
                f"synthesis.train.eval_every={max(1, args.gan_steps // 4)}",
                f"synthesis.gate.classifier_epochs={args.epochs}",
                "synthesis.gate.seeds=2",
            ]
        build_started = time.perf_counter()
        tuned, _ = build(load_config(None, tuned_overrides))
        results["tuned_build_seconds"] = round(time.perf_counter() - build_started, 1)
        manifest = load_manifest(tuned)
        results["tune"] = manifest.tune.model_dump(mode="json")
        if args.synthesis:
            gate = manifest.synthesis.gate
            results["gate"] = gate.model_dump(mode="json") if gate else None
        note(f"built the tuned version: {manifest.tune.reason}", started)
        subsets = ("real+augmented", "real+augmented+synthetic") if args.synthesis else ("real+augmented",)
        found = evaluate(tuned, settings, subsets)["results"]
        results["tuned"] = found["real+augmented"]
        if args.synthesis:
            results["tuned+synthetic"] = found["real+augmented+synthetic"]
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    print_results(results, ("real", "classic", "tuned", "tuned+synthetic"), args.json)
    return 0


def print_results(results: dict, names: tuple[str, ...], path: Path | None) -> None:
    """Test accuracy of each named result that has rows, then every figure as JSON (also
    written to ``path`` when given)."""
    for name in names:
        if name in results and results[name].get("rows"):
            r = results[name]
            print(f"{name:<28} {r['rows']:>6} rows  {100 * r['mean']:.2f}% ± {100 * r['std']:.2f}")
    print(json.dumps(results, indent=1))
    if path:
        path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
