"""Torch datasets over a published version, in either output format.

``ExpandedDataset`` is map-style: it keeps the split's encoded images in memory (PNG bytes,
for Parquet versions; file names for image folders) and decodes on access, so shuffling
and weighted sampling cost nothing extra. ``IterableExpandedDataset`` streams: it reads
one Parquet row group at a time and splits the row groups over DataLoader workers and
distributed ranks, so each row is read exactly once per epoch and memory stays bounded
by one row group per worker.

Both return ``(image, label)``: the image as a float tensor (C, H, W) in [0, 1], or
whatever ``transform`` makes of the PIL image; with ``return_lineage=True`` a third item,
a dict of the row's lineage columns (a real row's missing seed is -1 and params "").
With ``soft_labels=True`` the label is a float tensor with one probability per class:
the row's ``soft_label`` (versions built with ``augment.mix`` or ``synthesis.soft_labels``),
else one-hot. Versions built with ``synthesis.weight`` below 1 give each row a loss
``weight`` (in the lineage dict; ``ExpandedDataset.loss_weights`` has them all): multiply
each row's loss by it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, WeightedRandomSampler, get_worker_info

from pipeline.core.errors import PipelineError
from pipeline.version.catalog import resolve_version
from pipeline.version.layout import ORIGINS
from pipeline.version.manifest import load_manifest, verify

LINEAGE_FIELDS = ("id", "origin", "source_id", "source_sha256", "seed", "sha256", "params")
Verify = Literal["quick", "full", "none"]
_MISSING = {"seed": -1}  # lineage values a real row does not have: seed -1, params ""


class _Version:
    """What both datasets need from a version: its manifest and the split's row tables."""

    def __init__(self, version_dir: str | Path, split: str, origins: Sequence[str], check: Verify):
        self.path = resolve_version(version_dir)
        self.manifest = load_manifest(self.path)
        unknown = set(origins) - set(ORIGINS)
        if unknown:
            raise PipelineError(f"origins: unknown {sorted(unknown)}; use some of {list(ORIGINS)}")
        if split not in self.manifest.splits:
            raise PipelineError(f"{self.path}: no split {split!r} (has {sorted(self.manifest.splits)})")
        if check != "none":
            problems = verify(self.path, full=check == "full")
            if problems:
                raise PipelineError(f"{self.path} does not verify: " + "; ".join(problems[:5]))
        self.parquet = self.manifest.format == "parquet"
        folder = "data" if self.parquet else "lineage"
        self.files = [
            self.path / folder / f"{s.shard}.parquet" for s in self.manifest.shards if s.split == split
        ]
        self.origins = tuple(origins)
        self.class_names: list[str] = self.manifest.class_names
        self.mode: str = self.manifest.image.mode
        self.soft_labels = self.manifest.soft_labels
        self.row_weights = self.manifest.row_weights

    def columns(self, lineage: bool, soft: bool) -> list[str]:
        image = ["image"] if self.parquet else ["file_name"]
        extra = [f for f in LINEAGE_FIELDS if f != "origin"] if lineage else []
        return [
            *image,
            "label",
            "origin",
            *extra,
            *(["soft_label"] if soft and self.soft_labels else []),
            *(["weight"] if self.row_weights else []),
        ]

    def read(self, table: pa.Table) -> pa.Table:
        return table.filter(pc.is_in(table["origin"], value_set=pa.array(self.origins)))

    def decode(self, encoded: Any) -> Image.Image:
        if self.parquet:
            image = Image.open(io.BytesIO(encoded["bytes"]))
        else:
            image = Image.open(self.path / encoded)
        image.load()
        # WebP has no grayscale: an L version's images come back as RGB.
        return image if image.mode == self.mode else image.convert(self.mode)


class _Reader:
    """What both datasets share: the opened version, the transform, lineage on request."""

    def _open(
        self, version_dir, split, origins, transform, return_lineage: bool, soft_labels: bool, check: Verify
    ) -> None:
        self._version = _Version(version_dir, split, origins, check)
        self.transform = transform
        self.return_lineage = return_lineage
        self.soft_labels = soft_labels

    def _columns(self) -> list[str]:
        return self._version.columns(self.return_lineage, self.soft_labels)

    @property
    def class_names(self) -> list[str]:
        return self._version.class_names

    def _item(self, row: dict[str, Any]) -> tuple[Any, ...]:
        version = self._version
        image = version.decode(row["image"] if version.parquet else row["file_name"])
        x = self.transform(image) if self.transform else _to_tensor(image)
        label = row["label"]
        if self.soft_labels:
            if row.get("soft_label") is not None:
                label = torch.tensor(row["soft_label"], dtype=torch.float32)
            else:
                label = torch.nn.functional.one_hot(torch.tensor(label), len(self.class_names)).float()
        if self.return_lineage:  # no None values, so the default collate can batch them
            lineage = {k: _MISSING.get(k, "") if row[k] is None else row[k] for k in LINEAGE_FIELDS}
            if version.row_weights:
                lineage["weight"] = row["weight"]
            return x, label, lineage
        return x, label


def _to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.array(image)  # a writable copy
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


