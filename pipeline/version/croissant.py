"""MLCommons Croissant 1.0 metadata (``croissant.json``) for a dataset version.

Describes every data file (with its sha256), one record set per split (image, label and
the lineage columns), the class names, and, in the Responsible-AI vocabulary, that rows
are real, augmented (derived) or synthetic (GAN-generated). Paths are relative to the
version directory, so ``mlcroissant.Dataset("<version>/croissant.json")`` reads the
records of a version wherever it is copied. Like the shards, the file depends only on
the version's content (no dates or local paths; those are in the manifest), so a rebuild
writes it byte for byte.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.images import EXTENSIONS, MIME_TYPES
from pipeline.version.model import ImageInfo, Manifest, as_manifest
from pipeline.version.pictures import tune_column

CROISSANT_FILE = "croissant.json"

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "equivalentProperty": "cr:equivalentProperty",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# Lineage columns shared by both output formats: (name, Croissant type, description).
LINEAGE_COLUMNS = (
    ("id", "sc:Text", "row id, unique within the version"),
    ("origin", "sc:Text", "real (a source image), augmented (derived from one) or synthetic (GAN)"),
    ("source_id", "sc:Text", "the source image (or, for synthetic rows, the class and latent index)"),
    ("source_sha256", "sc:Text", "sha256 of the source image's decoded pixels"),
    ("seed", "sc:Integer", "augmentation seed, or the latent seed of a synthetic row"),
    ("sha256", "sc:Text", "sha256 of this row's decoded pixels"),
    ("params", "sc:Text", "JSON: applied transform parameters, or generator checkpoint and filter scores"),
)


def croissant_metadata(manifest: Manifest | dict[str, Any]) -> dict[str, Any]:
    """The Croissant JSON-LD document for a version described by ``manifest`` (a dict is
    validated as a :class:`~pipeline.version.model.Manifest`)."""
    manifest = as_manifest(manifest)
    splits = sorted(manifest.splits)
    parquet = manifest.format == "parquet"
    image_format = manifest.image.format
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileObject",
            "@id": f.path,
            "name": f.path,
            "contentUrl": f.path,
            "contentSize": f"{f.bytes} B",
            "encodingFormat": "application/x-parquet",
            "sha256": f.sha256,
        }
        for f in manifest.files
        if f.path.endswith(".parquet")
    ]
    record_sets = [_class_names_record_set(manifest.class_names)]
    soft, weights = manifest.soft_labels, manifest.row_weights
    if parquet:
        for split in splits:
            distribution.append(
                _file_set(f"{split}-shards", f"data/{split}-*.parquet", "application/x-parquet")
            )
            record_sets.append(_parquet_record_set(split, soft, weights, _image_text(manifest.image)))
    else:
        for split in splits:
            pattern, mime = f"{split}/*/*{EXTENSIONS[image_format]}", MIME_TYPES[image_format]
            distribution.append(_file_set(f"{split}-images", pattern, mime))
            record_sets.append(_image_folder_record_set(split, _image_text(manifest.image)))
        distribution.append(_file_set("lineage-files", "lineage/*.parquet", "application/x-parquet"))
        record_sets.append(_lineage_record_set(soft, weights))
    counts = {split: manifest.splits[split].by_origin for split in splits}
    source = manifest.source
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": manifest.name,
        "identifier": manifest.version_id,
        "description": (
            f"Expanded image-classification dataset '{manifest.name}', version "
            f"{manifest.version_id}: {_counts_text(counts)}. Only the train split holds "
            "augmented and synthetic rows; the test split holds real source images only."
        ),
        "isBasedOn": f"{source.kind} source with content fingerprint {source.fingerprint}",
        "isLiveDataset": False,
        **({"license": source.license} if source.license else {}),
        **({"citeAs": source.citation} if source.citation else {}),
        "rai:dataCollection": (
            "Derived from the source dataset named in isBasedOn: real rows are its images, "
            "augmented rows are seeded albumentations transforms of real training images, and "
            "synthetic rows are generated by a class-conditional GAN trained on the real "
            "training images. The column 'origin' tells them apart."
        ),
        "rai:dataCollectionType": ["Software Collection", "Synthetic data"],
        "rai:dataManipulationProtocol": _manipulation_text(manifest),
        "distribution": distribution,
        "recordSet": record_sets,
    }


def _counts_text(counts: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{split}: " + ", ".join(f"{n} {origin}" for origin, n in sorted(by_origin.items()))
        for split, by_origin in counts.items()
    )


def _manipulation_text(manifest: Manifest) -> str:
    augment = manifest.config["augment"]
    text = f"Augmentation recipe ({augment.get('backend', 'albumentations')}): {augment['transforms']}."
    if augment.get("classes"):
        text += f" Per-class settings: {augment['classes']}."
    if manifest.tune:
        text += (
            f" The recipe and copy count were chosen by {tune_column(manifest.tune)}: {manifest.tune.reason}."
        )
    if augment.get("mix"):
        text += f" Mixing of augmented copies with soft labels: {augment['mix']}."
    synthesis = manifest.synthesis
    if synthesis:
        text += (
            f" Synthetic rows: {synthesis.published} from generator checkpoint "
            f"sha256 {synthesis.checkpoint_sha256 or '?'}"
        )
        text += f"; utility gate: {synthesis.gate.reason}." if synthesis.gate else "."
    return text


def _file_set(name: str, includes: str, encoding: str) -> dict[str, Any]:
    return {
        "@type": "cr:FileSet",
        "@id": name,
        "name": name,
        "encodingFormat": encoding,
        "includes": includes,
    }


def _field(record_set: str, name: str, data_type: str, description: str, source: dict | None = None) -> dict:
    field = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "description": description,
        "dataType": data_type,
    }
    if source is not None:
        field["source"] = source
    return field


def _column(file_set: str, column: str) -> dict[str, Any]:
    return {"fileSet": {"@id": file_set}, "extract": {"column": column}}


def _class_names_record_set(class_names: list[str]) -> dict[str, Any]:
    return {
        "@type": "cr:RecordSet",
        "@id": "class_names",
        "name": "class_names",
        "description": "Label ids and their class names.",
        "key": {"@id": "class_names/label"},
        "field": [
            _field("class_names", "label", "sc:Integer", "label id"),
            _field("class_names", "name", "sc:Text", "class name"),
        ],
        "data": [{"class_names/label": i, "class_names/name": name} for i, name in enumerate(class_names)],
    }


def _soft_label_field(record_set: str, files: str) -> dict[str, Any]:
    field = _field(
        record_set,
        "soft_label",
        "sc:Float",
        "one probability per class: MixUp/CutMix blends (label: the larger share) or, with "
        "synthesis.soft_labels, the reference classifier's probabilities for a synthetic row "
        "(label: the class it was generated for); one-hot otherwise",
        _column(files, "soft_label"),
    )
    return {**field, "repeated": True}


def _weight_field(record_set: str, files: str) -> dict[str, Any]:
    return _field(
        record_set,
        "weight",
        "sc:Float",
        "the row's loss weight (synthesis.weight for a synthetic row, 1 for the others)",
        _column(files, "weight"),
    )


def _extra_fields(record_set: str, files: str, soft: bool, weights: bool) -> list[dict[str, Any]]:
    return [
        *([_soft_label_field(record_set, files)] if soft else []),
        *([_weight_field(record_set, files)] if weights else []),
    ]


def _image_text(image: ImageInfo) -> str:
    """The image field's description: its format, and its quality when lossy."""
    name = {"png": "PNG", "webp": "WebP", "jpeg": "JPEG"}[image.format]
    return f"{name} image" + (f" (lossy, quality {image.quality})" if image.quality is not None else "")


