"""Where the images come from (``source``) and how a test split is carved (``split``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.common import MAX_RESIZE, Strict


class SourceConfig(Strict):
    """Where the images come from."""

    kind: Literal["digits", "imagefolder", "parquet", "cifar10", "mnist-idx"] = Field(
        default="digits",
        description="the input format: digits (the bundled UCI 8x8 handwritten digits), imagefolder "
        "(path/<class>/<image>, optionally under split folders), parquet (HF-style image and "
        "label columns), cifar10 (the cifar-10-batches-py folder), mnist-idx (IDX files)",
    )
    path: Path | None = Field(
        default=None,
        description="the folder, file or archive (.zip, .tar.gz, ...) to read; required for every "
        "kind but digits, which takes none",
    )
    class_names: list[str] | None = Field(
        default=None, description="Names for integer labels of array sources (MNIST IDX, CIFAR)."
    )
    license: str | None = Field(
        default=None, description="The source's licence (SPDX id or URL), for the dataset card and Croissant."
    )
    citation: str | None = Field(default=None, description="How to cite the source (e.g. BibTeX).")
    on_bad_image: Literal["error", "skip"] = Field(
        default="error",
        description="an unreadable or undecodable image, one of another size, a Parquet row without "
        "image or with an invalid label, an empty class folder: stop naming it, or skip it "
        "(listed in the manifest with the reason)",
    )
    duplicates: Literal["keep", "drop"] = Field(
        default="keep",
        description="images with identical pixels: keep them all (reported in the manifest), or keep "
        "the first by source id",
    )
    follow_symlinks: bool = Field(
        default=False,
        description="read image files that lie outside source.path: image folders follow symbolic "
        "links out of it; Parquet reads path-column files given by absolute or '..' paths or links",
    )
    resize: tuple[int, int] | None = Field(
        default=None,
        description="[height, width]: every image is resized to this size as it is ingested "
        "(source.resize_mode); none: every image must have the first one's size",
    )
    resize_mode: Literal["crop", "pad", "stretch"] = Field(
        default="crop",
        description="crop: scale to cover the size and cut the centre; pad: scale to fit inside it "
        "and centre on black; stretch: scale each side (the aspect ratio changes)",
    )

    image_column: str | None = Field(
        default=None, description="Parquet: the image column (default: image, else img)"
    )
    label_column: str | None = Field(
        default=None, description="Parquet: the label column (default: label, else labels)"
    )

    @property
    def resizing(self) -> tuple[tuple[int, int], str] | None:
        """(``resize``, ``resize_mode``), or None when images keep their size."""
        return (self.resize, self.resize_mode) if self.resize else None

    @field_validator("resize")
    @classmethod
    def _sides_in_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= MAX_RESIZE for side in value):
            raise ValueError(f"source.resize sides must be 1 to {MAX_RESIZE} pixels, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _path_matches_kind(self) -> SourceConfig:
        if self.kind != "parquet" and (self.image_column or self.label_column):
            key = "image_column" if self.image_column else "label_column"
            raise ValueError(f"source.{key} is used only with source kind 'parquet'")
        if self.kind == "digits":
            if self.path is not None:
                raise ValueError("source.path is not used with kind 'digits'; remove it")
            return self
        if self.path is None:
            raise ValueError(f"source.path is required for source kind '{self.kind}'")
        if not self.path.exists():
            raise ValueError(f"source.path does not exist: {self.path}")
        return self


class SplitConfig(Strict):
    """How a test split is carved from the training images when the source has no test split
    (stratified, seeded)."""

    test_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of the images moved to the test split (stratified by class, seeded by seed)",
    )
