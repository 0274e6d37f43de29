"""Source readers, one module per input format. :func:`open_source` picks one by kind."""

from __future__ import annotations

from pipeline.config import SourceConfig
from pipeline.errors import SourceError
from pipeline.sources.base import Sample, SourceReader
from pipeline.sources.cifar10 import open_cifar10
from pipeline.sources.digits import open_digits
from pipeline.sources.imagefolder import open_imagefolder
from pipeline.sources.mnist_idx import open_mnist_idx
from pipeline.sources.parquet import open_parquet

__all__ = ["Sample", "SourceReader", "open_source"]


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
        return open_parquet(config.path, config.class_names, skip_bad=config.on_bad_image == "skip")
    if config.kind == "cifar10":
        return open_cifar10(config.path, config.class_names)
    return open_mnist_idx(config.path, config.class_names)
