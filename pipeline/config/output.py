"""Where and how a version is written (``output``) and how the shard tasks run (``runner``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import fsspec
from pydantic import Field, field_validator, model_validator

from pipeline.config.common import AUTO_SHARD_ROWS, AUTO_SHARDS, Strict, parse_size

JPEG_QUALITY = 95  # output.quality's default for JPEG, which has no lossless mode


class OutputConfig(Strict):
    """Where and how the version is written."""

    root: Path = Field(
        default=Path("output"), description="folder the versions are published under (<root>/<name>/...)"
    )
    format: Literal["parquet", "imagefolder"] = Field(
        default="parquet",
        description="parquet: Hugging Face-layout Parquet shards under data/; imagefolder: "
        "<split>/<class>/<origin>-<id> image files with a lineage table per shard",
    )
    shard_size: int | str = Field(
        default="auto",
        description="Rows per shard (int), a byte size such as '64MB', or 'auto': "
        f"{AUTO_SHARDS} shards' worth of rows, within {AUTO_SHARD_ROWS[0]}..{AUTO_SHARD_ROWS[1]}",
    )
    image_format: Literal["png", "webp", "jpeg"] = Field(
        default="png",
        description="encoding of every image: PNG (lossless), WebP (lossless, or lossy with a quality) "
        "or JPEG (lossy); a lossy version's id includes the encoder's library version",
    )
    quality: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="lossy quality of WebP and JPEG images (1-100, higher: larger and closer); "
        f"none: WebP lossless, JPEG {JPEG_QUALITY}; PNG takes none",
    )
    png_compress_level: int = Field(
        default=6,
        ge=0,
        le=9,
        description="zlib level of PNG images (0: fastest, largest; 9: smallest, slowest)",
    )
    lock_timeout: float = Field(
        default=0.0, ge=0.0, description="seconds to wait while another run holds this dataset's lock"
    )
    remote: str | None = Field(
        default=None,
        description="fsspec URL (s3://bucket/path, gs://, az://, ...) each published version is also "
        "uploaded to, under <remote>/<name>/<version id>/; the backend's package must be installed",
    )

    @model_validator(mode="after")
    def _quality_is_lossy(self) -> OutputConfig:
        if self.quality is not None and self.image_format == "png":
            raise ValueError(
                f"output.quality {self.quality} applies to lossy formats (webp, jpeg); "
                "PNG is lossless: drop quality or choose output.image_format webp or jpeg"
            )
        return self

    def lossy(self) -> bool:
        """Whether the images are stored with loss (JPEG, or WebP at a quality)."""
        return self.image_format == "jpeg" or (self.image_format == "webp" and self.quality is not None)

    def encoding(self) -> dict[str, Any]:
        """The keyword arguments of ``pipeline.core.images.encode_image`` for these settings
        (the format, the PNG level, and the quality: JPEG's default filled in)."""
        quality = JPEG_QUALITY if self.image_format == "jpeg" and self.quality is None else self.quality
        return {
            "image_format": self.image_format,
            "compress_level": self.png_compress_level,
            "quality": quality,
        }

    @field_validator("remote")
    @classmethod
    def _remote_known(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" not in value:
            raise ValueError(f"{value!r} is not a URL (protocol://path); output.root is the local folder")
        try:
            fsspec.get_filesystem_class(value.split("://", 1)[0])
        except (ImportError, ValueError) as exc:
            raise ValueError(f"{value}: {exc}") from None
        return value

    @field_validator("shard_size")
    @classmethod
    def _shard_size_valid(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"shard_size must be at least 1 row, got {value}")
            return value
        if value != "auto":
            parse_size(value)
        return value

    def shard_limit(self, total_rows: int) -> tuple[Literal["rows", "bytes"], int]:
        """The shard size as ('rows', n) or ('bytes', n), for a version of ``total_rows`` rows.

        'auto' cuts enough shards for the shard tasks to balance across workers, without
        making shards too small to be worth a file; it depends on the data only, never on
        the worker count, so the bytes do not either.
        """
        if isinstance(self.shard_size, int):
            return "rows", self.shard_size
        if self.shard_size == "auto":
            low, high = AUTO_SHARD_ROWS
            return "rows", min(high, max(low, math.ceil(total_rows / AUTO_SHARDS)))
        return "bytes", parse_size(self.shard_size)


class RunnerConfig(Strict):
    """How the shard tasks run; never changes the content of a version."""

    kind: Literal["local", "dask"] = Field(
        default="local", description="local: a thread pool in this process; dask: a Dask cluster"
    )
    workers: int | None = Field(
        default=None, ge=1, description="shards written at once (local), or local Dask workers; default: CPUs"
    )
    address: str | None = Field(
        default=None, description="scheduler of an existing Dask cluster (tcp://host:8786); none: start one"
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> RunnerConfig:
        if self.address is not None and self.kind != "dask":
            raise ValueError("runner.address is only used with runner.kind 'dask'")
        return self

    def worker_count(self) -> int:
        """``workers``, else this machine's CPU count."""
        return self.workers or os.cpu_count() or 1
