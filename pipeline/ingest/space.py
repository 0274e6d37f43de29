"""Disk space under ``output.root``: what a version will take, and a full disk said plainly.

A build stages its pixels, its plan and its shards under ``output.root`` and renames the
finished version into place there, so that one disk holds all of it. The raw pixels'
size is known exactly at the first decoded image, and a source that cannot be staged is
refused then. After ingest the version's size is estimated from a sample of staged
images encoded as the output will encode them; a run that will not fit is warned before
the long stages. When the disk fills anyway, the error names ``output.root``, what the
version needs and what was free, instead of the writer's bare "No space left on device";
and no task retries an error that another attempt cannot fix (:func:`worth_retrying`).
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.images import encode_image, shape_text

_FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})
# Errors a second attempt of the same write cannot fix: not worth a task's retries. A
# missing file or folder is a staging folder removed by a failed or interrupted run.
_PERMANENT = _FULL_DISK | {errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOENT}
# Bytes a row costs besides its image: its lineage columns (measured 110-350 bytes per
# row, the augmentation's parameters most of it) and its entry in the plan (about 170);
# an image folder's manifest lists every file too (about 175 bytes each).
ROW_OVERHEAD = 512
FILE_ENTRY = 256
# The version's other files: the card, the manifest's header, croissant.json and the
# pictures, whose image grid is about 100 images (190 KB for CIFAR-10's 32x32).
_PICTURE_IMAGES = 256
_METADATA = 1 << 20
_SAMPLE_IMAGES = 64
_SAMPLE_PIXELS = 4 << 20  # fewer sample images when they are large: encoding is the cost


@dataclass(frozen=True)
class SpaceEstimate:
    """The most a version may write under ``output.root``, against the disk's free space."""

    rows: int  # the most rows the config can give: tuned copies and synthesis at their most
    row_bytes: int  # a row on disk: the mean encoded sample image, file blocks, overhead
    other_bytes: int  # the version's other files: pictures, card, metadata
    free: int  # bytes free on output.root's disk once the source is staged

    @property
    def needed(self) -> int:
        return self.rows * self.row_bytes + self.other_bytes

    @property
    def short(self) -> bool:
        return self.needed > self.free

    def describe(self) -> str:
        return (
            f"this version needs about {_mb(self.needed)} ({self.rows:,} rows of about "
            f"{self.row_bytes:,} bytes, its pictures and metadata) and {_mb(self.free)} was free "
            "after ingest"
        )


class DiskFullError(OSError):
    """The disk under ``output.root`` filled up (or its quota ran out) during a build."""


def most_rows(config: Config, counts: dict[str, dict[str, int]]) -> int:
    """The most rows a version of ``config`` can hold, from the source's images per split
    and class: every source image, each class's augmented copies (the largest count
    ``augment.tune`` may choose) and its synthetic rows (the most synthesis may generate)."""
    rows = sum(sum(per_class.values()) for per_class in counts.values())
    for name, n in counts.get("train", {}).items():
        rows += most_copies(config, name, n)
        if config.synthesis.enabled:
            rows += config.synthesis.count_for(n)
    return rows


def most_copies(config: Config, name: str, real: int) -> int:
    """The augmented copies class ``name`` gets from its ``real`` training images: its
    count, or with ``augment.tune`` the largest count the tuning may choose."""
    augment = config.augment
    augments = [augment]
    if augment.tune.enabled:
        augments += [
            augment.model_copy(update={"copies_per_image": copies, "target_per_class": target})
            for copies, target in augment.tuned_counts()
        ]
    return max(a.copies_for(name, real) for a in augments)


def estimate_space(
    config: Config, rows: int, pixels, shape: tuple[int, ...], count: int, where: Path
) -> SpaceEstimate:
    """Estimate what ``rows`` rows take on the disk of ``where`` (a folder under
    ``output.root``), from up to 64 of the ``count`` staged images of ``shape`` in
    ``pixels`` (a :class:`~pipeline.ingest.PixelStore`), spread over the source and
    encoded as the output encodes them. A trained generator's checkpoints (a few MB at
    the default width) are not counted."""
    output = config.output
    sample = _sample_rows(count, math.prod(shape))
    sizes = [len(encode_image(pixels[i], **output.encoding())) for i in sample]
    image = float(np.mean(sizes)) if sizes else 0.0
    other = int(_PICTURE_IMAGES * image) + _METADATA
    row = image + ROW_OVERHEAD
    if output.format == "imagefolder":  # a file per image, whole blocks of the file system
        block = os.statvfs(where).f_frsize or 4096
        row = math.ceil(image / block) * block + ROW_OVERHEAD + FILE_ENTRY
    return SpaceEstimate(rows=rows, row_bytes=int(row), other_bytes=other, free=_free(where))


def raise_if_full(exc: BaseException, root: Path, estimate: SpaceEstimate | None = None) -> None:
    """Raise a :class:`DiskFullError` that names ``root`` (``output.root``) when ``exc``
    is a full disk or quota; otherwise return, for the caller to re-raise ``exc``. Call
    it once the failed run's staging is removed: the free space it reports is what is
    left without the run."""
    if isinstance(exc, DiskFullError) or not isinstance(exc, OSError) or exc.errno not in _FULL_DISK:
        return
    if estimate is not None:
        detail = estimate.describe()
    else:
        detail = f"{_mb(_free(root))} is free there now, without this run's staging"
    message = (
        f"{os.strerror(exc.errno)} under output.root ({root}): {detail}; free some space, "
        "or point output.root at a disk with more"
    )
    raise DiskFullError(exc.errno, message) from exc


def check_staging_room(count: int, shape: tuple[int, ...], where: Path, root: Path) -> None:
    """Refuse to stage ``count`` images of ``shape`` as raw pixels under ``where`` (in
    ``root``, ``output.root``) when the disk has less room than they take: known exactly
    once the first image is decoded, before the disk fills.

    Raises:
        PipelineError: naming the size, the free space, and ``source.resize``.
    """
    needed, free = count * math.prod(shape), _free(where)
    if needed > free:
        raise PipelineError(
            f"staging {count:,} images of {shape_text(shape)} takes {_mb(needed)} under output.root "
            f"({root}) and {_mb(free)} is free: set source.resize to stage them smaller, or free some space"
        )


def worth_retrying(exc: BaseException) -> bool:
    """False for errors that another attempt of the same task cannot fix: bad input, a
    full disk or quota, a read-only file system, a permission refused, a file too large,
    a file or folder that is not there, a worker process that died (killed by a stopped
    run, or by the kernel for memory: a retry would start a fresh pool to meet the same), a
    call cancelled by a stopped run. A pipeline error raised from an I/O error (an upload,
    say) is judged by that error."""
    if isinstance(exc, BrokenProcessPool | CancelledError):
        return False
    if isinstance(exc, PipelineError):
        if not isinstance(exc.__cause__, OSError):
            return False
        exc = exc.__cause__
    return not (isinstance(exc, OSError) and exc.errno in _PERMANENT)


def _sample_rows(count: int, image_pixels: int) -> np.ndarray:
    wanted = min(count, max(4, min(_SAMPLE_IMAGES, _SAMPLE_PIXELS // max(1, image_pixels))))
    return np.unique(np.linspace(0, count - 1, wanted).astype(np.int64))


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _mb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 10e9 else f"{size / 1e6:,.1f} MB"
