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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.augment import derive_seed
from pipeline.config import AugmentConfig, MixConfig
from pipeline.errors import PipelineError
from pipeline.ingest import SPLIT_ORDER, Index
from pipeline.mixing import choose_partners

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
    index: Index, augment: AugmentConfig, seed: int, class_names: list[str]
) -> tuple[np.ndarray, dict[int, int]]:
    """Augmented copies per image (zero outside the training split), and per-class shortfall.

    With ``copies_per_image = k`` a class of n images gets round(k * n) copies; with
    ``target_per_class = T`` it gets max(0, T - n); a class named in ``augment.classes``
    may set its own. Either way the copies are spread as evenly as possible (floor or ceil
    per image), the extra ones going to the images that rank first by a hash of (seed, id).
    A class with no training images cannot be filled: its missing count is returned as
    shortfall.

    Raises:
        PipelineError: ``augment.classes`` names a class the source does not have.
    """
    unknown = sorted(set(augment.classes) - set(class_names))
    if unknown:
        raise PipelineError(f"augment.classes: {unknown} are not classes of the source {class_names}")
    ids = index.source_ids
    copies = np.zeros(len(ids), dtype=np.int64)
    shortfall: dict[int, int] = {}
    if not augment.enabled:
        return copies, shortfall
    train = np.asarray(index.splits) == "train"
    for label, name in enumerate(class_names):
        members = list(np.flatnonzero(train & (index.labels == label)))
        n = len(members)
        copies_per_image, target = augment.counts_for(name)
        if target is not None:
            total = max(0, target - n)
        else:
            total = int(math.floor((copies_per_image or 0.0) * n + 0.5))
        if n == 0:
            if total:
                shortfall[label] = total
            continue
        members.sort(key=lambda i: (derive_seed(seed, ids[i], "extra"), ids[i]))
        base, extra = divmod(total, n)
        copies[members] = base
        copies[members[:extra]] += 1
    return copies, shortfall


PLAN_SCHEMA = pa.schema(
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
        ("mix", pa.string()),  # augment.mix: mixup / cutmix, or null
        ("partner_row", pa.int64()),
        ("partner_id", pa.string()),
        ("partner_label", pa.int64()),
    ]
)
_ROW_SCHEMA = PLAN_SCHEMA.remove(0).remove(0)  # without split and shard
_MIX_COLUMNS = ("mix", "partner_row", "partner_id", "partner_label")
_ORDER_CHUNK = 65_536  # rows whose source ids are Python strings at once, while ordering


def build_plan(
    index: Index,
    copies: np.ndarray,
    seed: int,
    rows_per_shard: int,
    work_dir: Path,
    synthetic: pa.Table | None = None,
    mix: MixConfig | None = None,
) -> list[ShardSpec]:
    """Write the plan file and return the shard specs, splits in train/validation/test order.

    Only training images have copies, and synthetic rows join the training split; other
    splits are copied through unchanged. Rows are ordered by a hash of (seed, source id,
    replica), ties broken by source id and replica, so the order does not depend on the
    source's order. Columns are built with numpy and Arrow, one shard per row group, so
    the plan of a large dataset stays small in memory. With ``mix``, the plan also says
    which augmented copies are mixed, how, and with which training image.
    """
    splits = np.asarray(index.splits)
    shards: list[ShardSpec] = []
    with pq.ParquetWriter(work_dir / PLAN_FILE, PLAN_SCHEMA) as writer:
        for split in [s for s in SPLIT_ORDER if s in set(index.splits)]:
            members = np.flatnonzero(splits == split)
            rows = _split_rows(index, members, copies if split == "train" else None)
            if split == "train" and mix is not None:
                rows = _with_partners(rows, index, mix, seed, pool=members)
            if split == "train" and synthetic is not None and synthetic.num_rows:
                rows = pa.concat_tables([rows, _synthetic_rows(synthetic)])
            order = _write_order(rows, seed)
            count = max(1, math.ceil(rows.num_rows / rows_per_shard))
            for shard in range(count):
                part = rows.take(order[shard * rows_per_shard : (shard + 1) * rows_per_shard])
                where = [pa.array([split] * part.num_rows), pa.array([shard] * part.num_rows, pa.int64())]
                writer.write_table(
                    pa.Table.from_arrays([*where, *part.columns], schema=PLAN_SCHEMA),
                    row_group_size=max(1, part.num_rows),
                )
                shards.append(ShardSpec(split, shard, count, part.num_rows))
    return shards


