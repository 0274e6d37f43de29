"""The dataset card: ``README.md`` in each version, as on the Hugging Face Hub.

A YAML header (configs with the data files per split, features with the class names,
split sizes) lets ``datasets.load_dataset(version_dir)`` and the Hub read the version;
the body summarises counts, origin, the GAN gate decision and how to load it. It depends
only on the version's content (dates and paths are in the manifest), so a rebuild writes
it byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pipeline.core.images import EXTENSIONS
from pipeline.version.croissant import CROISSANT_FILE, LINEAGE_COLUMNS
from pipeline.version.layout import parquet_schema
from pipeline.version.model import ImageInfo, Manifest, as_manifest
from pipeline.version.pictures import TUNE_FILE, tune_column
from pipeline.version.summary import tune_markdown

CARD_FILE = "README.md"


def dataset_card(manifest: Manifest | dict[str, Any], *, grid: str | None = None) -> str:
    """The card's text for a version described by ``manifest`` (``grid``: the sample grid's
    path; a dict ``manifest`` is validated as a :class:`~pipeline.version.model.Manifest`)."""
    manifest = as_manifest(manifest)
    header = yaml.safe_dump(_header(manifest), sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{_body(manifest, grid)}"


def _header(manifest: Manifest) -> dict[str, Any]:
    splits = sorted(manifest.splits)
    parquet = manifest.format == "parquet"
    features = _card_features(manifest.class_names, manifest.soft_labels, manifest.row_weights)
    if not parquet:  # the image folder's files hold the image and (by folder) the label
        features = features[:2]
    split_of = {f"data/{s.shard}.parquet": s.split for s in manifest.shards}
    bytes_by_split = {s: 0 for s in splits}
    for f in manifest.files:
        parts = f.path.split("/")
        split = split_of.get(f.path) if parquet else (parts[0] if len(parts) == 3 else None)
        if split in bytes_by_split:
            bytes_by_split[split] += f.bytes
    extension = EXTENSIONS[manifest.image.format]
    pattern = "data/{split}-*.parquet" if parquet else "{split}/**/*" + extension
    header: dict[str, Any] = {
        "pretty_name": f"{manifest.name} ({manifest.version_id})",
        "task_categories": ["image-classification"],
        "tags": ["dataset-expand", "augmented"] + (["synthetic"] if _synthetic_rows(manifest) else []),
    }
    if manifest.source.license:
        header["license"] = manifest.source.license
    header["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": s, "path": pattern.format(split=s)} for s in splits],
        }
    ]
    header["dataset_info"] = {
        "features": features,
        "splits": [
            {"name": s, "num_bytes": bytes_by_split[s], "num_examples": manifest.splits[s].rows}
            for s in splits
        ],
    }
    return header


def _card_features(class_names: list[str], soft_labels: bool, weights: bool) -> list[dict[str, Any]]:
    """The shard schema's ``huggingface`` features, in the card's YAML form."""
    metadata = parquet_schema(class_names, soft_labels, weights).metadata[b"huggingface"]
    card = []
    for name, feature in json.loads(metadata)["info"]["features"].items():
        if feature["_type"] == "Sequence":
            card.append({"name": name, "sequence": feature["feature"]["dtype"]})
            continue
        if feature["_type"] == "Image":
            dtype: Any = "image"
        elif feature["_type"] == "ClassLabel":
            dtype = {"class_label": {"names": {str(i): n for i, n in enumerate(feature["names"])}}}
        else:
            dtype = feature["dtype"]
        card.append({"name": name, "dtype": dtype})
    return card


def _synthetic_rows(manifest: Manifest) -> int:
    return sum(info.by_origin.get("synthetic", 0) for info in manifest.splits.values())


def _test_split_text(source: dict[str, Any], image: ImageInfo) -> str:
    """What the test split holds: the source's pixels, or with ``source.resize`` the
    source's images resized as every image was at ingest; and a lossy encoding's loss."""
    if image.quality is not None:
        lossy = (
            f" Every image, test included, is stored as lossy {image.format.upper()} at quality "
            f"{image.quality}: its pixels differ slightly from the ones the pipeline made."
        )
    else:
        lossy = ""
    if not source.get("resize"):
        pixels = "" if lossy else ", byte for byte"
        return f"The test split holds real source images only{pixels}." + lossy
    height, width = source["resize"]
    return (
        "The test split holds real source images only. Every image, test included, was resized "
        f"to {width}x{height} as it was ingested ({source['resize_mode']}: see `source.resize_mode`)." + lossy
    )


def _body(manifest: Manifest, grid: str | None) -> str:
    name, vid = manifest.name, manifest.version_id
    source = manifest.source
    origins = ("real", "augmented", "synthetic")
    image = manifest.image
    lines = [
        f"# {name} — version `{vid}`",
        "",
        f"An expanded image-classification dataset made by dataset-expand from a `{source.kind}` source "
        f"(content fingerprint `{source.fingerprint}`). {len(manifest.class_names)} classes, "
        f"{image.mode} images of {image.height}x{image.width} pixels.",
        "",
        "Only the train split is expanded: `augmented` rows are seeded albumentations transforms of real "
        "training images and `synthetic` rows come from a class-conditional GAN trained on them. "
        + _test_split_text(manifest.config["source"], image),
        "",
        "| split | " + " | ".join(origins) + " | total |",
        "|---|" + "---:|" * (len(origins) + 1),
    ]
    for split in sorted(manifest.splits):
        info = manifest.splits[split]
        cells = " | ".join(str(info.by_origin.get(o, 0)) for o in origins)
        lines.append(f"| {split} | {cells} | {info.rows} |")
    lines += ["", "Rows per class in the train split:", ""]
    train = manifest.splits["train"].by_origin_class if "train" in manifest.splits else {}
    lines += ["| class | " + " | ".join(origins) + " |", "|---|" + "---:|" * len(origins)]
    for class_name in manifest.class_names:
        cells = " | ".join(str(train.get(o, {}).get(class_name, 0)) for o in origins)
        lines.append(f"| {class_name} | {cells} |")
    mixed = manifest.augment.mixed
    if mixed is not None:
        mix = manifest.config["augment"]["mix"]
        lines += [
            "",
            f"Mixing: {mixed['mixup']} augmented rows are MixUp and {mixed['cutmix']} CutMix blends with "
            f"another training image (weights from Beta({mix['alpha']}, {mix['alpha']}), the row's own "
            "image always the larger share). Every row has a `soft_label` column, one probability per "
            "class (one-hot when not mixed); `label` is its argmax.",
        ]
    synthesis = manifest.config.get("synthesis") or {}
    if manifest.soft_labels and synthesis.get("enabled") and synthesis.get("soft_labels"):
        lines += [
            "",
            "Soft labels: every synthetic row's `soft_label` holds the reference classifier's class "
            "probabilities for its image (knowledge distillation); real and augmented rows hold "
            "one-hot ones. `label` is the class the row was generated for.",
        ]
    if manifest.row_weights:
        lines += [
            "",
            f"Loss weights: every row has a `weight` column, {manifest.config['synthesis']['weight']:g} for "
            "synthetic rows and 1 for real and augmented ones; multiply each row's loss by it.",
        ]
    if manifest.tune is not None:
        lines += [
            "",
            "## Augmentation tuning",
            "",
            *tune_markdown(manifest.tune),
            "",
            f"![{tune_column(manifest.tune)} per candidate]({TUNE_FILE})",
        ]
    synthesis = manifest.synthesis
    if synthesis:
        lines += ["", "## Synthetic data", ""]
        metrics = synthesis.metrics
        if "fd" in metrics:
            lines.append(
                f"Generator checkpoint sha256 `{synthesis.checkpoint_sha256}`. Quality in the "
                f"reference classifier's features: FD {metrics['fd']:.2f}, KID {metrics['kid']:.4f}, "
                f"precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}"
                + (f", CAS on the test split {metrics['cas_test']:.3f}" if "cas_test" in metrics else "")
                + "."
            )
        if synthesis.gate:
            lines += ["", f"Utility gate: {synthesis.gate.reason}."]
        lines += ["", f"{synthesis.published} synthetic rows published."]
    if grid:
        lines += ["", f"![Generated samples, one row per class]({grid})"]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("<this folder>")  # the configs above say where each split is',
        "```",
        "",
        f"`{CROISSANT_FILE}` describes the same records in MLCommons Croissant 1.0; `manifest.json` lists "
        "every file with its sha256 (check with `expand verify <this folder>`).",
        "",
        "## Lineage columns",
        "",
        *(f"- `{n}`: {d}" for n, _, d in LINEAGE_COLUMNS),
    ]
    if source.citation:
        lines += ["", "## Citation of the source", "", "```", source.citation, "```"]
    return "\n".join(lines) + "\n"
