import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_imagefolder
from pipeline.augment.counts import allocate_copies
from pipeline.build import build
from pipeline.build.context import prepare
from pipeline.build.publish import publish
from pipeline.build.stages import plan
from pipeline.build.write import write_shard
from pipeline.ingest.splits import carve_test_split
from pipeline.ingest.store import Index
from pipeline.version.layout import file_entry
from pipeline.version.manifest import read_manifest
from __future__ import annotations
import io
import re
import struct
import zlib
import pyarrow as pa
from PIL import Image
from conftest import make_imagefolder, png_bytes, random_image
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.images import decode_image
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import EXCLUDED

def rows(version: Path, split: str) -> list[dict]:
    files = sorted((version / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]

@pytest.mark.parametrize(
    "recipe, fix",
    [
        ([{"Resize": {"height": 16, "width": 16}}], "add a Resize to the recipe's end"),
        ([{"ToFloat": {}}], "leave out ToFloat and Normalize"),
    ],
)
def test_a_recipe_that_changes_the_size_or_dtype_says_what_to_change(recipe, fix):
    from pipeline.augment.recipe import Augmenter
    from pipeline.core.errors import PipelineError

    with pytest.raises(PipelineError, match=f"changed the image from \\(8, 8\\) uint8 .*; {fix}"):
        Augmenter(recipe)(np.zeros((8, 8), np.uint8), 0)

def test_augmenter_output_depends_on_the_seed_only():
    from pipeline.augment.recipe import Augmenter

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    recipe = [
        {"OneOf": {"p": 1.0, "transforms": [{"Affine": {"rotate": [-30, 30]}}, {"GaussNoise": {}}]}},
        {"RandomBrightnessContrast": {"p": 0.5}},
    ]
    first, again = Augmenter(recipe), Augmenter(recipe)
    seeds = [5, 6, 7, 5, 2**32 - 1, 0]
    outputs = [first(image, s) for s in seeds]
    assert np.array_equal(outputs[0][0], outputs[3][0]) and outputs[0][1] == outputs[3][1]
    for seed, (pixels, params) in zip(reversed(seeds), reversed(outputs), strict=True):
        other_pixels, other_params = again(image, seed)  # another instance, other call order
        assert np.array_equal(pixels, other_pixels) and params == other_params
    assert len({o[0].tobytes() for o in outputs}) == 5

def test_per_class_counts_and_recipes(tiny_config):
    classes = {"dog": {"copies_per_image": 0}, "eel": {"transforms": [{"VerticalFlip": {"p": 1.0}}]}}
    version, _ = build(tiny_config(f"augment.classes={json.dumps(classes)}"))
    by_class = read_manifest(version)["splits"]["train"]["by_origin_class"]
    assert "dog" not in by_class.get("augmented", {})
    assert by_class["augmented"]["cat"] == 2 * by_class["real"]["cat"]  # the dataset's count
    assert by_class["augmented"]["eel"] == 2 * by_class["real"]["eel"]
    augmented = [r for r in rows(version, "train") if r["origin"] == "augmented"]
    eel = [json.loads(r["params"]) for r in augmented if r["source_id"].startswith("eel/")]
    cat = [json.loads(r["params"]) for r in augmented if r["source_id"].startswith("cat/")]
    assert eel and all([name for name, _ in p] == ["VerticalFlip"] for p in eel)
    assert cat and all(p[0][0] == "Affine" for p in cat)  # the dataset's recipe

def test_per_class_settings_must_name_real_classes(tiny_config):
    from pipeline.core.errors import ConfigError, PipelineError

    with pytest.raises(PipelineError, match=r"augment.classes: \['zebra'\] are not classes"):
        build(tiny_config('augment.classes={"zebra": {"copies_per_image": 1}}'))
    with pytest.raises(ConfigError, match="classes.dog.transforms"):
        tiny_config('augment.classes={"dog": {"transforms": [{"Nope": {}}]}}')

def test_degenerate_augmentations_are_drawn_again(tiny_config):
    import io

    from PIL import Image

    from pipeline.augment.recipe import Augmenter

    recipe = [{"custom_transforms:Blank": {"p": 0.5}}]
    overrides = [
        f"augment.transforms={json.dumps(recipe)}",
        'augment.custom_transforms=["custom_transforms:Blank"]',
    ]
    loose, _ = build(tiny_config(*overrides, f"output.root={tiny_config().output.root}-loose"))
    strict, _ = build(tiny_config(*overrides, "augment.min_std=1"))
    assert read_manifest(loose)["augment"]["resampled"] == 0
    assert read_manifest(strict)["augment"]["resampled"] > 0
    blank = {"loose": 0, "strict": 0}
    sources = {r["id"]: r for r in rows(strict, "train") if r["origin"] == "real"}
    replay = Augmenter(recipe, ["custom_transforms:Blank"])
    for name, version in (("loose", loose), ("strict", strict)):
        for r in rows(version, "train"):
            if r["origin"] == "augmented":
                pixels = np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])))
                blank[name] += pixels.std() < 1
                if name == "strict":  # the recorded seed replays the kept image
                    real = next(s for s in sources.values() if s["source_id"] == r["source_id"])
                    source = np.asarray(Image.open(io.BytesIO(real["image"]["bytes"])))
                    assert np.array_equal(replay(source, r["seed"])[0], pixels)
    assert blank["loose"] > 0 and blank["strict"] == 0

def test_custom_transforms_only_when_listed(tmp_path):
    recipe = json.dumps([{"custom_transforms:Invert": {"p": 1.0}}])
    with pytest.raises(ConfigError, match="must be listed in augment.custom_transforms"):
        load_config(None, [f"augment.transforms={recipe}"])
    with pytest.raises(ConfigError, match="is not an albumentations transform"):
        load_config(
            None,
            [
                f"augment.transforms={json.dumps([{'custom_transforms:NotATransform': {}}])}",
                'augment.custom_transforms=["custom_transforms:NotATransform"]',
            ],
        )
    config = load_config(
        None, [f"augment.transforms={recipe}", 'augment.custom_transforms=["custom_transforms:Invert"]']
    )
    from pipeline.augment.recipe import Augmenter

    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    inverted, params = Augmenter(config.augment.transforms, config.augment.custom_transforms)(image, 1)
    assert np.array_equal(inverted, 255 - image) and "Invert" in params
