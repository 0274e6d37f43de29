"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST): ``*-ubyte`` or ``*-ubyte.gz``.

The folder holds ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and optionally
``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (the test split).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import SourceError
from pipeline.sources.base import Sample, SourceReader, named_classes

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
SPLIT_PREFIXES = (("train", "train"), ("t10k", "test"), ("test", "test"))


def open_mnist_idx(path: Path, class_names: list[str] | None = None) -> SourceReader:
    """Read every split found in ``path``.

    Raises:
        SourceError: no IDX pair, wrong magic number, truncated file or count mismatch.
    """
    folder = Path(path)
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    seen_splits: set[str] = set()
    for prefix, split in SPLIT_PREFIXES:
        images_file = find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels_file = find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images_file is None and labels_file is None or split in seen_splits:
            continue
        if images_file is None or labels_file is None:
            missing = f"{prefix}-images-idx3-ubyte" if images_file is None else f"{prefix}-labels-idx1-ubyte"
            raise SourceError(f"{folder}: {missing}[.gz] is missing for the {split} split")
        images = _read_idx(images_file, _IMAGES_MAGIC, 3)
        labels = _read_idx(labels_file, _LABELS_MAGIC, 1)
        if images.shape[0] != labels.shape[0]:
            raise SourceError(
                f"{labels_file}: {labels.shape[0]} labels for {images.shape[0]} images in {images_file}"
            )
        parts.append((split, images, labels))
        seen_splits.add(split)
    if not parts:
        raise SourceError(f"{folder}: no IDX files (train-images-idx3-ubyte[.gz], ...) found")
    count = int(max(labels.max() for _, _, labels in parts if labels.size)) + 1
    names = named_classes(count, class_names, str(folder))

    def samples() -> Iterator[Sample]:
        for split, images, labels in parts:
            for index in range(labels.shape[0]):
                yield Sample(f"{split}:{index:05d}", int(labels[index]), split, images[index])

    count = sum(labels.shape[0] for _, _, labels in parts)
    return SourceReader(class_names=names, mode="L", samples=samples, count=count)


def find_idx(folder: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``folder``, gzipped or with a dot before ``idx``; None if absent."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(file: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        raw = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SourceError(f"{file}: cannot read: {exc}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise SourceError(f"{file}: not an IDX file (expected magic number 0x{magic:08x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise SourceError(f"{file}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
