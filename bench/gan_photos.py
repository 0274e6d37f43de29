"""The GAN on real photos at 128 px: hymenoptera (ants and bees, about 120 training photos
per class, non-square), built as a user would with synthesis on and the gate deciding.

The GAN trains once (``expand train-gan``'s path: on the training split less the gate's
validation part); two builds then sample that checkpoint: one with the gate on (its
decision, and the quality metrics against the gate's validation images) and one with the
gate off, whose metrics (classifier FD, KID, precision, recall, CAS) are against the test
split, which neither the GAN nor the reference classifier saw. The sample grid of the
second (``samples.png``) is copied to ``--out``.

    python bench/gan_photos.py --resolution 128 --steps 3000 --width 64 --device cuda --out DIR
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.build import build, load_config  # noqa: E402
from pipeline.build.runner import train_gan_only  # noqa: E402
from pipeline.version.manifest import load_manifest  # noqa: E402

TARBALL = ROOT.parent / "shared" / "datasets" / "hymenoptera-256.tar.gz"
RECIPE = '[{"HorizontalFlip": {"p": 0.5}}, {"Affine": {"rotate": [-10, 10], "scale": [0.9, 1.1], "p": 0.8}}]'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--size", type=int, nargs=2, default=[192, 256], help="the photos' height width")
    parser.add_argument("--resolution", type=int, default=128, help="synthesis.train.resolution")
    parser.add_argument("--fit", default="pad", choices=["stretch", "pad", "crop"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides")
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        with tarfile.open(args.tarball) as archive:
            archive.extractall(source, filter="data")
        overrides = [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"source.resize=[{args.size[0]}, {args.size[1]}]",
            "source.resize_mode=crop",
            f"output.root={Path(tmp) / 'out'}",
            "output.image_format=jpeg",
            "augment.copies_per_image=2",
            f"augment.transforms={RECIPE}",
            "synthesis.enabled=true",
            "synthesis.ratio=1.0",
            f"synthesis.train.resolution={args.resolution}",
            f"synthesis.train.fit={args.fit}",
            f"synthesis.train.steps={args.steps}",
            f"synthesis.train.width={args.width}",
            f"synthesis.train.batch_size={args.batch}",
            f"synthesis.train.eval_every={max(1, args.steps // 4)}",
            f"synthesis.train.device={args.device}",
            f"synthesis.device={args.device}",
            *args.set,
        ]
        config = load_config(None, overrides)
        trained = time.perf_counter()
        summary = train_gan_only(config, Path(tmp) / "gan")
        trained = time.perf_counter() - trained
        given = [f"synthesis.checkpoint={summary['checkpoint']}"]
        gated = load_manifest(build(load_config(None, [*overrides, *given]))[0]).synthesis
        version, _ = build(load_config(None, [*overrides, *given, "synthesis.gate.enabled=false"]))
        reported = load_manifest(version).synthesis
        shutil.copyfile(version / "samples.png", args.out / "photos-samples.png")
        result = {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "geometry": reported.geometry,
            "checkpoint_chosen": summary.get("best"),
            "training_seconds": round(trained, 1),
            "metrics_test": reported.metrics,
            "metrics_validation": gated.metrics,
            "gate": gated.gate.model_dump(mode="json") if gated.gate else None,
            "published": gated.published,
            "devices": gated.devices.model_dump(mode="json") if gated.devices else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
    (args.out / "photos.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
