"""Storage at photo sizes: PNG against JPEG q95 / q90 and lossy WebP, on real photos.

The hymenoptera photos (ants and bees, 245 training and 153 test images, non-square) are
expanded as a user would (2 augmented copies per image, flip and affine) into one version
per image format. Reported per format:

- ``bytes``: the images' bytes in the version (Parquet shards, all splits), per image;
- ``encode_img_per_s``: how fast this machine's OpenCV encodes the version's images in one
  thread (decoded from the PNG version, so every format encodes the same pixels);
- ``accuracy``: the reference classifier trained on the version's decoded training rows and
  tested on its own (equally encoded) test split, ``--seeds`` seeds, ``--steps`` steps;
  with the gain over PNG paired over seeds and test images (95 % interval).

Two sizes: ``--size`` (default 256x384, the photos' own scale) for bytes and speed, and
``--train-size`` (default 128x192) for the accuracy, because a classifier step at 256x384
takes about 5 s on 2 CPU cores.

    python bench/storage.py --json bench/results/storage-hymenoptera.json
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

ROOT = Path(__file__).resolve().parent.parent
TARBALL = ROOT.parent / "shared" / "datasets" / "hymenoptera-256.tar.gz"
sys.path.insert(0, str(ROOT))

from pipeline.build import build, load_config  # noqa: E402
from pipeline.core.images import encode_image  # noqa: E402
from pipeline.dataset import ExpandedDataset  # noqa: E402
from pipeline.evaluate.classifier import ClassifierSpec, correct, to_tensor, train_classifier  # noqa: E402
from pipeline.evaluate.stats import paired_interval  # noqa: E402
from pipeline.version.manifest import load_manifest  # noqa: E402

FORMATS = {
    "png": [],
    "jpeg q95": ["output.image_format=jpeg", "output.quality=95"],
    "jpeg q90": ["output.image_format=jpeg", "output.quality=90"],
    "webp q90": ["output.image_format=webp", "output.quality=90"],
}
RECIPE = '[{"HorizontalFlip": {"p": 0.5}}, {"Affine": {"rotate": [-10, 10], "scale": [0.9, 1.1], "p": 0.8}}]'


def _version(source: Path, out: Path, size: tuple[int, int], extra: list[str]) -> tuple[Path, float]:
    config = load_config(
        None,
        [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"source.resize=[{size[0]}, {size[1]}]",
            "source.resize_mode=crop",
            f"output.root={out}",
            "augment.copies_per_image=2",
            f"augment.transforms={RECIPE}",
            *extra,
        ],
    )
    started = time.perf_counter()
    version, _ = build(config)
    return version, time.perf_counter() - started


def _pixels(version: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    data = ExpandedDataset(version, split=split, transform=lambda image: np.asarray(image.convert("RGB")))
    images, labels = zip(*(data[i] for i in range(len(data))), strict=True)
    return np.stack(images), np.asarray(labels)


def _image_bytes(version: Path) -> int:
    """Bytes of the encoded images in the version's shards."""
    import pyarrow.parquet as pq

    return sum(
        sum(len(cell["bytes"]) for cell in pq.read_table(f, columns=["image"]).column("image").to_pylist())
        for f in sorted((version / "data").glob("*.parquet"))
    )


def _encode_rate(pixels: np.ndarray, extra: list[str]) -> float:
    settings = dict(item.removeprefix("output.").split("=") for item in extra)
    kwargs = {"image_format": settings.get("image_format", "png")}
    if "quality" in settings:
        kwargs["quality"] = int(settings["quality"])
    threads = torch.get_num_threads()
    import cv2

    cv2.setNumThreads(1)
    started = time.perf_counter()
    for image in pixels:
        encode_image(image, **kwargs)
    cv2.setNumThreads(threads)
    return len(pixels) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 384], help="height width for bytes")
    parser.add_argument("--train-size", type=int, nargs=2, default=[128, 192], help="for the accuracy")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.tarball.is_file():
        print(f"skipped: {args.tarball} not found", file=sys.stderr)
        return 0
    results: dict = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
    }
    spec = ClassifierSpec(steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        with tarfile.open(args.tarball) as archive:
            archive.extractall(source, filter="data")
        reference_pixels = None
        answers: dict[str, np.ndarray] = {}
        for name, extra in FORMATS.items():
            row: dict = {}
            big, _ = _version(
                source, Path(tmp) / "big", tuple(args.size), [*extra, f"name=big-{name[:4]}{name[-2:]}"]
            )
            manifest = load_manifest(big)
            rows = sum(s.rows for s in manifest.splits.values())
            image_bytes = _image_bytes(big)
            if reference_pixels is None:  # the PNG version: the pipeline's own pixels
                reference_pixels = _pixels(big, "train")[0][:200]
            row.update(
                rows=rows,
                image_bytes=image_bytes,
                bytes_per_image=image_bytes / rows,
                version_bytes=sum(f.bytes for f in manifest.files),
                encode_img_per_s=round(_encode_rate(reference_pixels, extra), 1),
            )
            small, _ = _version(
                source,
                Path(tmp) / "small",
                tuple(args.train_size),
                [*extra, f"name=small-{name[:4]}{name[-2:]}"],
            )
            train_x, train_y = _pixels(small, "train")
            test_x, test_y = _pixels(small, "test")
            right = []
            for seed in range(args.seeds):
                model = train_classifier(
                    to_tensor(train_x), torch.as_tensor(train_y), 2, seed=seed, spec=spec
                )
                right.append(correct(model, to_tensor(test_x), test_y))
            answers[name] = np.asarray(right, dtype=np.float64)
            row["accuracy"] = {
                "mean": float(answers[name].mean()),
                "runs": answers[name].mean(axis=1).tolist(),
            }
            if name != "png":
                row["gain_over_png"] = paired_interval(answers[name] - answers["png"])
            row["test_images"] = len(test_y)
            results[name] = row
            print(json.dumps({name: row}), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
