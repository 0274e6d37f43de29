"""The build plan: which rows each split gets, in which order, in which shard.

Every decision here is a pure function of the source index, the config and the seed:
how many augmented copies each training image gets, the row order (a seeded hash, so
classes are mixed in every shard), and the shard boundaries. Workers read their shard's
rows from the plan file and need nothing else but the staged pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from pipeline.augment import derive_seed
from pipeline.config import AugmentConfig, MixConfig
from pipeline.errors import PipelineError
from pipeline.ingest import SPLIT_ORDER, Index, seeded_ranks
from pipeline.mixing import choose_partners

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
    copies = np.zeros(len(index.labels), dtype=np.int64)
    shortfall: dict[int, int] = {}
    if not augment.enabled:
        return copies, shortfall
    train = np.asarray(index.splits, dtype=object) == "train"
    ranks = seeded_ranks(index.source_ids, seed, "extra")
    for label, name in enumerate(class_names):
        members = np.flatnonzero(train & (index.labels == label))
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
        members = members[np.argsort(ranks[members])]
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
_ORDER_CHUNK = 8192  # rows whose source ids are Python strings at once


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

    Memory: each row (copy) is two integers referring to an image of the index or of the
    synthetic table, whose strings are not copied; shards are written one at a time.
    """
    splits = np.asarray(index.splits, dtype=object)  # shared strings: a pointer per image
    images = _Images(index, synthetic)
    shards: list[ShardSpec] = []
    (work_dir / PLAN_DIR).mkdir(exist_ok=True)
    for split in [s for s in SPLIT_ORDER if s in set(index.splits)]:
        members = np.flatnonzero(splits == split)
        rows = _split_rows(members, copies[members] if split == "train" else np.zeros(len(members), np.int64))
        if split == "train" and mix is not None:
            rows = _with_partners(rows, images.ids, mix, seed, pool=members)
        if split == "train" and images.synthetic_count:
            rows = pa.concat_tables([rows, images.synthetic_refs()], promote_options="default")
        order = _write_order(rows, images.ids, seed)
        count = max(1, math.ceil(rows.num_rows / rows_per_shard))
        for shard in range(count):
            part = rows.take(order[shard * rows_per_shard : (shard + 1) * rows_per_shard])
            spec = ShardSpec(split, shard, count, part.num_rows)
            _write_shard_plan(work_dir, spec, _plan_table(split, shard, part, images))
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

    def synthetic_refs(self) -> pa.Table:
        refs = np.arange(self.source_count, self.source_count + self.synthetic_count, dtype=np.int32)
        return pa.table({"ref": refs, "replica": np.zeros(len(refs), np.int32)})

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
            "source_sha256": pc.coalesce(self.index.sha256.take(source), made["checkpoint_sha256"]),
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


def _split_rows(members: np.ndarray, copies: np.ndarray) -> pa.Table:
    """One row per image of the split (replica 0) and per augmented copy (replica 1..k);
    ``ref`` is the image's index row."""
    repeats = 1 + copies
    refs = np.repeat(members.astype(np.int32), repeats)
    replicas = np.arange(len(refs), dtype=np.int32)
    replicas -= np.repeat((np.cumsum(repeats) - repeats).astype(np.int32), repeats)
    return pa.table({"ref": refs, "replica": replicas})


def _with_partners(
    rows: pa.Table, ids: pa.ChunkedArray, mix: MixConfig, seed: int, pool: np.ndarray
) -> pa.Table:
    """The rows (refs: index rows) with mixing columns (see
    :func:`pipeline.mixing.choose_partners`)."""
    refs = rows["ref"].to_numpy()
    methods, partners = choose_partners(
        mix, seed, _row_ids(ids, refs), rows["replica"].to_numpy(), refs, pool
    )
    mixed = partners >= 0
    return rows.append_column("mix", pa.array(methods, pa.string())).append_column(
        "partner_row", pa.array(partners, mask=~mixed)
    )


def _row_ids(ids: pa.ChunkedArray, refs: np.ndarray):
    """The source id of each row, as Python strings a chunk at a time."""
    for start in range(0, len(refs), _ORDER_CHUNK):
        yield from ids.take(refs[start : start + _ORDER_CHUNK]).to_pylist()


def _write_order(rows: pa.Table, ids: pa.ChunkedArray, seed: int) -> np.ndarray:
    """Row positions in write order; shards take their slice, so the rows are not copied
    whole."""
    refs, replicas = rows["ref"].to_numpy(), rows["replica"].to_numpy()
    replica_ints = chain.from_iterable(  # Python ints a chunk at a time: formatting numpy's is slower
        replicas[start : start + _ORDER_CHUNK].tolist() for start in range(0, len(replicas), _ORDER_CHUNK)
    )
    keys = np.fromiter(
        (derive_seed(seed, i, f"order-{r}") for i, r in zip(_row_ids(ids, refs), replica_ints, strict=True)),
        dtype=np.uint32,
        count=len(refs),
    )
    order = np.argsort(keys, kind="stable")
    # Keys are 32-bit, so a large split has a few equal ones: those rows go by id, then
    # replica, sorted here alone rather than ranking every row's id.
    ranked = keys[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(tied):
        positions = np.union1d(tied, tied + 1)
        rows = order[positions]
        by = sorted(
            zip(
                ranked[positions].tolist(),
                ids.take(refs[rows]).to_pylist(),
                replicas[rows].tolist(),
                rows.tolist(),
                strict=True,
            )
        )
        order[positions] = [row for *_, row in by]
    return order


def _plan_table(split: str, shard: int, part: pa.Table, images: _Images) -> pa.Table:
    """One shard's plan rows, in :data:`PLAN_SCHEMA`."""
    n = part.num_rows
    columns = {
        "split": pa.array([split] * n),
        "shard": pa.array(np.full(n, shard, np.int64)),
        **images.at(part["ref"].to_numpy()),
        "replica": part["replica"],
    }
    if "mix" in part.column_names:  # partners are index rows; null where a row is not mixed
        columns.update(mix=part["mix"], partner_row=part["partner_row"])
        columns.update(
            partner_id=images.index.source_ids.take(part["partner_row"]),
            partner_label=pa.array(images.index.labels).take(part["partner_row"]),
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
