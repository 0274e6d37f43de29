from collections import Counter

import numpy as np

from conftest import version_rows
from pipeline.build import build, load_config
from pipeline.version.manifest import load_manifest


def test_fractional_copies_are_floor_or_ceil(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=1.5"))
    copies = Counter(r["source_id"] for r in version_rows(version, "train") if r["origin"] == "augmented")
    assert set(copies.values()) == {1, 2}


def test_target_per_class_balances(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=null", "augment.target_per_class=9"))
    per_class = Counter(r["label"] for r in version_rows(version, "train"))
    assert per_class == Counter({0: 9, 1: 9, 2: 9})
    manifest = load_manifest(version)
    assert manifest.splits["train"].by_origin_class["real"]["cat"] == 4


def _index(labels, splits=None):
    from pipeline.ingest.store import Index

    ids = [f"img{i:02d}" for i in range(len(labels))]
    return Index(ids, np.array(labels), splits or ["train"] * len(labels), [""] * len(labels))


def test_allocate_copies_spreads_each_class_count_over_its_training_images():
    import pytest

    from pipeline.augment.counts import allocate_copies
    from pipeline.core.errors import PipelineError

    names = ["a", "b", "c"]
    index = _index([0, 0, 0, 0, 1, 1, 0], ["train"] * 6 + ["test"])
    copies, shortfall = allocate_copies(
        index, load_config(None, ["augment.copies_per_image=1.5"]).augment, 0, names
    )
    assert copies[:4].sum() == 6 and set(copies[:4].tolist()) == {1, 2}  # round(1.5 * 4), floor or ceil
    assert copies[4:6].tolist() == [2, 1] or copies[4:6].tolist() == [1, 2]
    assert copies[6] == 0 and shortfall == {}  # not in train
    target = load_config(None, ["augment.target_per_class=5"]).augment
    copies, shortfall = allocate_copies(index, target, 0, names)
    assert copies[:4].sum() == 1 and copies[4:6].sum() == 3 and shortfall == {2: 5}  # c has no images
    none, _ = allocate_copies(index, load_config(None).augment, 0, names)
    assert not none.any()
    unknown = load_config(None, ['augment.classes={"zebra": {"copies_per_image": 1}}']).augment
    with pytest.raises(PipelineError, match=r"augment.classes: \['zebra'\] are not classes"):
        allocate_copies(index, unknown, 0, names)


def test_expand_with_adds_the_augmented_copies_a_build_makes():
    import json

    from conftest import RECIPE
    from pipeline.augment.counts import expand_with
    from pipeline.augment.recipe import ClassAugmenters
    from pipeline.ingest.store import RealData

    rng = np.random.default_rng(0)
    fit = RealData(rng.integers(0, 256, (3, 8, 8), dtype=np.uint8), np.array([0, 1, 1]), ["x", "y", "z"])
    augment = load_config(
        None, ["augment.copies_per_image=2", f"augment.transforms={json.dumps(RECIPE)}"]
    ).augment
    images, labels = expand_with(augment, 5, fit, ["a", "b"])
    assert images.shape == (9, 8, 8) and labels.tolist() == [0, 1, 1, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(images[:3], fit.images)
    replay = ClassAugmenters(augment, ["a", "b"], 5)
    assert np.array_equal(images[3], replay(fit.images[0], 0, "x", 1)[0])
    plain, plain_labels = expand_with(load_config(None).augment, 5, fit, ["a", "b"])
    assert plain is fit.images and plain_labels is fit.labels
