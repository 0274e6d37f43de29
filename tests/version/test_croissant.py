"""pipeline.version.croissant: the Croissant document validates and its records load."""

import json

import pytest

from pipeline.build import build
from pipeline.version.manifest import load_manifest


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_croissant_validates_and_its_records_load(tiny_config, fmt):
    mlc = pytest.importorskip("mlcroissant")
    version, _ = build(tiny_config(f"output.format={fmt}", "source.license=CC-BY-4.0"))
    dataset = mlc.Dataset(jsonld=str(version / "croissant.json"))  # raises on validation errors
    manifest = load_manifest(version)
    for split, info in manifest.splits.items():
        records = list(dataset.records(record_set=split))
        assert len(records) == info.rows
        image = records[0][f"{split}/image"]
        assert image.size == (8, 8)
    names = [r["class_names/name"] for r in dataset.records(record_set="class_names")]
    assert names == manifest.class_names
    document = json.loads((version / "croissant.json").read_text())
    assert "Synthetic data" in document["rai:dataCollectionType"] and document["license"] == "CC-BY-4.0"
