from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import version_rows
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError
from pipeline.version.manifest import load_manifest


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
    by_class = load_manifest(version).splits["train"].by_origin_class
    assert "dog" not in by_class.get("augmented", {})
    assert by_class["augmented"]["cat"] == 2 * by_class["real"]["cat"]  # the dataset's count
    assert by_class["augmented"]["eel"] == 2 * by_class["real"]["eel"]
    augmented = [r for r in version_rows(version, "train") if r["origin"] == "augmented"]
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

    from pipeline.augment.recipe import Augmenter

    recipe = [{"custom_transforms:Blank": {"p": 0.5}}]
    overrides = [
        f"augment.transforms={json.dumps(recipe)}",
        'augment.custom_transforms=["custom_transforms:Blank"]',
    ]
    loose, _ = build(tiny_config(*overrides, f"output.root={tiny_config().output.root}-loose"))
    strict, _ = build(tiny_config(*overrides, "augment.min_std=1"))
    assert load_manifest(loose).augment.resampled == 0
    assert load_manifest(strict).augment.resampled > 0
    blank = {"loose": 0, "strict": 0}
    sources = {r["id"]: r for r in version_rows(strict, "train") if r["origin"] == "real"}
    replay = Augmenter(recipe, ["custom_transforms:Blank"])
    for name, version in (("loose", loose), ("strict", strict)):
        for r in version_rows(version, "train"):
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


def test_recipe_entries_are_name_params_and_where():
    from pipeline.augment.recipe import recipe_entries

    spec = [{"HorizontalFlip": None}, {"Affine": {"rotate": 5}}]
    assert recipe_entries(spec, "augment.transforms") == [
        ("HorizontalFlip", {}, "augment.transforms[0].HorizontalFlip"),
        ("Affine", {"rotate": 5}, "augment.transforms[1].Affine"),
    ]
    for bad, message in [
        ({"HorizontalFlip": {}}, "t must be a list"),
        ([{"A": {}, "B": {}}], r"t\[0\] must be a mapping with one key"),
        ([{"A": 3}], r"t\[0\] \(A\): parameters must be a mapping, got 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            recipe_entries(bad, "t")


def test_build_transforms_and_instantiate_refuse_unknown_names_and_parameters():
    import albumentations as A

    from pipeline.augment.recipe import build_transforms, instantiate

    [flip, affine] = build_transforms([{"HorizontalFlip": {"p": 1.0}}, {"Affine": {"rotate": [-5, 5]}}])
    assert isinstance(flip, A.HorizontalFlip) and flip.p == 1.0 and isinstance(affine, A.Affine)
    with pytest.raises(ValueError, match=r"t\[0\].Nope"):
        build_transforms([{"Nope": {}}], "t")
    with pytest.raises(ValueError, match=r"at: unknown parameter\(s\) \['flip'\]"):
        instantiate(A.HorizontalFlip, {"flip": 1}, "at")
    with pytest.raises(ValueError, match="at: invalid parameters"):
        instantiate(A.HorizontalFlip, {"p": "often"}, "at")
    assert instantiate(A.HorizontalFlip, {"p": 0.25}, "at").p == 0.25


def test_check_recipe_and_check_augment_build_every_recipe_once():
    from pipeline.augment.recipe import check_augment, check_recipe

    check_recipe("albumentations", [{"HorizontalFlip": {}}])
    check_recipe("torchvision", [{"RandomHorizontalFlip": {}}])
    with pytest.raises(ValueError, match="is not a torchvision.transforms.v2 transform"):
        check_recipe("torchvision", [{"HorizontalFlip": {}}])
    with pytest.raises(ValueError, match="custom_transforms are albumentations transforms"):
        check_recipe("torchvision", [], ["custom_transforms:Invert"])
    from pipeline.config import read_config  # the tree only: the recipes are not built yet

    bad = read_config(None, ['augment.classes={"dog": {"transforms": [{"Nope": {}}]}}']).augment
    with pytest.raises(ValueError, match=r"classes.dog.transforms\[0\].Nope"):
        check_augment(bad)
    check_augment(
        load_config(None, ['augment.classes={"dog": {"transforms": [{"VerticalFlip": {}}]}}']).augment
    )


def test_augmenter_for_picks_the_backend():
    from pipeline.augment.recipe import Augmenter, augmenter_for
    from pipeline.augment.tv import TorchvisionAugmenter

    assert isinstance(augmenter_for("albumentations", [{"HorizontalFlip": {}}]), Augmenter)
    assert isinstance(augmenter_for("torchvision", [{"RandomHorizontalFlip": {}}]), TorchvisionAugmenter)


def test_class_augmenters_use_each_class_recipe_and_a_derived_seed():
    from pipeline.augment.recipe import Augmenter, ClassAugmenters
    from pipeline.core.seeds import derive_seed

    classes = {"dog": {"transforms": [{"VerticalFlip": {"p": 1.0}}]}}
    augment = load_config(
        None,
        ['augment.transforms=[{"HorizontalFlip": {"p": 1.0}}]', f"augment.classes={json.dumps(classes)}"],
    ).augment
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    augmenters = ClassAugmenters(augment, ["cat", "dog"], run_seed=3)
    cat, seed, params = augmenters(image, 0, "cat/a.png", 1)
    assert np.array_equal(cat, image[:, ::-1]) and seed == derive_seed(3, "cat/a.png", 1)
    assert np.array_equal(cat, Augmenter([{"HorizontalFlip": {"p": 1.0}}])(image, seed)[0])
    dog, _, dog_params = augmenters(image, 1, "dog/a.png", 2)
    assert np.array_equal(dog, image[::-1]) and [n for n, _ in json.loads(dog_params)] == ["VerticalFlip"]
    assert augmenters.resampled == 0 and json.loads(params)[0][0] == "HorizontalFlip"


def test_params_json_is_compact_sorted_and_takes_numpy_values_and_odd_keys():
    from pipeline.augment.recipe import params_json

    applied = [("Affine", {"rotate": np.float32(1.5), "shift": np.array([1, 2]), "b": True})]
    assert params_json(applied) == '[["Affine",{"b":true,"rotate":1.5,"shift":[1,2]}]]'
    assert json.loads(params_json([("X", {1: "a", "k": None})])) == [["X", {"1": "a", "k": None}]]
    assert params_json([]) == "[]"
