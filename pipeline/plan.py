"""The build plan: which rows each split gets, in which order, in which shard.

Every decision here is a pure function of the source index, the config and the seed:
how many augmented copies each training image gets, the row order (a seeded hash, so
classes are mixed in every shard), and the shard boundaries. Workers read their shard's
rows from the plan file and need nothing else but the staged pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.augment import derive_seed
from pipeline.config import AugmentConfig
from pipeline.ingest import SPLIT_ORDER, Index

PLAN_FILE = "plan.parquet"
STORE_SOURCE, STORE_SYNTHETIC = 0, 1


@dataclass(frozen=True)
class ShardSpec:
    """One unit of work: shard ``index`` of ``count`` in ``split``."""

    split: str
    index: int
    count: int
    rows: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"


def allocate_copies(
    index: Index, augment: AugmentConfig, seed: int, num_classes: int
) -> tuple[np.ndarray, dict[int, int]]:
    """Augmented copies per image (zero outside the training split), and per-class shortfall.

    With ``copies_per_image = k`` a class of n images gets round(k * n) copies; with
    ``target_per_class = T`` it gets max(0, T - n). Either way the copies are spread as
    evenly as possible (floor or ceil per image), the extra ones going to the images that
    rank first by a hash of (seed, id). A class with no training images cannot be filled:
    its missing count is returned as shortfall.
    """
    ids = index.source_ids
    copies = np.zeros(len(ids), dtype=np.int64)
    shortfall: dict[int, int] = {}
    if not augment.enabled:
        return copies, shortfall
    train = np.asarray(index.splits) == "train"
    for label in range(num_classes):
        members = list(np.flatnonzero(train & (index.labels == label)))
        n = len(members)
        if augment.target_per_class is not None:
            total = max(0, augment.target_per_class - n)
        else:
            total = int(math.floor(augment.copies_per_image * n + 0.5))
        if n == 0:
            if total:
                shortfall[label] = total
            continue
        members.sort(key=lambda i: (derive_seed(seed, ids[i], "extra"), ids[i]))
        base, extra = divmod(total, n)
        copies[members] = base
        copies[members[:extra]] += 1
    return copies, shortfall


def build_plan(
    index: Index,
    copies: np.ndarray,
    seed: int,
    rows_per_shard: int,
    work_dir: Path,
    synthetic: dict[str, list] | None = None,
) -> list[ShardSpec]:
    """Write the plan file and return the shard specs, splits in train/validation/test order.

    Only training images have copies, and synthetic rows join the training split; other
    splits are copied through unchanged.
    """
    names = (
        "split",
        "shard",
        "store",
        "pixel_row",
        "source_id",
        "label",
        "source_sha256",
        "replica",
        "seed",
        "params",
    )
    columns: dict[str, list] = {k: [] for k in names}
    shards: list[ShardSpec] = []
    for split in [s for s in SPLIT_ORDER if s in set(index.splits)]:
        rows = [
            (index.source_ids[i], replica, STORE_SOURCE, i, int(index.labels[i]), index.sha256[i], None, None)
            for i, s in enumerate(index.splits)
            if s == split
            for replica in range(1 + (int(copies[i]) if split == "train" else 0))
        ]
        if split == "train" and synthetic:
            rows += [
                (
                    synthetic["source_id"][k],
                    0,
                    STORE_SYNTHETIC,
                    k,
                    synthetic["label"][k],
                    synthetic["checkpoint_sha256"][k],
                    synthetic["seed"][k],
                    synthetic["params"][k],
                )
                for k in range(len(synthetic["label"]))
            ]
        rows.sort(key=lambda r: (derive_seed(seed, r[0], f"order-{r[1]}"), r[0], r[1]))
        count = max(1, math.ceil(len(rows) / rows_per_shard))
        for position, (source_id, replica, store, pixel_row, label, sha, row_seed, params) in enumerate(rows):
            values = (
                split,
                position // rows_per_shard,
                store,
                pixel_row,
                source_id,
                label,
                sha,
                replica,
                row_seed,
                params,
            )
            for name, value in zip(names, values, strict=True):
                columns[name].append(value)
        for shard in range(count):
            size = min(rows_per_shard, len(rows) - shard * rows_per_shard)
            shards.append(ShardSpec(split, shard, count, size))
    schema = pa.schema(
        [
            ("split", pa.string()),
            ("shard", pa.int64()),
            ("store", pa.int8()),
            ("pixel_row", pa.int64()),
            ("source_id", pa.string()),
            ("label", pa.int64()),
            ("source_sha256", pa.string()),
            ("replica", pa.int64()),
            ("seed", pa.int64()),
            ("params", pa.string()),
        ]
    )
    pq.write_table(pa.table(columns, schema=schema), work_dir / PLAN_FILE)
    return shards


def read_shard_plan(work_dir: Path, shard: ShardSpec) -> pa.Table:
    """The plan rows of one shard, in write order."""
    return pq.read_table(
        work_dir / PLAN_FILE, filters=[("split", "=", shard.split), ("shard", "=", shard.index)]
    )
