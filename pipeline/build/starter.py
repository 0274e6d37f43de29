"""``expand init``: a commented starter config for a source dataset, from what is in it.

Finds the source kind from the file names (an image folder, Parquet, CIFAR-10 batches,
MNIST IDX files), then counts the images per split and class and reads their sizes (from
the headers). The config it writes loads as it is; its comments say what each choice means
and what to change.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import GAN_MAX_SIDE, SourceConfig, SplitConfig, archive_stem, is_inside
from pipeline.core.errors import SourceError
from pipeline.ingest.splits import carved_count
from pipeline.sources import detect_kind, open_source
from pipeline.sources.archive import extracted, is_archive
from pipeline.sources.base import Encoded, Invalid
from pipeline.sources.parquet import guess_columns
from pipeline.version.manifest import MANIFEST_FILE

# Classes whose largest is this many times the smallest are filled up to the largest.
_IMBALANCE = 1.5
# Filling a class needs more augmented copies of each of its images than this: say so.
_MANY_COPIES = 20
_TEST_FRACTION = SplitConfig().test_fraction  # the starter's split.test_fraction: the default
_ORIENTATION = 0x0112  # the EXIF tag
_LARGE_SIDE = 512  # a larger image gets a resize to this many pixels on its longer side
# Kinds whose images can be unreadable (the others are arrays of pixels).
_ENCODED_KINDS = ("imagefolder", "parquet")


def starter_config(path: Path) -> str:
    """YAML text of a starter config for the source dataset at ``path``.

    Raises:
        SourceError: the path holds no source this tool reads, or no readable images.
    """
    path = Path(path)
    survey = _survey(path)
    kind, image_column, label_column = survey.kind, survey.image_column, survey.label_column
    counts, sizes, class_names = survey.counts, survey.sizes, survey.class_names
    present = {split for split, _ in counts}
    splits = sorted(split for split in present if split)
    # Augmentation fills the training split: its counts decide (all images when the source
    # has no splits; the test split is carved from them later).
    training = [split for split in (None, "train") if split in present] or splits
    per_class = [sum(counts[split, label] for split in training) for label in range(len(class_names))]
    # Without a test split, one is carved from these: the rest is what augmentation fills.
    fill = per_class if "test" in splits else [n - carved_count(n, _TEST_FRACTION) for n in per_class]
    (width, height), _ = sizes.most_common(1)[0]
    smallest, largest = min(per_class), max(per_class)
    stem = _stem(path.resolve())
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip(".-")
    lines = [
        f"# Starter config for {path} (written by `expand init`).",
        f"# Found {counts.total():,} images in {len(class_names)} classes "
        f"({smallest:,} to {largest:,} {'training images ' if splits else ''}per class), "
        + (f"{width}x{height}" if len(sizes) == 1 else f"{len(sizes)} sizes, most often {width}x{height}")
        + f" {survey.mode}"
        + (f", splits: {', '.join(splits)}" if splits else ", no splits")
        + ("." if "test" in splits else f"; a test split is carved from {'train' if splits else 'them'}."),
        *_published_note(path),
        "# Every key left out keeps its default (README: config reference).",
        f"name: {json.dumps(name or 'dataset')}",
        "seed: 0",
        "source:",
        f"  kind: {kind}",
        f"  path: {json.dumps(str(path))}",
    ]
    if kind != "imagefolder" and class_names == [str(i) for i in range(len(class_names))]:
        lines.append(
            f"  # class_names: [...]       # the labels are 0..{len(class_names) - 1}: "
            "their names, in order, for folders and the card"
        )
    for key, column in (("image_column", image_column), ("label_column", label_column)):
        if column:
            lines.append(
                f"  {key}: {json.dumps(column):<14} # the {key.split('_')[0]}s' column in this Parquet"
            )
    if kind in _ENCODED_KINDS:
        lines.append(
            "  on_bad_image: error        # or skip: leave unreadable images out, listed in the manifest"
        )
    resize_lines, (width, height) = _resize_lines(sizes)
    lines += resize_lines
    lines += [
        "  duplicates: keep           # or drop: keep one of each set of identical images",
    ]
    if "test" not in splits:
        lines += [
            "split:",
            f"  test_fraction: {_TEST_FRACTION}           # stratified and seeded; never augmented",
        ]
    lines += ["augment:"]
    unbalanced = largest > _IMBALANCE * smallest
    if unbalanced:
        lines.append(
            f"  target_per_class: {max(fill)}      "
            "# classes are unbalanced: fill each up to the largest's training count"
        )
        lines += _thin_class_lines(class_names, fill)
    else:
        lines.append("  copies_per_image: 3          # augmented copies of each training image")
    lines += [
        "  transforms:                  # albumentations, by name; checked when the config loads",
        "    # - HorizontalFlip: {p: 0.5}  # only where a mirror image keeps its class (not digits, text)",
        "    - Affine: {rotate: [-10, 10], translate_percent: [-0.06, 0.06], scale: [0.92, 1.08], p: 0.8}",
        "    - RandomBrightnessContrast: {brightness_limit: 0.15, contrast_limit: 0.15, p: 0.5}",
        "synthesis:",
    ]
    if max(width, height) <= GAN_MAX_SIDE:
        lines += [
            "  enabled: false               # true: train a class-conditional GAN; the utility gate keeps",
            "                               # its samples only if they help a classifier",
        ]
        if unbalanced:
            lines += [
                "  # gate:",
                "  #   metric: balanced_accuracy  # unbalanced classes: judge by the mean per-class accuracy",
            ]
    else:
        lines.append(
            f"  enabled: false               # GAN synthesis supports up to {GAN_MAX_SIDE}x{GAN_MAX_SIDE}"
        )
    root = _output_root(path, name or "dataset")
    lines += [
        "output:",
        f"  root: {json.dumps(root):<22} # versions go to {root}/<name>/<version-id>/",
        "  format: parquet              # or imagefolder (torchvision ImageFolder layout)",
    ]
    return "\n".join(lines) + "\n"


def _thin_class_lines(class_names: list[str], fill: list[int]) -> list[str]:
    """Comment lines naming the classes that filling to the largest would copy many times
    over: copies of a few images add little a classifier has not seen. (A class without
    training images cannot be filled; the run reports it.)"""
    target = max(fill)
    thin = sorted(
        (n, name)
        for n, name in zip(fill, class_names, strict=True)
        if 0 < n and target > (_MANY_COPIES + 1) * n
    )
    if not thin:
        return []
    named = ", ".join(f"{name} ({n})" for n, name in thin[:5]) + (
        f" and {len(thin) - 5} more" if len(thin) > 5 else ""
    )
    copies = math.ceil(target / thin[0][0]) - 1
    return [
        f"  # few training images: {named}; filling them takes up to {copies} augmented copies of each.",
        "  # More real images, synthesis, or a lower target may serve them better.",
    ]


@dataclass(frozen=True)
class _Survey:
    """What a source holds, as far as a starter config needs to know."""

    kind: str
    image_column: str | None
    label_column: str | None
    class_names: list[str]
    mode: str
    counts: Counter[tuple[str | None, int]]  # images per (split, label)
    sizes: Counter[tuple[int, int]]  # images per (width, height), as they decode


def _survey(path: Path) -> _Survey:
    """Read the source at ``path`` (an archive: extracted into a temporary folder).

    Raises:
        SourceError: no source this tool reads, or no readable image.
    """
    with extracted(path) as folder:
        kind = detect_kind(folder)
        image_column, label_column = guess_columns(folder) if kind == "parquet" else (None, None)
        config = SourceConfig(
            kind=kind, path=folder, on_bad_image="skip", image_column=image_column, label_column=label_column
        )
        reader = open_source(config)
        counts: Counter[tuple[str | None, int]] = Counter()
        sizes: Counter[tuple[int, int]] = Counter()
        problem = ""  # the first reason a sample is invalid
        for sample in reader:
            if isinstance(sample.pixels, Invalid):
                problem = problem or f" (the first: {sample.pixels.where}: {sample.pixels.reason})"
            else:
                counts[sample.split, sample.label] += 1
                size = _size(sample.pixels)
                if size is not None:
                    sizes[size] += 1
    if not sizes:
        raise SourceError(f"{path}: no readable images{problem}")
    return _Survey(kind, image_column, label_column, reader.class_names, reader.mode, counts, sizes)


def _stem(path: Path) -> str:
    """A file's name without its extension (``x.tar.gz``: ``x``), or a folder's name."""
    if not path.is_file():
        return path.name
    return archive_stem(path.name) if is_archive(path) else path.stem


def _resize_lines(sizes: Counter[tuple[int, int]]) -> tuple[list[str], tuple[int, int]]:
    """The ``source.resize`` lines for images of ``sizes`` (width, height: count), and the
    size the version's images will have.

    Images of several sizes are resized to the most common one (ties: the first seen).
    Images over ``_LARGE_SIDE`` a side are staged and written at full size unless resized:
    they get the size shrunk to it (as a comment when they all match).
    """
    (width, height), _ = sizes.most_common(1)[0]
    scale = min(1.0, _LARGE_SIDE / max(width, height))
    target = (round(width * scale), round(height * scale))
    resize = f"[{target[1]}, {target[0]}]"
    if len(sizes) > 1:
        small, large = min(sizes, key=math.prod), max(sizes, key=math.prod)
        chosen = "this one" if scale == 1 else f"the most common, {width}x{height}, shrunk"
        return [
            f"  resize: {resize:<18} # [height, width]: the images come in {len(sizes)} sizes "
            f"({_text(small)} to {_text(large)}); all are resized to {chosen}",
            "  resize_mode: crop          # or pad (fit inside, black borders), stretch (aspect ratio lost)",
        ], target
    if scale < 1:
        return [
            f"  # resize: {resize:<16} # [height, width]: the images are {width}x{height}, staged and "
            "written at that size unless resized as they are ingested"
        ], (width, height)
    return [], (width, height)


def _published_note(path: Path) -> list[str]:
    """Comment lines for a version this tool published (``path`` or its ``data/`` folder):
    its augmented and synthetic rows will be read as real images."""
    for folder in (path, path.parent):
        manifest = folder / MANIFEST_FILE
        if manifest.is_file():
            try:
                origins = json.loads(manifest.read_text(encoding="utf-8"))["splits"]["train"]["by_origin"]
                made = origins.get("augmented", 0) + origins.get("synthetic", 0)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return []
            return [
                f"# {folder.resolve().name} is a version written by expand: {made:,} of its training",
                "# rows are augmented or synthetic, and are read as real images here (expand its",
                "# source instead to keep them apart).",
            ]
    return []


def _text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _size(pixels: np.ndarray | Encoded) -> tuple[int, int] | None:
    """(width, height) of an image as it decodes (EXIF orientation applied), from its header
    when it is still encoded; None when that cannot be read."""
    if isinstance(pixels, np.ndarray):
        return pixels.shape[1], pixels.shape[0]
    data = io.BytesIO(pixels.data) if isinstance(pixels.data, bytes) else pixels.data
    try:
        with Image.open(data) as image:
            width, height = image.size
            # EXIF orientations 5-8 turn the image a quarter: decoded, it is height x width.
            turned = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return (height, width) if turned else (width, height)


def _output_root(path: Path, name: str) -> str:
    """``output``, or when that would be inside the source folder (``expand init .``), a
    folder next to it: versions inside the source would be read back as source images."""
    folder = path.parent if path.is_file() else path
    if not is_inside(Path("output"), folder):
        return "output"
    return os.path.relpath(folder.resolve().parent / f"{name}-versions")
