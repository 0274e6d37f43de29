"""pipeline.config.augment: counts per class, recipes per class, tuning and mixing settings."""

import pytest
from pydantic import ValidationError

from pipeline.build import load_config
from pipeline.config.augment import AugmentConfig, ClassAugmentConfig, MixConfig, TuneConfig
from pipeline.core.errors import ConfigError

FLIP = [{"HorizontalFlip": {"p": 0.5}}]
BLUR = [{"Blur": {"p": 1.0}}]


def test_one_count_rule_for_the_dataset_and_each_class():
    with pytest.raises(ValidationError, match="set either copies_per_image or target_per_class, not both"):
        AugmentConfig(copies_per_image=1, target_per_class=5)
    with pytest.raises(ValidationError, match="not both"):
        ClassAugmentConfig(copies_per_image=1, target_per_class=5)


def test_copies_for_follows_the_class_override_then_the_dataset():
    augment = AugmentConfig(copies_per_image=1.5, classes={"cat": ClassAugmentConfig(target_per_class=10)})
    assert augment.copies_for("dog", 3) == 5  # round(1.5 x 3)
    assert augment.copies_for("cat", 4) == 6  # 10 - 4
    assert augment.copies_for("cat", 12) == 0  # already over the target
    assert AugmentConfig().copies_for("dog", 7) == 0


def test_enabled_when_any_class_gets_copies():
    assert not AugmentConfig().enabled
    assert not AugmentConfig(copies_per_image=0).enabled
    assert AugmentConfig(copies_per_image=0.5).enabled
    assert AugmentConfig(classes={"cat": ClassAugmentConfig(target_per_class=3)}).enabled


def test_tuned_counts():
    assert AugmentConfig().tuned_counts() == [(1.0, None)]
    assert AugmentConfig(target_per_class=9).tuned_counts() == [(None, 9)]
    assert AugmentConfig(copies_per_image=2, tune=TuneConfig(copies=[1, 3])).tuned_counts() == [
        (1.0, None),
        (3.0, None),
    ]


def test_transforms_for_prefers_the_class_recipe():
    augment = AugmentConfig(transforms=FLIP, classes={"cat": ClassAugmentConfig(transforms=BLUR)})
    assert augment.transforms_for("cat") == BLUR
    assert augment.transforms_for("dog") == FLIP


def test_tune_and_mix_limits():
    assert TuneConfig().strengths == [0.5, 1.0, 1.5] and TuneConfig().metric == "accuracy"
    with pytest.raises(ValidationError, match="values must be positive"):
        TuneConfig(strengths=[1.0, 0.0])
    with pytest.raises(ValidationError, match="policies"):
        TuneConfig(policies=["Sharpen"])
    assert MixConfig().method == "mixup"
    with pytest.raises(ValidationError, match="fraction"):
        MixConfig(fraction=1.5)


def test_copies_and_target_are_exclusive():
    with pytest.raises(ConfigError, match="either copies_per_image or target_per_class"):
        load_config(None, ["augment.copies_per_image=1", "augment.target_per_class=10"])


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("[{NoSuchTransform: {}}]", "'NoSuchTransform' is not an albumentations transform"),
        ("[{Affine: {rotat: 3}}]", r"unknown parameter\(s\) \['rotat'\]"),
        ("[{Affine: {p: 7}}]", "invalid parameters"),
        ("[{Affine: {}, Blur: {}}]", "one key"),
        ("[{OneOf: {transforms: [{Nope: {}}]}}]", r"transforms\[0\].OneOf.transforms\[0\].Nope"),
        ("[{Compose: {}}]", None),
    ],
)
def test_transform_recipes_are_validated(recipe, message):
    if message is None:
        load_config(None, [f"augment.transforms={recipe}"])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"augment.transforms={recipe}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.tune.strengths=[0, 1]", "augment.tune.strengths"),
        ("augment.tune.policies=[FancyAugment]", "augment.tune.policies"),
        ("augment.tune.seeds=0", "augment.tune.seeds"),
        ("augment.tune.budget=5", "augment.tune.budget"),
    ],
)
def test_bad_tune_settings_name_the_key(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(override)
