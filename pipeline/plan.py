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
# One row per image of a split (source or synthetic): what the plan says of it whichever
# copy it is. The split's rows refer to these by position (``ref``), so the strings are not
# repeated for every copy.
_IMAGE_COLUMNS = ("store", "pixel_row", "source_id", "label", "source_sha256", "seed", "params")
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

    Memory: a split's strings are held once per image, and each row (copy) is a few
    integers; shards are written one at a time.
    """
    splits = np.asarray(index.splits, dtype=object)  # shared strings: a pointer per image
    everyone = pa.table({"source_id": index.source_ids, "label": index.labels})
    shards: list[ShardSpec] = []
    (work_dir / PLAN_DIR).mkdir(exist_ok=True)
    for split in [s for s in SPLIT_ORDER if s in set(index.splits)]:
        members = np.flatnonzero(splits == split)
        images = _source_images(index, members)
        rows = _split_rows(copies[members] if split == "train" else np.zeros(len(members), np.int64))
        if split == "train" and mix is not None:
            rows = _with_partners(rows, images, mix, seed, pool=members)
        if split == "train" and synthetic is not None and synthetic.num_rows:
            rows = pa.concat_tables(
                [rows, _synthetic_refs(synthetic.num_rows, images.num_rows)], promote_options="default"
            )
            images = pa.concat_tables([images, _synthetic_images(synthetic)])
        order = _write_order(rows, images["source_id"], seed)
        count = max(1, math.ceil(rows.num_rows / rows_per_shard))
        for shard in range(count):
            part = rows.take(order[shard * rows_per_shard : (shard + 1) * rows_per_shard])
            spec = ShardSpec(split, shard, count, part.num_rows)
            _write_shard_plan(work_dir, spec, _plan_table(split, shard, part, images, everyone))
            shards.append(spec)
    return shards


def _source_images(index: Index, members: np.ndarray) -> pa.Table:
    n = len(members)
    return pa.table(
        {
            "store": pa.array(np.full(n, STORE_SOURCE, np.int8)),
            "pixel_row": pa.array(members.astype(np.int64)),
            "source_id": index.source_ids.take(members),
            "label": pa.array(index.labels[members]),
            "source_sha256": index.sha256.take(members),
            "seed": pa.nulls(n, pa.int64()),
            "params": pa.nulls(n, pa.string()),
        }
    )


def _synthetic_images(synthetic: pa.Table) -> pa.Table:
    """Staged synthetic rows as plan images (the checkpoint's sha256 as source hash)."""
    n = synthetic.num_rows
    return pa.table(
        {
            "store": pa.array(np.full(n, STORE_SYNTHETIC, np.int8)),
            "pixel_row": pa.array(np.arange(n, dtype=np.int64)),
            "source_id": synthetic["source_id"],
            "label": synthetic["label"].cast(pa.int64()),
            "source_sha256": synthetic["checkpoint_sha256"],
            "seed": synthetic["seed"].cast(pa.int64()),
            "params": synthetic["params"],
        }
    )


def _split_rows(copies: np.ndarray) -> pa.Table:
    """One row per image of the split (replica 0) and per augmented copy (replica 1..k)."""
    repeats = 1 + copies
    refs = np.repeat(np.arange(len(copies), dtype=np.int32), repeats)
    replicas = np.arange(len(refs), dtype=np.int32)
    replicas -= np.repeat((np.cumsum(repeats) - repeats).astype(np.int32), repeats)
    return pa.table({"ref": refs, "replica": replicas})


def _synthetic_refs(n: int, offset: int) -> pa.Table:
    return pa.table({"ref": np.arange(offset, offset + n, dtype=np.int32), "replica": np.zeros(n, np.int32)})


def _with_partners(rows: pa.Table, images: pa.Table, mix: MixConfig, seed: int, pool: np.ndarray) -> pa.Table:
    """The rows with mixing columns (see :func:`pipeline.mixing.choose_partners`)."""
    refs = rows["ref"].to_numpy()
    methods, partners = choose_partners(
        mix,
        seed,
        _row_ids(images["source_id"], refs),
        rows["replica"].to_numpy(),
        images["pixel_row"].to_numpy()[refs],
        pool,
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
        dtype=np.int64,
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


def _plan_table(split: str, shard: int, part: pa.Table, images: pa.Table, everyone: pa.Table) -> pa.Table:
    """One shard's plan rows, in :data:`PLAN_SCHEMA` (``everyone``: id and label of each
    pixel row, for mixing partners)."""
    n = part.num_rows
    image = images.take(part["ref"])
    columns = {
        "split": pa.array([split] * n),
        "shard": pa.array(np.full(n, shard, np.int64)),
        **{name: image[name] for name in _IMAGE_COLUMNS},
        "replica": part["replica"],
    }
    if "mix" in part.column_names:
        partner = everyone.take(part["partner_row"])  # null where the row is not mixed
        columns.update(mix=part["mix"], partner_row=part["partner_row"])
        columns.update(partner_id=partner["source_id"], partner_label=partner["label"])
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