def _split_rows(index: Index, members: np.ndarray, copies: np.ndarray | None) -> pa.Table:
    """One row per source image of the split and per augmented copy (replica 1..k)."""
    repeats = 1 + (copies[members] if copies is not None else np.zeros(len(members), np.int64))
    pixel_row = np.repeat(members, repeats)
    starts = np.repeat(np.cumsum(repeats) - repeats, repeats)
    rows = pa.array(pixel_row)
    return pa.table(
        {
            "store": pa.array(np.full(len(pixel_row), STORE_SOURCE, np.int8)),
            "pixel_row": rows,
            "source_id": pa.array(index.source_ids, pa.string()).take(rows),
            "label": pa.array(index.labels[pixel_row]),
            "source_sha256": pa.array(index.sha256, pa.string()).take(rows),
            "replica": pa.array(np.arange(len(pixel_row)) - starts),
            "seed": pa.nulls(len(pixel_row), pa.int64()),
            "params": pa.nulls(len(pixel_row), pa.string()),
            **_no_partners(len(pixel_row)),
        },
        schema=_ROW_SCHEMA,
    )


def _no_partners(n: int) -> dict[str, pa.Array]:
    return {name: pa.nulls(n, _ROW_SCHEMA.field(name).type) for name in _MIX_COLUMNS}


def _with_partners(rows: pa.Table, index: Index, mix: MixConfig, seed: int, pool: np.ndarray) -> pa.Table:
    """The rows with their mixing columns filled (see :func:`pipeline.mixing.choose_partners`)."""
    methods, partners = choose_partners(
        mix,
        seed,
        rows["source_id"].to_pylist(),
        rows["replica"].to_numpy(),
        rows["pixel_row"].to_numpy(),
        pool,
    )
    mixed = partners >= 0
    safe = np.where(mixed, partners, 0)
    columns = {
        "mix": pa.array(methods, pa.string()),
        "partner_row": pa.array(partners, mask=~mixed),
        "partner_id": pa.array(np.asarray(index.source_ids, dtype=object)[safe], pa.string(), mask=~mixed),
        "partner_label": pa.array(index.labels[safe].astype(np.int64), mask=~mixed),
    }
    for name, column in columns.items():
        rows = rows.set_column(rows.schema.get_field_index(name), name, column)
    return rows


def _synthetic_rows(synthetic: pa.Table) -> pa.Table:
    """Staged synthetic rows in plan columns (the checkpoint's sha256 as source hash)."""
    n = synthetic.num_rows
    return pa.table(
        {
            "store": pa.array(np.full(n, STORE_SYNTHETIC, np.int8)),
            "pixel_row": pa.array(np.arange(n)),
            "source_id": synthetic["source_id"],
            "label": synthetic["label"].cast(pa.int64()),
            "source_sha256": synthetic["checkpoint_sha256"],
            "replica": pa.array(np.zeros(n, np.int64)),
            "seed": synthetic["seed"].cast(pa.int64()),
            "params": synthetic["params"],
            **_no_partners(n),
        },
        schema=_ROW_SCHEMA,
    )


def _write_order(rows: pa.Table, seed: int) -> np.ndarray:
    """Row positions in write order; shards take their slice, so the table is not copied
    whole, and source ids become Python strings a chunk at a time."""
    replicas = rows["replica"].to_numpy()
    keys = np.empty(rows.num_rows, dtype=np.int64)
    for start in range(0, rows.num_rows, _ORDER_CHUNK):
        ids = rows["source_id"].slice(start, _ORDER_CHUNK).to_pylist()
        keys[start : start + len(ids)] = [
            derive_seed(seed, i, f"order-{r}")
            for i, r in zip(ids, replicas[start : start + len(ids)], strict=True)
        ]
    id_rank = pc.rank(rows["source_id"], sort_keys="ascending", tiebreaker="dense").to_numpy()
    return np.lexsort((replicas, id_rank, keys))


def read_shard_plan(work_dir: Path, shard: ShardSpec) -> pa.Table:
    """The plan rows of one shard, in write order."""
    return pq.read_table(
        work_dir / PLAN_FILE, filters=[("split", "=", shard.split), ("shard", "=", shard.index)]
    )
