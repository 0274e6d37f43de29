"""What a version's files hold: the origins a row can have, the Parquet schemas of data and
lineage shards (with the class names in the ``huggingface`` metadata), and a file's
manifest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.core.hashing import file_sha256

ORIGINS = ("real", "augmented", "synthetic")


def parquet_schema(class_names: list[str], soft_labels: bool = False, weights: bool = False) -> pa.Schema:
    """The shard schema, with the ``huggingface`` features metadata (ClassLabel names).

    ``soft_labels`` adds the ``soft_label`` column (a float32 per class) of mixed versions;
    ``weights`` the ``weight`` column (float32: each row's loss weight, ``synthesis.weight``).
    """
    features = {
        "image": {"_type": "Image"},
        "label": {"names": list(class_names), "_type": "ClassLabel"},
        **{
            name: {"dtype": "string", "_type": "Value"}
            for name in ("id", "origin", "source_id", "source_sha256")
        },
        "seed": {"dtype": "int64", "_type": "Value"},
        "sha256": {"dtype": "string", "_type": "Value"},
        "params": {"dtype": "string", "_type": "Value"},
    }
    fields = [
        pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        pa.field("label", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("origin", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("params", pa.string()),
    ]
    if soft_labels:
        features["soft_label"] = {"feature": {"dtype": "float32", "_type": "Value"}, "_type": "Sequence"}
        # "element": the list item name Parquet writes, so the schema read back compares equal
        fields.append(pa.field("soft_label", pa.list_(pa.field("element", pa.float32()))))
    if weights:
        features["weight"] = {"dtype": "float32", "_type": "Value"}
        fields.append(pa.field("weight", pa.float32()))
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=metadata)


def file_entry(root: Path, path: Path) -> dict[str, Any]:
    """``{path, bytes, sha256}`` of a written file, its path relative to ``root``."""
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def lineage_schema(class_names: list[str], soft_labels: bool = False, weights: bool = False) -> pa.Schema:
    """The image-folder lineage schema: the shard schema without image bytes, plus file_name."""
    base = parquet_schema(class_names, soft_labels, weights)
    features = json.loads(base.metadata[b"huggingface"])["info"]["features"]
    del features["image"]
    features["file_name"] = {"dtype": "string", "_type": "Value"}
    fields = [f for f in base if f.name != "image"] + [pa.field("file_name", pa.string())]
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})
