"""The published formats load with the tools users already have."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import config_for, make_imagefolder
from pipeline.build import build, load_config
from pipeline.version.manifest import load_manifest, verify


def test_hostile_names_stay_inside_the_output_root(tmp_path):
    names = ["café ☕", 'it\'s "quoted"', "a b", "a..b", "x" * 200]
    root = make_imagefolder(tmp_path / "src", {n: 2 for n in names})
    (root / names[0] / "img_000.png").rename(root / names[0] / ("ü ' \" ..png"))
    for fmt in ("parquet", "imagefolder"):
        out = tmp_path / f"out-{fmt}"
        config = config_for(
            root, tmp_path, f"output.root={out}", f"output.format={fmt}", "split.test_fraction=0.5"
        )
        before = set(tmp_path.rglob("*"))  # the whole temporary folder, so an escape shows
        version, _ = build(config)
        manifest = load_manifest(version)
        assert manifest.class_names == sorted(names)
        added = set(tmp_path.rglob("*")) - before
        assert added and all(p.resolve().is_relative_to(out.resolve()) for p in added)
    from pipeline.dataset import ExpandedDataset

    assert len(ExpandedDataset(version, split="train")) == manifest.splits["train"].rows


@pytest.mark.parametrize("layout", ["parquet", "imagefolder"])
def test_a_shard_writer_never_makes_its_removed_version_folder_again(tmp_path, layout):
    """A shard still running when its run failed must not recreate the staging it removed."""
    from pipeline.build.shards import ImageFolderShardWriter, ParquetShardWriter, Row

    root = tmp_path / ".incomplete-x" / "version"  # removed (never made, here)
    row = Row(
        id="a",
        label=0,
        origin="real",
        source_id="s",
        source_sha256="0" * 64,
        seed=0,
        params="{}",
        sha256="0" * 64,
        encoded=b"png",
    )
    with pytest.raises(FileNotFoundError):
        if layout == "parquet":
            ParquetShardWriter(root=root, path=root / "data" / "train-0.parquet", class_names=["c"])
        else:
            writer = ImageFolderShardWriter(
                root=root, split="train", lineage_path=root / "lineage" / "t.parquet", class_names=["c"]
            )
            writer.write(row)
    assert not (tmp_path / ".incomplete-x").exists()


def test_parquet_loads_with_hf_datasets(tiny_config, tmp_path):
    datasets = pytest.importorskip("datasets")
    version, _ = build(tiny_config())
    manifest = load_manifest(version)
    data_files = {split: str(version / "data" / f"{split}-*.parquet") for split in ("train", "test")}
    loaded = datasets.load_dataset("parquet", data_files=data_files, cache_dir=str(tmp_path / "hf"))
    assert loaded["train"].features["label"].names == ["cat", "dog", "eel"]
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    for split in ("train", "test"):
        assert loaded[split].num_rows == manifest.splits[split].rows
    first = loaded["train"][0]
    assert first["image"].size == (8, 8) and first["image"].mode == "RGB"
    assert first["origin"] in {"real", "augmented"}


def test_imagefolder_loads_with_torchvision(tiny_config):
    from torchvision.datasets import ImageFolder

    version, _ = build(tiny_config("output.format=imagefolder"))
    manifest = load_manifest(version)
    train = ImageFolder(str(version / "train"))
    assert train.classes == manifest.class_names
    assert len(train) == manifest.splits["train"].rows
    expected = manifest.splits["train"].by_origin_class
    per_class = Counter(train.classes[label] for _, label in train.samples)
    assert per_class == Counter({c: expected["real"][c] + expected["augmented"][c] for c in train.classes})
    image, _ = train[0]
    assert image.size == (8, 8)
    lineage = sorted((version / "lineage").glob("train-*.parquet"))
    assert lineage, "image folders carry a lineage table per shard"


def test_imagefolder_lineage_points_at_files(tiny_config):

    version, _ = build(tiny_config("output.format=imagefolder"))
    records = [
        r for f in sorted((version / "lineage").glob("*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert records and all((version / r["file_name"]).is_file() for r in records)
    assert all(r["file_name"].split("/")[2].startswith(r["origin"] + "-") for r in records)


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_webp_lossless_reads_back_the_png_pixels(tmp_path, fmt, mode):
    import numpy as np

    from conftest import RECIPE, make_imagefolder
    from pipeline.dataset import ExpandedDataset

    source = make_imagefolder(tmp_path / "src", {"a": 4, "b": 3}, mode=mode)

    def pixels(image_format: str) -> dict[str, np.ndarray]:
        config = load_config(
            None,
            [
                "source.kind=imagefolder",
                f"source.path={source}",
                f"output.root={tmp_path / image_format}",
                f"output.format={fmt}",
                f"output.image_format={image_format}",
                "augment.copies_per_image=1",
                f"augment.transforms={json.dumps(RECIPE)}",
                "runner.workers=1",
            ],
        )
        version, _ = build(config)
        assert load_manifest(version).image.format == image_format
        data = ExpandedDataset(version, split="train", return_lineage=True)
        return {row["id"]: np.asarray(x) for x, _, row in data}

    png, webp = pixels("png"), pixels("webp")
    assert png.keys() == webp.keys() and len(png) >= 8
    assert all(np.array_equal(png[k], webp[k]) for k in png)
    assert next(iter(webp.values())).shape[0] == (1 if mode == "L" else 3)


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_a_lossy_version_records_its_encoder_and_reads_back_close_to_png(tmp_path, fmt):
    import numpy as np

    from conftest import RECIPE, make_imagefolder
    from pipeline.dataset import ExpandedDataset
    from pipeline.version.croissant import croissant_metadata

    source = make_imagefolder(tmp_path / "src", {"a": 4, "b": 3}, mode="RGB", size=(24, 24))

    def built(*extra: str):
        config = load_config(
            None,
            [
                "source.kind=imagefolder",
                f"source.path={source}",
                f"output.root={tmp_path / 'out'}",
                f"output.format={fmt}",
                "augment.copies_per_image=1",
                f"augment.transforms={json.dumps(RECIPE)}",
                "runner.workers=1",
                *extra,
            ],
        )
        version, _ = build(config)
        data = ExpandedDataset(version, split="train", return_lineage=True)
        return version, {row["id"]: np.asarray(x, dtype=float) for x, _, row in data}

    png_version, png = built()
    version, jpeg = built("output.image_format=jpeg", "output.quality=90", "name=lossy")
    manifest = load_manifest(version)
    assert (manifest.image.format, manifest.image.quality) == ("jpeg", 90)
    assert manifest.image.encoder and "jpeg" in manifest.image.encoder["codec"].lower()
    assert jpeg.keys() == png.keys()
    errors = [np.abs(jpeg[k] - png[k]).mean() for k in png]
    assert 0 < max(errors) < 12  # lossy, and close
    assert "lossy JPEG at quality 90" in (version / "README.md").read_text()
    document = json.dumps(croissant_metadata(manifest))
    assert "JPEG image (lossy, quality 90)" in document
    if fmt == "imagefolder":
        assert list(version.glob("train/*/*.jpg")) and not list(version.glob("train/*/*.png"))
    assert verify(version) == [] and png_version != version
