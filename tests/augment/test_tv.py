"""The torchvision v2 backend: recipes in YAML, policies, determinism from the seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.augment.tv import TorchvisionAugmenter
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.version.manifest import load_manifest

POLICIES = [
    {"AutoAugment": {"policy": "CIFAR10"}},
    {"AutoAugment": {"policy": "imagenet"}},
    {"AutoAugment": {"policy": "SVHN"}},
    {"RandAugment": {"num_ops": 2, "magnitude": 9}},
    {"TrivialAugmentWide": {}},
    {"AugMix": {"severity": 3}},
]


TUTORIAL = [
    {"RandomRotation": {"degrees": 15}},
    {"RandomHorizontalFlip": {}},
    {"RandomAffine": {"degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": 10}},
]


@pytest.mark.parametrize("step", POLICIES, ids=lambda s: json.dumps(s))
@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 3), (32, 32), (64, 64, 3)])
def test_policies_run_on_gray_and_colour_images(step, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    augment = TorchvisionAugmenter([step])
    out, params = augment(image, 7)
    assert out.shape == image.shape and out.dtype == np.uint8 and params is None
    assert np.array_equal(augment(image, 7)[0], out)


def test_output_depends_on_the_seed_only():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first, other = TorchvisionAugmenter(TUTORIAL), TorchvisionAugmenter(TUTORIAL)
    outputs = [first(image, s)[0] for s in (1, 2, 3, 1)]
    assert np.array_equal(outputs[0], outputs[3]) and not np.array_equal(outputs[0], outputs[1])
    import torch

    torch.manual_seed(12345)  # the global generator's state does not matter, and is kept
    before = torch.get_rng_state()
    assert np.array_equal(other(image, 2)[0], outputs[1])
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(
    "recipe, message",
    [
        ([{"NoSuch": {}}], "'NoSuch' is not a torchvision.transforms.v2 transform"),
        ([{"AutoAugment": {"policy": "mnist"}}], "policy 'mnist' is not one of"),
        ([{"RandomRotation": {"degreez": 3}}], r"unknown parameter\(s\) \['degreez'\]"),
        ([{"RandomApply": {"transforms": [{"Nope": {}}], "p": 0.5}}], r"RandomApply.transforms\[0\].Nope"),
    ],
)
def test_recipes_are_checked_when_the_config_loads(recipe, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["augment.backend=torchvision", f"augment.transforms={json.dumps(recipe)}"])


def test_a_recipe_that_changes_the_size_is_refused():
    augment = TorchvisionAugmenter([{"RandomCrop": {"size": 4}}])
    with pytest.raises(PipelineError, match="changed the image"):
        augment(np.zeros((8, 8), np.uint8), 0)


def test_an_empty_recipe_keeps_the_image():
    """As with albumentations: copies stay as they are (augment.mix may still mix them)."""
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out, _ = TorchvisionAugmenter([])(image, 3)
    assert np.array_equal(out, image)


def test_tutorial_recipe_builds_the_same_bytes_on_one_or_two_workers(tiny_config, tmp_path):
    overrides = ["augment.backend=torchvision", f"augment.transforms={json.dumps(TUTORIAL + POLICIES[:1])}"]
    one, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'one'}"))
    two, _ = build(tiny_config(*overrides, f"output.root={tmp_path / 'two'}", "runner.workers=2"))
    files = {f.path: f.sha256 for f in load_manifest(one).files}
    assert one.name == two.name and files == {f.path: f.sha256 for f in load_manifest(two).files}
    assert load_manifest(one).splits["train"].by_origin["augmented"] > 0


def test_build_torchvision_instantiates_v2_transforms_and_names_bad_entries():
    from torchvision.transforms import v2

    from pipeline.augment.tv import build_torchvision

    [rotate, flip] = build_torchvision([{"RandomRotation": {"degrees": 15}}, {"RandomHorizontalFlip": None}])
    assert isinstance(rotate, v2.RandomRotation) and list(rotate.degrees) == [-15.0, 15.0]
    assert isinstance(flip, v2.RandomHorizontalFlip)
    with pytest.raises(ValueError, match=r"augment.transforms\[0\].functional: 'functional' is not a"):
        build_torchvision([{"functional": {}}], "augment.transforms")  # a module of v2, not a transform
    with pytest.raises(ValueError, match=r"t\[0\].RandomRotation: unknown parameter"):
        build_torchvision([{"RandomRotation": {"degreez": 3}}], "t")
