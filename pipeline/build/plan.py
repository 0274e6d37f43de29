"""The build plan: which rows each split gets, in which order, in which shard.

Every decision here is a pure function of the source index, the config and the seed:
how many augmented copies each training image gets, the row order (a seeded hash, so
classes are mixed in every shard), and the shard boundaries. Workers read their shard's
rows from the plan file and need nothing else but the staged pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from pipeline.augment.mixing import choose_partners
from pipeline.config import MixConfig
from pipeline.core.seeds import derive_seed
from pipeline.ingest.splits import sort_by_key
from pipeline.ingest.store import Index, hex_strings

# One Arrow IPC file per shard, all its worker reads. (A single Parquet plan file cost the
# writing process about 11 MB more at 60k sources, and workers filtered it for their rows.)
PLAN_DIR = "plan"
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
_ORDER_CHUNK = 8192  # rows whose source ids are Python strings at once
# A split's rows are sorted a range of order keys at a time: ranges of about _RANGE_ROWS
# rows, but at most _MAX_RANGES of them, since each range scans every key (a range's
# positions then cost at most 1/8 byte per row of the split, against a key's 4 bytes).
_RANGE_ROWS = 1 << 16
_MAX_RANGES = 64


def build_plan(
    index: Index,
    copies: np.ndarray,
    seed: int,
    rows_per_shard: int,
    work_dir: Path,
    synthetic: pa.Table | None = None,
    mix: MixConfig | None = None,
) -> list[ShardSpec]:
    """Write the plan (a file per shard) and return the shard specs, splits in
    train/validation/test order.

    Only training images have copies, and synthetic rows join the training split; other
    splits are copied through unchanged. Rows are ordered by a hash of (seed, source id,
    replica), ties broken by source id and replica, so the order does not depend on the
    source's order. With ``mix``, the plan also says which augmented copies are mixed, how,
    and with which training image.

    Memory: a row (copy) is its 32-bit order key until its shard is written; the rows are
    sorted a range of keys at a time, and each shard's columns are taken from the index and
    the synthetic table when it is written.
    """
    images = _Images(index, synthetic)
    shards: list[ShardSpec] = []
    (work_dir / PLAN_DIR).mkdir(exist_ok=True)
    for split in index.present():
        members = index.rows_in(split)
        if split == "train":
            rows = _SplitRows(members, copies[members], images.source_count, images.synthetic_count)
        else:
            rows = _SplitRows(members, np.zeros(len(members), np.int64))
        count = max(1, math.ceil(rows.count / rows_per_shard))
        order = _write_order(rows, images.ids, seed)
        for shard, positions in enumerate(_shard_positions(order, count, rows_per_shard)):
            refs, replicas = rows.at(positions)
            partners = _partners(refs, replicas, images.ids, mix, seed, members) if split == "train" else None
            spec = ShardSpec(split, shard, count, len(refs))
            _write_shard_plan(work_dir, spec, _plan_table(split, shard, refs, replicas, partners, images))
            shards.append(spec)
    return shards


class _Images:
    """Every image a plan row can refer to (``ref``): the index's rows (ref = pixel row),
    then the staged synthetic rows. Their columns are taken a shard at a time."""

    def __init__(self, index: Index, synthetic: pa.Table | None):
        self.index = index
        self.source_count = len(index.labels)
        if synthetic is None:
            synthetic = _SYNTHETIC_SCHEMA.empty_table()
        # (cast: a table staged without rows has null-typed columns)
        self.synthetic = synthetic.select(_SYNTHETIC_SCHEMA.names).cast(_SYNTHETIC_SCHEMA)
        self.synthetic_count = synthetic.num_rows
        self.ids = pa.chunked_array([index.source_ids, *self.synthetic["source_id"].chunks], pa.string())

    def at(self, refs: np.ndarray) -> dict[str, pa.Array]:
        """The plan's image columns of the images ``refs`` (the checkpoint's sha256 as a
        synthetic row's source hash)."""
        generated = refs >= self.source_count
        source_rows = np.where(generated, 0, refs)
        made_rows = np.where(generated, refs - self.source_count, 0)
        source = pa.array(source_rows.astype(np.int64), mask=generated)  # null: a synthetic row
        made = self.synthetic.take(pa.array(made_rows.astype(np.int64), mask=~generated))
        labels = self.index.labels[source_rows]
        if self.synthetic_count:
            labels = np.where(generated, made["label"].fill_null(0).to_numpy(), labels)
        return {
            "store": pa.array(np.where(generated, STORE_SYNTHETIC, STORE_SOURCE).astype(np.int8)),
            "pixel_row": pa.array(np.where(generated, made_rows, source_rows).astype(np.int64)),
            "source_id": pc.coalesce(self.index.source_ids.take(source), made["source_id"]),
            "label": pa.array(labels.astype(np.int64)),
            "source_sha256": pc.coalesce(
                hex_strings(self.index.sha256.take(source)), made["checkpoint_sha256"]
            ),
            "seed": made["seed"],
            "params": made["params"],
        }


_SYNTHETIC_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("label", pa.int64()),
        ("checkpoint_sha256", pa.string()),
        ("seed", pa.int64()),
        ("params", pa.string()),
    ]
)


