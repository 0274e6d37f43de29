"""Which metric should choose the expansion of a long-tailed training set? Fashion-MNIST
with a geometric long tail (``augment.tune.metric``).

From ``../shared/datasets/fashion-mnist.tar.gz``: class c keeps round(K * R ** (-c / 9))
seeded training images (K for class 0 down to K / R for class 9) and the whole test split
(1,000 images of each class: balanced, so its accuracy is its balanced accuracy). Every
version fills each class up to the largest (``target_per_class``, as ``expand init``
suggests for unbalanced classes):

- filled: the textbook torchvision recipe (as ``bench/tune.py``), not tuned;
- tuned by accuracy / tuned by balanced accuracy: ``augment.tune`` over that recipe's
  strength and TrivialAugmentWide (plus no augmentation), scored on the validation part
  carved from the long-tailed training images, by each metric.

Then the reference classifier (:mod:`pipeline.evaluate.evaluation`, as ``expand evaluate``) trains
on real only and on each version and is tested on the balanced test split, over seeds.

    python bench/long_tail.py --largest 200 --ratio 40 --seeds 3 --epochs 15
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gan_quality import TARBALL, extract, note  # noqa: E402
from tune import classic_settings, print_results  # noqa: E402

from pipeline.build import build, load_config  # noqa: E402
from pipeline.config import EvaluateConfig
from pipeline.evaluate.evaluation import evaluate  # noqa: E402
from pipeline.version.manifest import load_manifest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--largest", type=int, default=200, help="training images of class 0")
    parser.add_argument("--ratio", type=float, default=40, help="class 0 has this many times class 9's")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--strengths", default="0.25,0.5,1", help="tune.strengths, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not TARBALL.is_file():
        print(f"skipped: {TARBALL} not found", file=sys.stderr)
        return 0
    counts = [max(1, round(args.largest * args.ratio ** (-c / 9))) for c in range(10)]
    results: dict = {"train_per_class": counts, "seeds": args.seeds, "epochs": args.epochs}
    results["threads"] = torch.get_num_threads()
    settings = EvaluateConfig(seeds=args.seeds, epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = extract(counts, 0, Path(tmp) / "src")
        base = [*classic_settings(source, Path(tmp) / "out"), f"augment.target_per_class={max(counts)}"]
        filled, _ = build(load_config(None, [*base, "name=filled"]))
        found = evaluate(filled, settings, ("real", "real+augmented"))["results"]
        results["real"], results["filled"] = found["real"], found["real+augmented"]
        note("built and evaluated the filled version", started)
        for metric in ("accuracy", "balanced_accuracy"):
            tuned, _ = build(
                load_config(
                    None,
                    [
                        *base,
                        f"name=tuned-{metric}",
                        "augment.tune.enabled=true",
                        f"augment.tune.metric={metric}",
                        f"augment.tune.strengths=[{args.strengths}]",
                        "augment.tune.policies=[TrivialAugmentWide]",
                        f"augment.tune.seeds={min(args.seeds, 2)}",
                        f"augment.tune.classifier_epochs={args.epochs}",
                    ],
                )
            )
            tune = load_manifest(tuned).tune.model_dump(mode="json")
            found = evaluate(tuned, settings, ("real+augmented",))["results"]
            results[f"tuned by {metric}"] = {**found["real+augmented"], "tune": tune}
            note(f"tuned by {metric}: {tune['reason']}", started)
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    print_results(results, ("real", "filled", "tuned by accuracy", "tuned by balanced_accuracy"), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