class ExpandedDataset(_Reader, Dataset):
    """Map-style dataset over one split of a version.

    Args:
        version_dir: a version folder (or its ``latest``/tag link).
        split: ``train``, ``test``, ...
        origins: which rows to keep.
        transform: applied to the PIL image (torchvision style); default: float tensor.
        return_lineage: also return the row's lineage columns.
        soft_labels: return the label as one probability per class (see above).
        check: verify the version on open: ``quick`` (sizes, schemas, row counts),
            ``full`` (also every sha256) or ``none``.

    Raises:
        PipelineError: not a version, an unknown split or origin, or a version that
            does not verify.
    """

    def __init__(
        self,
        version_dir: str | Path,
        split: str = "train",
        origins: Sequence[str] = ORIGINS,
        transform: Callable | None = None,
        *,
        return_lineage: bool = False,
        soft_labels: bool = False,
        check: Verify = "quick",
    ):
        self._open(version_dir, split, origins, transform, return_lineage, soft_labels, check)
        columns = self._columns()
        tables = [self._version.read(pq.read_table(f, columns=columns)) for f in self._version.files]
        rows = pa.concat_tables(tables) if tables else pa.table({c: [] for c in columns})
        # One contiguous Arrow array per column: indexing it is cheap, and the encoded
        # images stay in Arrow's compact buffers rather than as Python objects.
        self._columns = {name: rows[name].combine_chunks() for name in rows.column_names}
        self.labels = np.asarray(self._columns["label"].to_numpy(zero_copy_only=False), dtype=np.int64)
        self.origins = np.asarray(self._columns["origin"].to_pylist())
        # Each row's loss weight: the version's weight column, else 1 for every row.
        self.loss_weights = (
            np.asarray(self._columns["weight"].to_numpy(zero_copy_only=False), dtype=np.float32)
            if "weight" in self._columns
            else np.ones(len(self.labels), dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} rows")
        row = {name: column[index].as_py() for name, column in self._columns.items()}
        return self._item(row)

    def sample_weights(
        self, origin_weights: Mapping[str, float] | None = None, *, class_balanced: bool = False
    ) -> torch.Tensor:
        """Per-row weights for a :class:`WeightedRandomSampler`.

        Args:
            origin_weights: the share of draws each origin gets, e.g. ``{"real": 1,
                "augmented": 1, "synthetic": 0.5}`` (normalised; a missing origin gets 0).
                Default: every row equally likely.
            class_balanced: every class gets the same share of draws (within a class,
                origins keep their shares).
        """
        shares = dict(origin_weights) if origin_weights else None
        if shares and any(v < 0 for v in shares.values()):
            raise PipelineError(f"origin_weights must not be negative, got {shares}")
        weights = np.zeros(len(self), dtype=np.float64)
        groups = np.unique(self.labels) if class_balanced else [None]
        for label in groups:
            in_group = np.ones(len(self), bool) if label is None else self.labels == label
            for origin in np.unique(self.origins[in_group]):
                cell = in_group & (self.origins == origin)
                share = 1.0 if shares is None else float(shares.get(str(origin), 0.0))
                # without shares, rows are equally likely within the group
                weights[cell] = share / (cell.sum() if shares is not None else in_group.sum())
            if class_balanced and weights[in_group].sum():
                weights[in_group] /= weights[in_group].sum()  # each class the same total
        if not weights.sum():
            raise PipelineError(f"origin_weights {shares} leave no row to sample")
        return torch.as_tensor(weights / weights.sum())

    def sampler(
        self,
        origin_weights: Mapping[str, float] | None = None,
        *,
        class_balanced: bool = False,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> WeightedRandomSampler:
        """A sampler drawing ``num_samples`` (default: len) rows with replacement by
        :meth:`sample_weights`."""
        weights = self.sample_weights(origin_weights, class_balanced=class_balanced)
        return WeightedRandomSampler(weights, num_samples or len(self), replacement=True, generator=generator)


class IterableExpandedDataset(_Reader, IterableDataset):
    """Streaming dataset over one split: row groups are dealt to (rank, worker) pairs.

    Each row of the split (with the chosen origins) is yielded exactly once per epoch
    across all DataLoader workers and distributed ranks. With ``shuffle``, the order of
    row groups and of rows within each is reseeded by :meth:`set_epoch`.

    Args:
        rank, world_size: default from ``torch.distributed`` when it is initialised.
        Others as for :class:`ExpandedDataset`.
    """

    def __init__(
        self,
        version_dir: str | Path,
        split: str = "train",
        origins: Sequence[str] = ORIGINS,
        transform: Callable | None = None,
        *,
        return_lineage: bool = False,
        soft_labels: bool = False,
        check: Verify = "quick",
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self._open(version_dir, split, origins, transform, return_lineage, soft_labels, check)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        self.world_size = world_size or (torch.distributed.get_world_size() if distributed else 1)
        if not 0 <= self.rank < self.world_size:
            raise PipelineError(f"rank {self.rank} is outside world_size {self.world_size}")
        self._units = [
            (f, g) for f in self._version.files for g in range(pq.ParquetFile(f).metadata.num_row_groups)
        ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self._units)) if self.shuffle else np.arange(len(self._units))
        mine = order[self.rank * workers + worker :: self.world_size * workers]
        columns = self._columns()
        for unit in mine:
            path, group = self._units[unit]
            table = self._version.read(pq.ParquetFile(path).read_row_group(group, columns=columns))
            rows = table.to_pylist()
            if self.shuffle:
                rows = [
                    rows[i]
                    for i in np.random.default_rng([self.seed, self.epoch, unit]).permutation(len(rows))
                ]
            for row in rows:
                yield self._item(row)
