"""The embedded default: scikit-learn's bundled 8x8 digits (1,797 images, no download)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.sources.base import Sample, SourceReader, named_classes


def open_digits(class_names: list[str] | None = None) -> SourceReader:
    """Read ``sklearn.datasets.load_digits``; pixel values 0..16 are scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(int)
    names = named_classes(int(labels.max()) + 1, class_names, "digits")

    def samples() -> Iterator[Sample]:
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            yield Sample(f"digits/{index:04d}", int(label), None, pixels)

    return SourceReader(class_names=names, mode="L", samples=samples, count=len(labels))
