"""CIFAR-10 "python version": the ``cifar-10-batches-py`` folder torchvision downloads.

The batches are pickles. They are read with an unpickler that only rebuilds dicts, lists,
strings, bytes and numpy arrays, so a hostile file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.errors import SourceError
from pipeline.sources.base import Sample, SourceReader, check_class_names, named_classes

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 rebuild bytes
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def open_cifar10(path: Path, class_names: list[str] | None = None) -> SourceReader:
    """Read the five training batches and the test batch (the folder or its parent).

    Raises:
        SourceError: a missing batch, a file that is not a CIFAR batch, or bad shapes.
    """
    folder = Path(path)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    present = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if (folder / name).is_file()]
    if not present:
        raise SourceError(f"{folder}: no CIFAR-10 batches (data_batch_1..5, test_batch) found")
    meta_names = _meta_names(folder / "batches.meta")
    if class_names is None and meta_names is not None:
        names = check_class_names(meta_names, str(folder / "batches.meta"))
    else:
        names = named_classes(10, class_names, str(folder))

    def samples() -> Iterator[Sample]:
        for name in present:
            data, labels = _read_batch(folder / name, len(names))
            split = "test" if name == TEST_BATCH else "train"
            for index in range(len(labels)):
                pixels = data[index].reshape(3, 32, 32).transpose(1, 2, 0)
                yield Sample(f"{name}:{index:05d}", int(labels[index]), split, pixels)

    return SourceReader(class_names=names, mode="RGB", samples=samples)


def _load(file: Path) -> dict:
    try:
        with file.open("rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="latin1").load()
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,  # a corrupt length field asking for more than exists
    ) as exc:
        raise SourceError(f"{file}: not a CIFAR-10 python batch: {exc!r}") from None
    if not isinstance(batch, dict):
        raise SourceError(f"{file}: not a CIFAR-10 python batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _meta_names(file: Path) -> list[str] | None:
    if not file.is_file():
        return None
    names = _load(file).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise SourceError(f"{file}: 'label_names' must list 10 class names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _read_batch(file: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _load(file)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise SourceError(f"{file}: 'data' must be a uint8 array of shape (N, 3072)")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise SourceError(f"{file}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise SourceError(f"{file}: labels must lie in 0..{num_classes - 1}")
    return data, labels
