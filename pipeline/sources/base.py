"""What every source yields: samples with a stable id, a label and decoded pixels."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import SourceError
from pipeline.core.images import Mode, decode_image

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
class Encoded:
    """An encoded image (a file, or bytes) not decoded yet, so that decoding can happen in
    a worker process; ``where`` names it in errors."""

    data: str | bytes  # a file path (a string: a Path per image interns its name for good), or bytes
    where: str

    def decode(self, mode: Mode, draft: tuple[int, int] | None = None) -> np.ndarray:
        """The pixels in ``mode`` (a JPEG perhaps at a reduced scale that covers twice
        ``draft``: see :func:`~pipeline.core.images.decode_image`); raises SourceError naming
        ``where`` when undecodable."""
        source = io.BytesIO(self.data) if isinstance(self.data, bytes) else self.data
        return decode_image(source, mode, self.where, draft)

    def sha256(self) -> str | None:
        """sha256 of the encoded bytes, None when they cannot be read."""
        try:
            if isinstance(self.data, str):
                with open(self.data, "rb") as file:
                    data = file.read()
            else:
                data = self.data
        except OSError:
            return None
        return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Invalid:
    """A sample its source could not make sense of (a row without image bytes, a label out
    of range); ingest refuses it or, with ``source.on_bad_image: skip``, quarantines it."""

    where: str
    reason: str
    digest: str | None = None

    def decode(self, mode: Mode, draft: tuple[int, int] | None = None) -> np.ndarray:
        raise SourceError(f"{self.where}: {self.reason}")

    def sha256(self) -> str | None:
        return self.digest


@dataclass(frozen=True)
class Sample:
    """One source image.

    Attributes:
        source_id: stable across runs and machines (a relative path, a file:row, an index).
        label: index into the source's class names (-1 for an invalid sample).
        split: the split the source assigns, or None when the source has no splits.
        pixels: uint8 array in the source's mode (see :mod:`pipeline.core.images`), or the
            encoded image, decoded into that mode at ingest, or what made it invalid.
    """

    source_id: str
    label: int
    split: str | None
    pixels: np.ndarray | Encoded | Invalid


@dataclass(frozen=True)
class SourceReader:
    """A readable source: its class names, its one image mode, and a sample iterator factory.

    ``samples`` is called once per pass and must yield samples lazily, so that memory does
    not grow with the dataset. ``skipped`` lists what the reader left out while indexing
    (``{source_id, reason}``, e.g. an empty class folder) and ``ignored`` counts files that
    are not images (hidden files, other extensions). ``count`` is how many samples a pass
    yields, when known without reading them (for progress reports).
    """

    class_names: list[str]
    mode: Mode
    samples: Callable[[], Iterator[Sample]]
    count: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples())

    def pixels(self, sample: Sample) -> np.ndarray:
        """A sample's pixels in the source's mode, decoding them if they are still encoded."""
        return sample.pixels if isinstance(sample.pixels, np.ndarray) else sample.pixels.decode(self.mode)


def split_name(text: str) -> str | None:
    """Canonical split for a folder or file-name prefix ('val' -> 'validation'), else None."""
    return SPLIT_ALIASES.get(text.lower())


def check_class_names(names: list[str], where: str) -> list[str]:
    """Reject class names that could not be used as one folder name.

    Raises:
        SourceError: empty, duplicate, not UTF-8, or path-like names (``/``, ``..``,
            control chars).
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
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise SourceError(f"{where}: class name {name!r} is not UTF-8") from None
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
