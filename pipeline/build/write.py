"""The shard stage: one shard's rows read from the plan, augmented (and mixed), encoded
and written by the output format's writer (:mod:`pipeline.build.shards`)."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.augment.mixing import Mixed, mix_copy, soft_label
from pipeline.augment.recipe import ClassAugmenters
from pipeline.build.context import BuildContext
from pipeline.build.plan import STORE_SYNTHETIC, ShardSpec, read_shard_plan
from pipeline.build.shards import ImageFolderShardWriter, ParquetShardWriter, Row
from pipeline.config import Config
from pipeline.core.images import EXTENSIONS, content_sha256, encode_image
from pipeline.gan.stage import SYNTHETIC_INDEX, SYNTHETIC_PIXELS
from pipeline.ingest.store import PIXELS_FILE, PixelStore

_SIZE_SAMPLE = 64


def write_shard(context: BuildContext, shard: ShardSpec) -> dict[str, Any]:
    """Produce one shard: read its plan rows, augment (and mix) the copies, encode, write.

    Returns:
        The shard's entry: split, name, rows, counts per origin and class, redrawn and
        mixed copies, and files.
    """
    config = context.config
    rows = read_shard_plan(context.work_dir, shard).to_pylist()
    augment = ClassAugmenters(config.augment, context.class_names, config.seed)
    mix = config.augment.mix
    mixed = dict.fromkeys(("mixup", "cutmix"), 0)
    classes = len(context.class_names)
    soft_labels = config.soft_labels  # once, not per row
    teacher = _teacher_labels(context) if config.synthesis.enabled and config.synthesis.soft_labels else None
    synthetic_weight = config.synthesis.weight if config.row_weights else None
    output = config.output
    synthetic_path = context.work_dir / SYNTHETIC_PIXELS
    with (
        PixelStore(context.work_dir / PIXELS_FILE, context.shape) as pixels,
        PixelStore(synthetic_path, context.shape) if synthetic_path.exists() else nullcontext() as fake,
        _open_writer(context, shard) as writer,
    ):
        for r in rows:
            source_sha, seed, params = r["source_sha256"], r["seed"], r["params"]
            soft = soft_label(r["label"], classes) if soft_labels else None
            if r["store"] == STORE_SYNTHETIC:
                image, origin = fake[r["pixel_row"]], "synthetic"
                if teacher is not None:
                    soft = teacher[r["pixel_row"]]
            elif r["replica"]:
                image, seed, params = augment(
                    pixels[r["pixel_row"]], r["label"], r["source_id"], r["replica"]
                )
                origin = "augmented"
                if r["mix"]:
                    partner = pixels[r["partner_row"]]
                    image, done = mix_copy(
                        image, partner, r["mix"], mix, config.seed, r["source_id"], r["replica"]
                    )
                    soft = soft_label(r["label"], classes, r["partner_label"], done.lam)
                    params = _with_mix_params(params, done, r["partner_id"])
                    mixed[done.method] += 1
            else:
                image, origin = pixels[r["pixel_row"]], "real"
            writer.write(
                Row(
                    id=row_id(r["source_id"], r["replica"]),
                    label=r["label"],
                    origin=origin,
                    source_id=r["source_id"],
                    source_sha256=source_sha,
                    seed=seed,
                    sha256=source_sha if origin == "real" else content_sha256(image),
                    params=params,
                    encoded=encode_image(image, **output.encoding()),
                    soft_label=soft,
                    weight=None if synthetic_weight is None else _weight(origin, synthetic_weight),
                )
            )
        entry = writer.finish()
    return {
        "split": shard.split,
        "shard": shard.name,
        "resampled": augment.resampled,
        "mixed": mixed,
        **entry,
    }


def _weight(origin: str, synthetic: float) -> float:
    """A row's loss weight: ``synthesis.weight`` for a synthetic row, 1 for the others."""
    return synthetic if origin == "synthetic" else 1.0


def _teacher_labels(context: BuildContext) -> list[list[float]] | None:
    """The synthetic rows' soft labels staged by synthesis (row i: pixel row i), if any."""
    path = context.work_dir / SYNTHETIC_INDEX
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["soft_label"])
    return table.column("soft_label").to_pylist()


def _with_mix_params(params: str | None, done: Mixed, partner_id: str) -> str:
    """The applied parameters with the mixing step appended (partner, weight, box)."""
    steps = json.loads(params) if params else []
    step = {"partner": partner_id, "lam": round(done.lam, 6)}
    if done.box is not None:
        step["box_yxyx"] = list(done.box)
    steps.append(["MixUp" if done.method == "mixup" else "CutMix", step])
    return json.dumps(steps, sort_keys=True, separators=(",", ":"))


def row_id(source_id: str, replica: int) -> str:
    """A row's id, unique within a version: 16 hex characters of sha256(source_id, replica)."""
    return hashlib.sha256(f"{source_id}\x1f{replica}".encode()).hexdigest()[:16]


def _open_writer(context: BuildContext, shard: ShardSpec):
    root = context.version_dir
    extension = EXTENSIONS[context.config.output.image_format]
    soft_labels, weights = context.config.soft_labels, context.config.row_weights
    if context.config.output.format == "parquet":
        return ParquetShardWriter(
            root=root,
            path=root / "data" / f"{shard.name}.parquet",
            class_names=context.class_names,
            extension=extension,
            soft_labels=soft_labels,
            weights=weights,
        )
    return ImageFolderShardWriter(
        root=root,
        split=shard.split,
        lineage_path=root / "lineage" / f"{shard.name}.parquet",
        class_names=context.class_names,
        extension=extension,
        soft_labels=soft_labels,
        weights=weights,
    )


def rows_per_shard(config: Config, context: BuildContext, total_rows: int) -> int:
    """Rows per shard for ``output.shard_size``: the row count, or a byte target divided by
    the mean encoded size of the first images."""
    output = config.output
    unit, limit = output.shard_limit(total_rows)
    if unit == "rows":
        return limit
    # A byte target becomes a row count from the mean encoded size of the first images.
    count = min(_SIZE_SAMPLE, int(context.details["source"]["images"]))
    with PixelStore(context.work_dir / PIXELS_FILE, context.shape) as pixels:
        sizes = [len(encode_image(pixels[i], **output.encoding())) for i in range(count)]
    return max(1, int(limit // max(1.0, float(np.mean(sizes)))))