def _parquet_record_set(split: str, soft: bool, weights: bool, image_text: str) -> dict[str, Any]:
    files = f"{split}-shards"
    image = _field(
        split,
        "image",
        "sc:ImageObject",
        image_text,
        {**_column(files, "image"), "transform": {"jsonPath": "bytes"}},
    )
    label = _field(split, "label", "sc:Integer", "label id (see class_names)", _column(files, "label"))
    lineage = [_field(split, n, t, d, _column(files, n)) for n, t, d in LINEAGE_COLUMNS]
    return {
        "@type": "cr:RecordSet",
        "@id": split,
        "name": split,
        "description": f"Rows of the {split} split with their lineage.",
        "field": [image, label, *lineage, *_extra_fields(split, files, soft, weights)],
    }


def _image_folder_record_set(split: str, image_text: str) -> dict[str, Any]:
    files = f"{split}-images"

    def from_path(regex: str) -> dict[str, Any]:
        return {
            "fileSet": {"@id": files},
            "extract": {"fileProperty": "filepath"},
            "transform": {"regex": regex},
        }

    content = {"fileSet": {"@id": files}, "extract": {"fileProperty": "content"}}
    return {
        "@type": "cr:RecordSet",
        "@id": split,
        "name": split,
        "description": f"Images of the {split} split; lineage by file name in the 'lineage' record set.",
        "field": [
            _field(split, "image", "sc:ImageObject", image_text, content),
            _field(
                split,
                "class_name",
                "sc:Text",
                "class name (the folder)",
                from_path(r"^(?:.*/)?[^/]+/([^/]+)/[^/]+$"),
            ),
            _field(
                split,
                "file_name",
                "sc:Text",
                "path relative to the version (as in the lineage record set)",
                from_path(rf"^(?:.*/)?({split}/[^/]+/[^/]+)$"),
            ),
        ],
    }


def _lineage_record_set(soft: bool, weights: bool) -> dict[str, Any]:
    files = "lineage-files"
    fields = [
        _field(
            "lineage",
            "file_name",
            "sc:Text",
            "image path relative to the version",
            _column(files, "file_name"),
        ),
        _field("lineage", "label", "sc:Integer", "label id (see class_names)", _column(files, "label")),
        *(_field("lineage", n, t, d, _column(files, n)) for n, t, d in LINEAGE_COLUMNS),
        *_extra_fields("lineage", files, soft, weights),
    ]
    return {
        "@type": "cr:RecordSet",
        "@id": "lineage",
        "name": "lineage",
        "description": "One row per image file: its label and lineage.",
        "field": fields,
    }