class _SplitRows:
    """The rows of one split, never listed whole: row positions 0.. are each image of the
    split (replica 0) followed by its augmented copies (replicas 1..k), then the synthetic
    images (refs ``synthetic_start``.., replica 0)."""

    def __init__(self, members: np.ndarray, copies: np.ndarray, synthetic_start: int = 0, synthetic: int = 0):
        self.members = members
        self.starts = np.cumsum(copies + 1)  # each image's end; made its first row in place
        self.real = int(self.starts[-1]) if len(copies) else 0
        self.starts -= copies + 1
        self.synthetic_start = synthetic_start
        self.count = self.real + synthetic

    def at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ref (index row, or synthetic ref) and replica of the rows at ``positions``."""
        real = positions < self.real
        image = np.searchsorted(self.starts, positions[real], side="right") - 1
        refs = self.synthetic_start + positions - self.real
        replicas = np.zeros(len(positions), np.int64)
        refs[real] = self.members[image]
        replicas[real] = positions[real] - self.starts[image]
        return refs, replicas


def _write_order(rows: _SplitRows, ids: pa.ChunkedArray, seed: int) -> Iterator[np.ndarray]:
    """Row positions in write order, a range of order keys at a time (ranges of about
    :data:`_RANGE_ROWS` rows, or 1/:data:`_MAX_RANGES` of a larger split), so that only the
    keys are held for every row."""
    keys = np.empty(rows.count, np.uint32)
    for start in range(0, rows.count, _ORDER_CHUNK):
        refs, replicas = rows.at(np.arange(start, min(start + _ORDER_CHUNK, rows.count)))
        row_ids = ids.take(refs).to_pylist()
        keys[start : start + len(refs)] = [
            derive_seed(seed, i, f"order-{r}") for i, r in zip(row_ids, replicas.tolist(), strict=True)
        ]
    ranges = min(_MAX_RANGES, max(1, math.ceil(rows.count / _RANGE_ROWS)))
    bounds = (np.arange(ranges + 1, dtype=np.uint64) << np.uint64(32)) // np.uint64(ranges)
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        positions = _keys_between(keys, low, high)
        yield _sorted_by_key(positions, keys[positions], rows, ids)


def _keys_between(keys: np.ndarray, low: np.uint64, high: np.uint64) -> np.ndarray:
    """Positions of the keys in [low, high), found a slice at a time."""
    found = [np.empty(0, np.int64)]
    for start in range(0, len(keys), _RANGE_ROWS):
        part = keys[start : start + _RANGE_ROWS]
        found.append(start + np.flatnonzero((part >= low) & (part < high)))
    return np.concatenate(found)


def _sorted_by_key(
    positions: np.ndarray, keys: np.ndarray, rows: _SplitRows, ids: pa.ChunkedArray
) -> np.ndarray:
    """``positions`` by key, equal keys by id, then replica."""

    def ids_and_replicas(at: np.ndarray):
        refs, replicas = rows.at(positions[at])
        return zip(ids.take(refs).to_pylist(), replicas.tolist(), strict=True)

    return positions[sort_by_key(keys, ids_and_replicas)]


def _shard_positions(ordered: Iterator[np.ndarray], count: int, rows_per_shard: int) -> Iterator[np.ndarray]:
    """``count`` shards of ``rows_per_shard`` positions (the last one the rest), cut from
    the ordered ranges."""
    pending = np.empty(0, np.int64)
    for _ in range(count):
        while len(pending) < rows_per_shard and (chunk := next(ordered, None)) is not None:
            pending = np.concatenate([pending, chunk])
        yield pending[:rows_per_shard]
        pending = pending[rows_per_shard:]


def _partners(
    refs: np.ndarray,
    replicas: np.ndarray,
    ids: pa.ChunkedArray,
    mix: MixConfig | None,
    seed: int,
    pool: np.ndarray,
) -> dict[str, pa.Array] | None:
    """The mixing columns of training rows (see :func:`pipeline.augment.mixing.choose_partners`);
    partners are index rows, null where a row is not mixed."""
    if mix is None:
        return None
    methods, partners = choose_partners(mix, seed, ids.take(refs).to_pylist(), replicas, refs, pool)
    return {"mix": pa.array(methods, pa.string()), "partner_row": pa.array(partners, mask=partners < 0)}


def _plan_table(
    split: str,
    shard: int,
    refs: np.ndarray,
    replicas: np.ndarray,
    partners: dict[str, pa.Array] | None,
    images: _Images,
) -> pa.Table:
    """One shard's plan rows, in :data:`PLAN_SCHEMA`."""
    n = len(refs)
    columns = {
        "split": pa.array([split] * n),
        "shard": pa.array(np.full(n, shard, np.int64)),
        **images.at(refs),
        "replica": pa.array(replicas),
    }
    if partners is not None:
        columns.update(partners)
        columns.update(
            partner_id=images.index.source_ids.take(partners["partner_row"]),
            partner_label=pa.array(images.index.labels).take(partners["partner_row"]),
        )
    for name in PLAN_SCHEMA.names:
        columns.setdefault(name, pa.nulls(n, PLAN_SCHEMA.field(name).type))
    return pa.table(columns, schema=PLAN_SCHEMA)


def _write_shard_plan(work_dir: Path, shard: ShardSpec, table: pa.Table) -> None:
    with pa.OSFile(str(_plan_path(work_dir, shard)), "wb") as sink, ipc.new_file(sink, PLAN_SCHEMA) as writer:
        writer.write_table(table)


def read_shard_plan(work_dir: Path, shard: ShardSpec) -> pa.Table:
    """The plan rows of one shard, in write order."""
    with pa.OSFile(str(_plan_path(work_dir, shard))) as source:
        return ipc.open_file(source).read_all()


def _plan_path(work_dir: Path, shard: ShardSpec) -> Path:
    return work_dir / PLAN_DIR / f"{shard.name}.arrow"
