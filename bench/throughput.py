"""End-to-end expansion throughput and peak memory: a hand-written loop against ``expand``.

On the same source images (the first N per class of Fashion-MNIST's training split and of
the CIFAR-10 subset, from ``../shared/datasets/``), with 4 augmented copies per image:

(a) a hand-written single-process loop: Pillow decode, albumentations, Pillow PNG encode,
    one file per image in class folders (no manifest, no hashing);
(b) ``pipeline.build.build`` with ``runner.workers=1``;
(c) ``pipeline.build.build`` with every core;
(c-warm) the same, timed in a process that has built once before, so its worker pool
    (whose fork server imports the pipeline: about 2 s of one core) is already running,
    as in a long-running ``expand serve`` or notebook.

Each variant runs in a fresh subprocess, imports included (but for c-warm); the variants take turns
``--repeat`` times and the median time is reported (this machine's timings vary by 20%
from run to run). images/s counts written images (real + copies), manifest included for
(b) and (c); peak RSS is the largest of the process and its children. ``--formats`` also
runs (c) with the other lossless encodings (WebP, PNG levels 1 and 0) and reports the
version's bytes; ``--scaling`` runs (c) on 10k and 60k Fashion-MNIST images.

    python bench/throughput.py --per-class 500 [--repeat 3] [--formats] [--scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TARBALLS = {"fashion-mnist": "fashion-mnist.tar.gz", "cifar10": "cifar10-train-1k-per-class.tar.gz"}
RECIPE = [
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"translate_percent": [-0.06, 0.06], "scale": [0.92, 1.08], "rotate": [-8, 8], "p": 0.8}},
    {"RandomBrightnessContrast": {"p": 0.5}},
]
COPIES = 4


def extract(dataset: str, per_class: int, target: Path) -> Path:
    """The first ``per_class`` training images of each class, as ``target/<class>/<file>``."""
    with tarfile.open(SHARED / TARBALLS[dataset]) as tar:
        taken: dict[str, int] = {}
        members = []
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == "train":
                if taken.get(parts[1], 0) < per_class:
                    taken[parts[1]] = taken.get(parts[1], 0) + 1
                    members.append(member)
        tar.extractall(target, members=members, filter="data")
    return target / "train"


def hand_loop(source: Path, out: Path) -> int:
    import albumentations as A
    import numpy as np
    from PIL import Image

    from pipeline.augment.recipe import build_transforms

    augment = A.Compose(build_transforms(RECIPE))
    augment.set_random_seed(0)
    written = 0
    for class_dir in sorted(source.iterdir()):
        folder = out / class_dir.name
        folder.mkdir(parents=True)
        for path in sorted(class_dir.iterdir()):
            with Image.open(path) as image:
                pixels = np.asarray(image)
            Image.fromarray(pixels).save(folder / f"{path.stem}-0.png")
            for k in range(1, COPIES + 1):
                Image.fromarray(augment(image=pixels)["image"]).save(folder / f"{path.stem}-{k}.png")
            written += COPIES + 1
    return written


# Variants of ``expand`` beyond (b) and (c): (workers, config overrides).
ENCODINGS = {
    "c-webp": ["output.image_format=webp"],
    "c-png1": ["output.png_compress_level=1"],
    "c-png0": ["output.png_compress_level=0"],
}


def expand_build(source: Path, out: Path, workers: int, extra: list[str]) -> tuple[int, int]:
    """Rows written and the version's bytes on disk."""
    from pipeline.build import build, load_config
    from pipeline.version.manifest import load_manifest

    overrides = [
        "source.kind=imagefolder",
        f"source.path={source}",
        f"output.root={out}",
        "split.test_fraction=0.01",
        f"augment.copies_per_image={COPIES}",
        f"augment.transforms={json.dumps(RECIPE)}",
        f"runner.workers={workers}",
        *extra,
    ]
    version, _ = build(load_config(None, overrides))
    manifest = load_manifest(version)
    return sum(s.rows for s in manifest.shards), sum(f.bytes for f in manifest.files)


def child(variant: str, source: Path, out: Path) -> None:
    if variant == "c-warm":  # a process that already built once: its worker pool is running
        expand_build(source, out / "first", os.cpu_count() or 1, [])
        out = out / "second"
    started = time.perf_counter()
    if variant == "a":
        written = hand_loop(source, out)
        size = sum(p.stat().st_size for p in out.rglob("*.png"))
    else:
        workers = 1 if variant == "b" else os.cpu_count() or 1
        written, size = expand_build(source, out, workers, ENCODINGS.get(variant, []))
    seconds = time.perf_counter() - started
    rss = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({"images": written, "seconds": seconds, "peak_rss_mb": rss / 1024, "mb": size / 1e6}))


def run(variant: str, source: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(source), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_runs(variants: list[str], source: Path, tmp: Path, repeat: int) -> dict[str, dict]:
    """Each variant ``repeat`` times, taking turns; the median time, the largest RSS."""
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(repeat):
        for v in variants:
            runs[v].append(run(v, source, tmp / f"out-{v}"))
    summary = {}
    for v, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        summary[v] = {
            "images": results[0]["images"],
            "seconds": seconds,
            "seconds_all": [round(r["seconds"], 2) for r in results],
            "img_per_s": results[0]["images"] / seconds,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "mb": results[0]["mb"],
        }
    return summary


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", action="store_true", help="also (c) with WebP and PNG levels 1, 0")
    parser.add_argument("--scaling", action="store_true", help="also (c) on 10k and 60k Fashion-MNIST images")
    args = parser.parse_args()
    if not all((SHARED / t).is_file() for t in TARBALLS.values()):
        print(f"skipped: datasets not found under {SHARED}", file=sys.stderr)
        return 0
    results: dict = {"cores": os.cpu_count(), "copies": COPIES, "repeat": args.repeat}
    variants = ["a", "b", "c", "c-warm"] + (list(ENCODINGS) if args.formats else [])
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in TARBALLS:
            source = extract(dataset, args.per_class, Path(tmp) / dataset)
            runs = median_runs(variants, source, Path(tmp), args.repeat)
            for v, r in runs.items():
                r["vs_hand_loop"] = r["img_per_s"] / runs["a"]["img_per_s"]
                speed = f"{r['seconds']:7.1f} s {r['img_per_s']:8.0f} img/s {r['vs_hand_loop']:5.2f}x"
                print(
                    f"{dataset:<14} ({v:<6}) {r['images']:>7} images {speed} "
                    f"{r['mb']:7.1f} MB written, peak RSS {r['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
            results[dataset] = runs
            shutil.rmtree(source.parent)
        if args.scaling:
            for per_class in (1000, 6000):
                source = extract("fashion-mnist", per_class, Path(tmp) / f"scale-{per_class}")
                r = run("c", source, Path(tmp) / f"out-scale-{per_class}")
                r["img_per_s"] = r["images"] / r["seconds"]
                print(
                    f"fashion-mnist {per_class * 10:>6} sources (c): {r['img_per_s']:8.0f} img/s, "
                    f"peak RSS {r['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
                results[f"scaling-{per_class * 10}"] = r
                shutil.rmtree(source.parent)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
