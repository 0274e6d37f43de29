"""What every source yields: samples with a stable id, a label and decoded pixels."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.errors import SourceError
from pipeline.images import Mode

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
}


@dataclass(frozen=True)
class Sample:
    """One source image.

    Attributes:
        source_id: stable across runs and machines (a relative path, a file:row, an index).
        label: index into the source's class names.
        split: the split the source assigns, or None when the source has no splits.
        pixels: uint8 array in the source's mode (see :mod:`pipeline.images`).
    """

    source_id: str
    label: int
    split: str | None
    pixels: np.ndarray


@dataclass(frozen=True)
class SourceReader:
    """A readable source: its class names, its one image mode, and a sample iterator factory.

    ``samples`` is called once per pass and must yield samples lazily, so that memory does
    not grow with the dataset.
    """

    class_names: list[str]
    mode: Mode
    samples: Callable[[], Iterator[Sample]]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples())


def split_name(text: str) -> str | None:
    """Canonical split for a folder or file-name prefix ('val' -> 'validation'), else None."""
    return SPLIT_ALIASES.get(text.lower())


def check_class_names(names: list[str], where: str) -> list[str]:
    """Reject class names that could not be used as one folder name.

    Raises:
        SourceError: empty, duplicate, or path-like names (``/``, ``..``, control chars).
    """
    if not names:
        raise SourceError(f"{where}: no classes found")
    seen: set[str] = set()
    for name in names:
        bad = (
            not name or name in (".", "..") or "/" in name or "\\" in name or re.search(r"[\x00-\x1f]", name)
        )
        if bad:
            raise SourceError(f"{where}: class name {name!r} cannot be used as a folder name")
        if name in seen:
            raise SourceError(f"{where}: duplicate class name {name!r}")
        seen.add(name)
    return names


def named_classes(count: int, override: list[str] | None, where: str) -> list[str]:
    """Class names for integer labels 0..count-1: the override when given, else digits."""
    if override is None:
        return [str(i) for i in range(count)]
    if len(override) != count:
        raise SourceError(
            f"{where}: source.class_names has {len(override)} names but the data has {count} classes"
        )
    return check_class_names(list(override), where)
