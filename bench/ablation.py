"""Which lever makes synthetic rows help? Fashion-MNIST, K real images per class, the whole
test split: one version per arm (the gate forced open, so every arm publishes its rows,
but in ``together_gated``), each evaluated as ``expand evaluate`` does (every subset
trained for the same steps, 3+ seeds; the real and real+augmented subsets, the same rows
in every arm, are trained once per step count), and the paired gain of
real+augmented+synthetic over real+augmented with its 95 % interval over seeds and test
images, CAS against real-only, rows kept and time.

Arms: the baseline synthesis (hinge loss), then each lever alone (minimax loss, LeCam, ADA,
label-consistent filtering, discriminator rejection sampling, soft labels, ratios 0.25 and
0.1, loss weight 0.5, truncation), all the GAN-side and filter-side levers together, and
together with the per-class utility gate deciding which classes get rows. Arms that only
change filtering or labels reuse the baseline's generator (``synthesis.checkpoint``), so
they differ in that lever alone; ``--generator`` gives one from an earlier run (the
baseline arm then samples it too).

    python bench/ablation.py --per-class 100 --steps 1500 --seeds 3 --json bench/results/ablation-k100.json
    python bench/ablation.py --per-class 10 --steps 20 --seeds 2 --epochs 1 --arms baseline soft_labels

``--grid 2`` scores every subset with the stronger reference classifier (``evaluate.grid``).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch
from gan_quality import RECIPE, TARBALL, extract, note

from pipeline.build import build, load_config
from pipeline.config import EvaluateConfig
from pipeline.evaluate.classifier import equal_steps
from pipeline.evaluate.evaluation import SUBSETS, comparisons, evaluate_subset
from pipeline.version.manifest import load_manifest

# Each arm: its overrides, and whether it trains its own generator (else the baseline's).
TOGETHER = [
    "synthesis.train.lecam=0.3",
    "synthesis.train.ada_target=0.6",
    "synthesis.filter.label_consistent=true",
    "synthesis.soft_labels=true",
]
ARMS: dict[str, tuple[list[str], bool]] = {
    "baseline": ([], True),
    "minimax": (["synthesis.train.loss=minimax", "synthesis.train.betas=[0.5, 0.999]"], True),
    "lecam": (["synthesis.train.lecam=0.3"], True),
    "ada": (["synthesis.train.ada_target=0.6"], True),
    "label_consistent": (["synthesis.filter.label_consistent=true"], False),
    "drs": (["synthesis.filter.drs=0.95"], False),
    "soft_labels": (["synthesis.soft_labels=true"], False),
    "ratio_0.25": (["synthesis.ratio=0.25"], False),
    "ratio_0.1": (["synthesis.ratio=0.1"], False),
    "soft_labels_ratio_0.25": (["synthesis.soft_labels=true", "synthesis.ratio=0.25"], False),
    "weight_0.5": (["synthesis.weight=0.5"], False),
    # The truncation trick (Brock et al. 2019): latents beyond |t| redrawn, fidelity for diversity.
    "truncation_1.0": (["synthesis.truncation=1.0"], False),
    "truncation_0.5": (["synthesis.truncation=0.5"], False),
    "together": (TOGETHER, True),
    # The levers together with the utility gate on, per class: it decides on its own part of
    # the training images (which the GAN then does not see) which classes get rows.
    "together_gated": ([*TOGETHER, "synthesis.gate.enabled=true", "synthesis.gate.per_class=true"], True),
}


def scored(version: Path, settings: EvaluateConfig, cache: Path) -> dict[str, dict]:
    """Every subset of ``version`` as ``expand evaluate`` scores it (with ``_correct``, the
    per-seed, per-image answers the paired intervals need). Real and real+augmented rows
    are the same in every arm, so they are trained once for each step count (every subset
    trains the steps of the version's largest) and read back from ``cache`` after that."""
    manifest = load_manifest(version)
    steps = equal_steps(manifest.splits["train"].rows, settings.epochs)
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for subset in SUBSETS:
        saved = cache / f"{subset}-{steps}-{settings.seeds}-g{settings.grid}.pickle"
        if subset in ("real", "real+augmented") and saved.is_file():
            found[subset] = pickle.loads(saved.read_bytes())
            continue
        found[subset] = evaluate_subset(version, subset, settings)
        if subset in ("real", "real+augmented"):
            saved.write_bytes(pickle.dumps(found[subset]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--copies", type=float, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="evaluation: passes over the largest subset")
    parser.add_argument(
        "--grid", type=int, default=1, help="evaluation: the classifier's head (evaluate.grid)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the source and versions here (else a temp folder)")
    parser.add_argument("--generator", type=Path, help="baseline generator.pt from a --workdir run")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides for every arm")
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    results: dict = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "arms": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        started = time.perf_counter()
        source = Path(tmp) / "src"
        if not source.is_dir():  # a --workdir run extracts once
            extract(args.per_class, 0, source, args.tarball)
        common = [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"augment.copies_per_image={args.copies}",
            f"augment.transforms={json.dumps(RECIPE)}",
            "synthesis.enabled=true",
            "synthesis.ratio=1.0",
            "synthesis.gate.enabled=false",  # every arm publishes: the evaluation judges
            f"synthesis.train.steps={args.steps}",
            f"synthesis.train.width={args.width}",
            f"synthesis.train.eval_every={max(1, args.steps // 4)}",
            f"synthesis.train.device={args.device}",
            f"synthesis.device={args.device}",
            *args.set,
        ]
        generator = args.generator
        settings = EvaluateConfig(seeds=args.seeds, epochs=args.epochs, device=args.device, grid=args.grid)
        for name in args.arms:
            overrides, trains = ARMS[name]
            if not trains and generator is None:
                print(f"{name}: needs the baseline arm first (its generator)", file=sys.stderr)
                continue
            arm_started = time.perf_counter()
            reuse = [] if trains else [f"synthesis.checkpoint={generator}"]
            config = load_config(None, [*common, f"output.root={Path(tmp) / name}", *overrides, *reuse])
            version, _ = build(config)
            if name == "baseline" and generator is None:
                generator = version / "gan" / "generator.pt"
            built = time.perf_counter() - arm_started
            found = scored(version, settings, Path(tmp) / "scores")
            synthesis = load_manifest(version).synthesis
            real, cas = found["real"]["mean"], found["synthetic only (CAS)"]
            results["arms"][name] = {
                "overrides": overrides,
                "gain_over_real_augmented": comparisons(found).get("real+augmented+synthetic"),
                "results": {n: {k: v for k, v in r.items() if k != "_correct"} for n, r in found.items()},
                "cas_ratio": cas["mean"] / real if cas.get("rows") else None,
                "synthetic_rows": synthesis.published,
                "kept_after_filter": synthesis.kept_after_filter,
                "metrics": {
                    k: synthesis.metrics.get(k) for k in ("fd", "kid", "precision", "recall", "against")
                },
                "build_seconds": round(built, 1),
                "seconds": round(time.perf_counter() - arm_started, 1),
            }
            gain = results["arms"][name]["gain_over_real_augmented"]
            note(
                f"{name}: gain {gain['accuracy']['gain']:+.4f} [{gain['accuracy']['low']:+.4f}, "
                f"{gain['accuracy']['high']:+.4f}]"
                if gain
                else f"{name}: no comparison",
                started,
            )
            if args.json:  # after each arm, so a run cut short keeps its figures
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({n: a["gain_over_real_augmented"] for n, a in results["arms"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
