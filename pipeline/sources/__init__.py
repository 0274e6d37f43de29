"""Source readers, one module per input format. :func:`open_source` picks one by kind."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ARCHIVE_SUFFIXES, SourceConfig
from pipeline.core.errors import SourceError
from pipeline.sources.archive import is_archive
from pipeline.sources.base import Sample, SourceReader
from pipeline.sources.cifar10 import TEST_BATCH, TRAIN_BATCHES, open_cifar10
from pipeline.sources.digits import open_digits
from pipeline.sources.imagefolder import open_imagefolder
from pipeline.sources.mnist_idx import SPLIT_PREFIXES, find_idx, open_mnist_idx
from pipeline.sources.parquet import open_parquet

__all__ = ["Sample", "SourceReader", "detect_kind", "open_source"]


def open_source(config: SourceConfig, workers: int = 1) -> SourceReader:
    """Open the source named by ``config.kind``; ``workers`` processes may index it."""
    if config.kind == "digits":
        return open_digits(config.class_names)
    if config.kind == "imagefolder":
        if config.class_names is not None:
            raise SourceError("source.class_names is not used with image folders (folder names are)")
        return open_imagefolder(
            config.path,
            workers,
            skip_bad=config.on_bad_image == "skip",
            follow_symlinks=config.follow_symlinks,
        )
    if config.kind == "parquet":
        return open_parquet(
            config.path,
            config.class_names,
            skip_bad=config.on_bad_image == "skip",
            columns=(config.image_column, config.label_column),
            follow_symlinks=config.follow_symlinks,
        )
    if config.kind == "cifar10":
        return open_cifar10(config.path, config.class_names)
    return open_mnist_idx(config.path, config.class_names)


def detect_kind(path: Path) -> str:
    """The source kind ``path`` holds, by its file names: CIFAR-10 batches, MNIST IDX files,
    Parquet files, else an image folder.

    Raises:
        SourceError: the path does not exist, or is a file but not a ``.parquet`` file (an
            archive is extracted first: see :mod:`pipeline.sources.archive`).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix == ".parquet":
            return "parquet"
        if is_archive(path):
            raise SourceError(f"{path}: an archive: extract it first (pipeline.sources.archive.extracted)")
        raise SourceError(
            f"{path}: not a folder, a .parquet file or an archive ({', '.join(ARCHIVE_SUFFIXES)})"
        )
    if not path.is_dir():
        raise SourceError(f"{path}: no such folder")
    batches = (*TRAIN_BATCHES, TEST_BATCH)
    if any((folder / name).is_file() for folder in (path, path / "cifar-10-batches-py") for name in batches):
        return "cifar10"
    if any(find_idx(path, f"{prefix}-images-idx3-ubyte") for prefix, _ in SPLIT_PREFIXES):
        return "mnist-idx"
    if any(file.is_file() for file in path.rglob("*.parquet")):
        return "parquet"
    return "imagefolder"
