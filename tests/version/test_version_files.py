"""The metadata files of a version, made from its typed manifest: card, Croissant, pictures,
the run summary; and the shard schemas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from published_versions import published_versions

from conftest import raw_manifest
from pipeline.version.card import CARD_FILE, dataset_card
from pipeline.version.croissant import CROISSANT_FILE, croissant_metadata
from pipeline.version.layout import lineage_schema, parquet_schema
from pipeline.version.manifest import load_manifest
from pipeline.version.pictures import (
    class_histogram,
    origin_grid,
    preview_grid,
    training_curves,
    tune_chart,
    tune_column,
)
from pipeline.version.summary import count_rows, run_markdown, tune_markdown, tune_rows


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    return published_versions(tmp_path_factory)


@pytest.mark.parametrize("kind", ["digits", "tuned", "synthesis"])
def test_card_and_croissant_are_what_the_builder_wrote(published, kind):
    version = published[kind]
    manifest, raw = load_manifest(version), raw_manifest(version)
    # The builder made them before the metadata files entered "files".
    listed = [
        f for f in manifest.files if f.path not in (CARD_FILE, CROISSANT_FILE, "classes.png", "grid.png")
    ]
    before = manifest.model_copy(update={"files": listed})
    grid = "samples.png" if kind == "synthesis" else None
    assert dataset_card(before, grid=grid) == (version / CARD_FILE).read_text(encoding="utf-8")
    written = json.loads((version / CROISSANT_FILE).read_text(encoding="utf-8"))
    # The recipe's text follows the config's key order, which the stored manifest sorts.
    protocol = "rai:dataManipulationProtocol"
    for made in (
        croissant_metadata(before),
        croissant_metadata(raw | {"files": [f.model_dump() for f in listed]}),
    ):
        assert {k: v for k, v in made.items() if k != protocol} == {
            k: v for k, v in written.items() if k != protocol
        }
        assert made[protocol].startswith("Augmentation recipe (albumentations)")


def test_card_header_counts_splits(published):
    manifest = load_manifest(published["synthesis"])
    header = yaml.safe_load(dataset_card(manifest).split("---")[1])
    splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    assert splits == {name: info.rows for name, info in manifest.splits.items()}
    assert "Utility gate:" in dataset_card(manifest)


def test_shard_schemas_carry_class_names_and_soft_labels():
    plain, soft = parquet_schema(["a", "b"]), parquet_schema(["a", "b"], soft_labels=True)
    assert "soft_label" in soft.names and "soft_label" not in plain.names
    assert b'"names": ["a", "b"]' in plain.metadata[b"huggingface"]
    assert "image" not in lineage_schema(["a"]).names and "file_name" in lineage_schema(["a"]).names


def test_pictures_from_a_manifest(published, tmp_path):
    version = published["tuned"]
    manifest = load_manifest(version)
    class_histogram(manifest, tmp_path / "classes.png")
    assert (tmp_path / "classes.png").read_bytes() == (version / "classes.png").read_bytes()
    train = sorted((version / "data").glob("train-*.parquet"))
    origin_grid(version, train, "image", manifest, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes() == (version / "grid.png").read_bytes()
    tune_chart(manifest.tune, tmp_path / "tune.png")
    assert (tmp_path / "tune.png").read_bytes() == (version / "tune.png").read_bytes()
    assert tune_column(manifest.tune) == "validation accuracy"
    assert tune_column({**manifest.tune.model_dump(), "metric": "balanced_accuracy"}).startswith(
        "validation bal"
    )


def test_training_curves_and_preview_grid_draw(tmp_path):
    history = [
        {"step": 1, "d_loss": 1.0, "g_loss": 2.0},
        {"step": 2, "d_loss": 0.5, "g_loss": 1.5, "fd": 3.0},
    ]
    training_curves(history, tmp_path / "curves.png")
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    preview_grid([("cat", pixels, [pixels, pixels])], tmp_path / "preview.png")
    for name in ("curves.png", "preview.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 0 and image.height > 0


def test_run_summary_counts_and_tune_table(published):
    version = published["tuned"]
    manifest = load_manifest(version)
    rows = count_rows(manifest)
    assert rows == count_rows(raw_manifest(version))
    assert sum(r["rows"] for r in rows) == sum(info.rows for info in manifest.splits.values())
    text = run_markdown(manifest, version, created=True)
    assert text.startswith(f"# tuned: version `{manifest.version_id}`") and "## Augmentation tuning" in text
    table = tune_rows(manifest.tune)
    assert [r["candidate"] for r in table] == [c.name for c in manifest.tune.candidates]
    assert sum(r["chosen"] for r in table) == 1
    assert any("chosen" in line for line in tune_markdown(manifest.tune))


def test_run_summary_of_a_synthesis_version(published):
    version = published["synthesis"]
    text = run_markdown(load_manifest(version), version, created=False)
    assert "## GAN synthesis" in text and "Utility gate:" in text and "Devices: GAN training on cpu" in text
    assert "Already published" in text
