"""``expand init``: a commented starter config for a folder of images, from what is in it.

Reads only folder names and image headers. The config it writes loads as it is; its
comments say what each choice means and what to change.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from PIL import Image

from pipeline.config import is_inside
from pipeline.sources.imagefolder import open_imagefolder

# Classes whose largest is this many times the smallest are filled up to the largest.
_IMBALANCE = 1.5
_GAN_MAX_SIDE = 64


def starter_config(folder: Path) -> str:
    """YAML text of a starter config for the image folder ``folder``.

    Raises:
        SourceError: the folder has no class folders or no readable images.
    """
    folder = Path(folder)
    reader = open_imagefolder(folder, skip_bad=True)
    samples = list(reader)
    splits = sorted({s.split for s in samples if s.split})
    # Augmentation fills the training split: its counts decide (all images without split
    # folders; the test split is carved from them later).
    training = [s for s in samples if not s.split or s.split == "train"] or samples
    per_class = Counter(reader.class_names[s.label] for s in training)
    with Image.open(samples[0].pixels.data) as first:
        width, height = first.size
    smallest, largest = min(per_class.values()), max(per_class.values())
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in folder.resolve().name).strip(".-")
    lines = [
        f"# Starter config for {folder} (written by `expand init`).",
        f"# Found {len(samples):,} images in {len(reader.class_names)} classes "
        f"({smallest:,} to {largest:,} {'training images ' if splits else ''}per class), "
        f"{width}x{height} {reader.mode}"
        + (f", splits: {', '.join(splits)}" if splits else "; no split folders")
        + ("; a test split is carved from train." if "test" not in splits else "."),
        "# Every key left out keeps its default (README: config reference).",
        f"name: {json.dumps(name or 'dataset')}",
        "seed: 0",
        "source:",
        "  kind: imagefolder",
        f"  path: {json.dumps(str(folder))}",
        "  on_bad_image: error        # or skip: leave unreadable images out, listed in the manifest",
        "  duplicates: keep           # or drop: keep one of each set of identical images",
    ]
    if "test" not in splits:
        lines += ["split:", "  test_fraction: 0.2           # stratified and seeded; never augmented"]
    lines += ["augment:"]
    if largest > _IMBALANCE * smallest:
        lines.append(
            f"  target_per_class: {largest}      # classes are unbalanced: fill each up to the largest"
        )
    else:
        lines.append("  copies_per_image: 3          # augmented copies of each training image")
    lines += [
        "  transforms:                  # albumentations, by name; checked when the config loads",
        "    # - HorizontalFlip: {p: 0.5}  # only where a mirror image keeps its class (not digits, text)",
        "    - Affine: {rotate: [-10, 10], translate_percent: [-0.06, 0.06], scale: [0.92, 1.08], p: 0.8}",
        "    - RandomBrightnessContrast: {brightness_limit: 0.15, contrast_limit: 0.15, p: 0.5}",
        "synthesis:",
    ]
    if max(width, height) <= _GAN_MAX_SIDE:
        lines += [
            "  enabled: false               # true: train a class-conditional GAN; the utility gate keeps",
            "                               # its samples only if they help a classifier",
        ]
    else:
        lines.append(
            f"  enabled: false               # GAN synthesis supports up to {_GAN_MAX_SIDE}x{_GAN_MAX_SIDE}"
        )
    root = _output_root(folder, name or "dataset")
    lines += [
        "output:",
        f"  root: {json.dumps(root):<22} # versions go to {root}/<name>/<version-id>/",
        "  format: parquet              # or imagefolder (torchvision ImageFolder layout)",
    ]
    return "\n".join(lines) + "\n"


def _output_root(folder: Path, name: str) -> str:
    """``output``, or when that would be inside ``folder`` (``expand init .``), a folder
    next to it: versions inside the source would be read back as source images."""
    if not is_inside(Path("output"), folder):
        return "output"
    return os.path.relpath(folder.resolve().parent / f"{name}-versions")
