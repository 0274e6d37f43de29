"""What every config section shares: the strict base model, limits, the device and metric
choices, and the small parsers and path helpers the sections validate with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

SOURCE_KINDS = ("digits", "imagefolder", "parquet", "cifar10", "mnist-idx")
MAX_RESIZE = 4096  # pixels per side of source.resize
# A source.path with one of these is an archive, extracted before it is read.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
GAN_MAX_SIDE = 256  # the largest side GAN synthesis trains at
GAN_MIN_SIDE = 8
GAN_MAX_BASE = 7  # the generator grows a base x base map (4..7) by doublings


def gan_layout(side: int) -> tuple[int, int]:
    """(base, blocks): the generator grows a ``base`` x ``base`` map by ``blocks`` doublings
    to ``side``; the discriminator shrinks it back (base >= 4)."""
    base, blocks = side, 0
    while base % 2 == 0 and base // 2 >= 4:
        base, blocks = base // 2, blocks + 1
    return base, blocks


def gan_side_ok(side: int) -> bool:
    """Whether the GAN's networks can work at ``side``: b x 2^k with b in 4..7 and k >= 1,
    within GAN_MIN_SIDE..GAN_MAX_SIDE (8, 10, 12, 14, 16, 20, ..., 128, 160, 192, 224, 256)."""
    base, blocks = gan_layout(side)
    return GAN_MIN_SIDE <= side <= GAN_MAX_SIDE and base <= GAN_MAX_BASE and blocks >= 1


# shard_size 'auto': this many shards, each within these row bounds.
AUTO_SHARDS = 64
AUTO_SHARD_ROWS = (1000, 5000)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
Device = Literal["auto", "cpu", "cuda", "mps"]  # auto: cuda, then mps, then cpu
DEVICES: tuple[str, ...] = get_args(Device)
# How a stage compares classifiers on validation images: every image alike, or every class.
Metric = Literal["accuracy", "balanced_accuracy"]
METRIC_HELP = "accuracy, or balanced_accuracy: the mean of the per-class accuracies (unbalanced classes)"


class Strict(BaseModel):
    """A config section: unknown keys are errors, and a loaded config is never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def metric_name(metric: str) -> str:
    """A metric as reports name it: "accuracy", "balanced accuracy"."""
    return metric.replace("_", " ")


def archive_stem(name: str) -> str:
    """A file name without its archive suffix (``pets.tar.gz``: ``pets``); other names as
    they are."""
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (relative paths from the working
    directory, links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def parse_size(text: str) -> int:
    """Parse '64MB', '512KiB' or '1GB' into bytes.

    Raises:
        ValueError: the text is not a number followed by a known unit.
    """
    match = _SIZE_RE.match(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"size {text!r} must look like '64MB' (units: B, KB, MB, GB, KiB, MiB, GiB)")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError(f"size {text!r} must be positive")
    return size
