"""The embedded default: the 8x8 handwritten digits of the UCI ML "Optical Recognition of
Handwritten Digits" test set (1,797 images, 10 classes; E. Alpaydin and C. Kaynak, 1998,
CC BY 4.0), the copy scikit-learn bundles as ``load_digits``, shipped here in
``data/digits.npz`` (45 KB) so that the demo needs neither a download nor scikit-learn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.sources.base import Sample, SourceReader, named_classes

DIGITS_FILE = Path(__file__).with_name("data") / "digits.npz"


def open_digits(class_names: list[str] | None = None) -> SourceReader:
    """Read the bundled digits; pixel values 0..16 are scaled to 0..255."""
    with np.load(DIGITS_FILE) as data:
        raw, labels = data["images"], data["labels"].astype(int)
    images = np.rint(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    names = named_classes(int(labels.max()) + 1, class_names, "digits")

    def samples() -> Iterator[Sample]:
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            yield Sample(f"digits/{index:04d}", int(label), None, pixels)

    return SourceReader(class_names=names, mode="L", samples=samples, count=len(labels))
