"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST): ``*-ubyte`` or ``*-ubyte.gz``.

The folder holds ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and optionally
``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (the test split). The labels are
read whole (a byte per image); the images are streamed, 1,024 at a time, on each pass, so
memory does not grow with the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.core.errors import SourceError
from pipeline.sources.base import Sample, SourceReader, named_classes

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_CHUNK = 1024  # images read at a time
SPLIT_PREFIXES = (("train", "train"), ("t10k", "test"), ("test", "test"))


def open_mnist_idx(path: Path, class_names: list[str] | None = None) -> SourceReader:
    """Read every split found in ``path``.

    Raises:
        SourceError: no IDX pair, wrong magic number, truncated file or count mismatch.
    """
    folder = Path(path)
    parts: list[tuple[str, Path, tuple[int, ...], np.ndarray]] = []
    seen_splits: set[str] = set()
    for prefix, split in SPLIT_PREFIXES:
        images_file = find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels_file = find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if images_file is None and labels_file is None or split in seen_splits:
            continue
        if images_file is None or labels_file is None:
            missing = f"{prefix}-images-idx3-ubyte" if images_file is None else f"{prefix}-labels-idx1-ubyte"
            raise SourceError(f"{folder}: {missing}[.gz] is missing for the {split} split")
        shape = _images_shape(images_file)
        labels = _read_idx(labels_file, _LABELS_MAGIC, 1)
        if shape[0] != labels.shape[0]:
            raise SourceError(
                f"{labels_file}: {labels.shape[0]} labels for {shape[0]} images in {images_file}"
            )
        parts.append((split, images_file, shape, labels))
        seen_splits.add(split)
    if not parts:
        raise SourceError(f"{folder}: no IDX files (train-images-idx3-ubyte[.gz], ...) found")
    count = int(max(labels.max() for *_, labels in parts if labels.size)) + 1
    names = named_classes(count, class_names, str(folder))

    def samples() -> Iterator[Sample]:
        for split, images_file, shape, labels in parts:
            for index, image in enumerate(_images(images_file, shape)):
                yield Sample(f"{split}:{index:05d}", int(labels[index]), split, image)

    count = sum(labels.shape[0] for *_, labels in parts)
    return SourceReader(class_names=names, mode="L", samples=samples, count=count)


def find_idx(folder: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``folder``, gzipped or with a dot before ``idx``; None if absent."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _open(file: Path) -> BinaryIO:
    return gzip.open(file, "rb") if file.suffix == ".gz" else file.open("rb")


def _images_shape(file: Path) -> tuple[int, ...]:
    """(count, rows, columns) from an images file's header; an uncompressed file's size is
    checked against it here, a gzipped one's while it is streamed.

    Raises:
        SourceError: unreadable, wrong magic number, or (uncompressed) the wrong size.
    """
    try:
        with _open(file) as handle:
            header = handle.read(16)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{file}: cannot read: {exc}") from None
    shape = _header_shape(file, header, _IMAGES_MAGIC, 3)
    if file.suffix != ".gz":
        _check_size(file, file.stat().st_size, shape)
    return shape


def _images(file: Path, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The images of an IDX file, read ``_CHUNK`` at a time.

    Raises:
        SourceError: the file ends early or goes on past the images, or cannot be read.
    """
    count, rows, columns = shape
    try:
        with _open(file) as handle:
            handle.read(16)
            for start in range(0, count, _CHUNK):
                n = min(_CHUNK, count - start)
                data = handle.read(n * rows * columns)
                if len(data) < n * rows * columns:
                    raise SourceError(
                        f"{file}: ends after {start + len(data) // (rows * columns)} of {count} images"
                    )
                yield from np.frombuffer(data, dtype=np.uint8).reshape(n, rows, columns)
            if handle.read(1):
                raise SourceError(f"{file}: more bytes than the {count} images of its header")
    except (OSError, EOFError, zlib.error, MemoryError, OverflowError) as exc:
        raise SourceError(f"{file}: cannot read: {exc}") from None


def _read_idx(file: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        raw = gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{file}: cannot read: {exc}") from None
    shape = _header_shape(file, raw, magic, ndim)
    _check_size(file, len(raw), shape)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _header_shape(file: Path, data: bytes, magic: int, ndim: int) -> tuple[int, ...]:
    """The shape an IDX header (at the start of ``data``) gives, after its magic number."""
    if len(data) < 4 + 4 * ndim or int.from_bytes(data[:4], "big") != magic:
        raise SourceError(f"{file}: not an IDX file (expected magic number 0x{magic:08x})")
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _check_size(file: Path, size: int, shape: tuple[int, ...]) -> None:
    expected = 4 + 4 * len(shape) + math.prod(shape)
    if size != expected:
        raise SourceError(f"{file}: {size} bytes, expected {expected} for shape {shape}")
