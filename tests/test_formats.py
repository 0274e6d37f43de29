"""The published formats load with the tools users already have."""

from collections import Counter

import pytest

from pipeline.build import build
from pipeline.manifest import read_manifest


def test_parquet_loads_with_hf_datasets(tiny_config, tmp_path):
    datasets = pytest.importorskip("datasets")
    version, _ = build(tiny_config())
    manifest = read_manifest(version)
    data_files = {split: str(version / "data" / f"{split}-*.parquet") for split in ("train", "test")}
    loaded = datasets.load_dataset("parquet", data_files=data_files, cache_dir=str(tmp_path / "hf"))
    assert loaded["train"].features["label"].names == ["cat", "dog", "eel"]
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    for split in ("train", "test"):
        assert loaded[split].num_rows == manifest["splits"][split]["rows"]
    first = loaded["train"][0]
    assert first["image"].size == (8, 8) and first["image"].mode == "RGB"
    assert first["origin"] in {"real", "augmented"}


def test_imagefolder_loads_with_torchvision(tiny_config):
    from torchvision.datasets import ImageFolder

    version, _ = build(tiny_config("output.format=imagefolder"))
    manifest = read_manifest(version)
    train = ImageFolder(str(version / "train"))
    assert train.classes == manifest["class_names"]
    assert len(train) == manifest["splits"]["train"]["rows"]
    expected = manifest["splits"]["train"]["by_origin_class"]
    per_class = Counter(train.classes[label] for _, label in train.samples)
    assert per_class == Counter({c: expected["real"][c] + expected["augmented"][c] for c in train.classes})
    image, _ = train[0]
    assert image.size == (8, 8)
    lineage = sorted((version / "lineage").glob("train-*.parquet"))
    assert lineage, "image folders carry a lineage table per shard"


def test_imagefolder_lineage_points_at_files(tiny_config):
    import pyarrow.parquet as pq

    version, _ = build(tiny_config("output.format=imagefolder"))
    records = [
        r for f in sorted((version / "lineage").glob("*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert records and all((version / r["file_name"]).is_file() for r in records)
    assert all(r["file_name"].split("/")[2].startswith(r["origin"] + "-") for r in records)
