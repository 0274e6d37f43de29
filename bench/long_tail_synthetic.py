"""Do synthetic rows fill a long tail better than augmented copies? Fashion-MNIST with the
geometric long tail of ``bench/long_tail.py`` (class c keeps round(L * R ** (-c / 9))
seeded training images), the whole balanced test split.

Two versions, each evaluated as ``expand evaluate`` does (every subset the same steps, the
same seeds, paired intervals over seeds and test images):

- ``augmented + synthetic``: ``augment.tune`` by balanced accuracy chooses the recipe that
  fills every class to the largest (``augment.target_per_class``), and the GAN fills every
  class to the largest too (``synthesis.target_per_class``), beside the augmented copies.
  Its real+augmented subset is the tuned augmentation-only fill, so the paired gain of
  real+augmented+synthetic over it answers the question.
- ``synthetic instead``: no augmentation, the same generator's rows fill the tail
  (real+synthetic against real).

The gate is off in both (every synthetic row is published, the evaluation judges); with
``--gate`` a third version lets the gate (balanced accuracy, per class) decide.

    python bench/long_tail_synthetic.py --largest 500 --ratio 100 --steps 1500 --json out.json
    python bench/long_tail_synthetic.py ... --set synthesis.train.lecam=0.3 synthesis.soft_labels=true
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
from tune import classic_settings  # noqa: E402

from pipeline.build import build, load_config  # noqa: E402
from pipeline.config import EvaluateConfig  # noqa: E402
from pipeline.evaluate.evaluation import evaluate  # noqa: E402
from pipeline.version.manifest import load_manifest  # noqa: E402

_KEPT = ("rows", "steps", "mean", "std", "runs", "balanced_accuracy", "same_rows_as")


def _summary(document: dict) -> dict:
    """The figures of one evaluation worth keeping: each subset's scores, the comparisons."""
    results = {
        name: {
            k: v for k, v in r.items() if k in ("rows", "steps", "mean", "std", "runs", "balanced_accuracy")
        }
        for name, r in document["results"].items()
    }
    return {"results": results, "comparisons": document.get("comparisons", {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--largest", type=int, default=500, help="training images of class 0")
    parser.add_argument("--ratio", type=float, default=100, help="class 0 has this many times class 9's")
    parser.add_argument("--steps", type=int, default=1500, help="GAN steps")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--gate", action="store_true", help="also a version the gate decides")
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides for every version")
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    counts = [max(1, round(args.largest * args.ratio ** (-c / 9))) for c in range(10)]
    results: dict = {"train_per_class": counts, "settings": {k: str(v) for k, v in vars(args).items()}}
    results["threads"] = torch.get_num_threads()
    settings = EvaluateConfig(seeds=args.seeds, epochs=args.epochs, device="cpu")
    fill = max(counts)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = extract(counts, 0, Path(tmp) / "src", args.tarball)
        common = [
            *classic_settings(source, Path(tmp) / "out"),
            "synthesis.enabled=true",
            "synthesis.ratio=null",
            f"synthesis.target_per_class={fill}",
            f"synthesis.train.steps={args.steps}",
            f"synthesis.train.width={args.width}",
            f"synthesis.train.eval_every={max(1, args.steps // 4)}",
            "synthesis.train.device=cpu",
            "synthesis.device=cpu",
            "synthesis.gate.enabled=false",
            *args.set,
        ]
        tuned = [
            f"augment.target_per_class={fill}",
            "augment.tune.enabled=true",
            "augment.tune.metric=balanced_accuracy",
            "augment.tune.strengths=[0.25,0.5,1]",
            "augment.tune.policies=[TrivialAugmentWide]",
            f"augment.tune.seeds={min(args.seeds, 2)}",
            f"augment.tune.classifier_epochs={args.epochs}",
        ]
        both, _ = build(load_config(None, [*common, *tuned, "name=both"]))
        manifest = load_manifest(both)
        generator = both / "gan" / "generator.pt"
        results["augmented + synthetic"] = {
            **_summary(evaluate(both, settings)),
            "tune": manifest.tune.chosen if manifest.tune else None,
            "synthetic_per_class": manifest.synthesis.per_class,
            "metrics": {
                k: manifest.synthesis.metrics.get(k) for k in ("fd", "precision", "recall", "against")
            },
        }
        note("built and evaluated augmented + synthetic", started)
        _save(results, args.json)  # after each version, so a run cut short keeps its figures
        instead, _ = build(
            load_config(
                None,
                [*common, "augment.copies_per_image=0", f"synthesis.checkpoint={generator}", "name=instead"],
            )
        )
        results["synthetic instead"] = _summary(evaluate(instead, settings))
        note("built and evaluated synthetic instead", started)
        _save(results, args.json)
        if args.gate:
            gate = [
                "synthesis.gate.enabled=true",
                "synthesis.gate.metric=balanced_accuracy",
                "synthesis.gate.per_class=true",
                f"synthesis.gate.classifier_epochs={args.epochs}",
                "name=gated",
            ]
            gated, _ = build(load_config(None, [*common, *tuned, *gate]))
            results["gated"] = load_manifest(gated).synthesis.gate.model_dump(mode="json")
            note("built the gated version", started)
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results, indent=1))
    _save(results, args.json)
    return 0


def _save(results: dict, path: Path | None) -> None:
    if path:
        path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
