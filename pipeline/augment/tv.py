"""The torchvision backend (``augment.backend: torchvision``): transforms.v2 recipes in YAML.

Same recipe format as albumentations (a list of one-key mappings, name to parameters),
resolved only in ``torchvision.transforms.v2``; the learned policies (AutoAugment with its
CIFAR10/IMAGENET/SVHN policies, RandAugment, TrivialAugmentWide, AugMix) are steps like any
other. torchvision has no per-pipeline seed, so each image is augmented inside
``torch.random.fork_rng`` with the global generator seeded from the image's own seed:
the result depends on that seed alone, in any process and order. torchvision does not
report the parameters it drew; the seed and the recipe (in the manifest) replay them.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from pipeline.augment.recipe import instantiate, recipe_entries
from pipeline.core.errors import PipelineError

_COMPOSITIONS = ("Compose", "RandomApply", "RandomChoice", "RandomOrder")


def build_torchvision(spec: list[dict[str, Any]], where: str = "transforms") -> list[Any]:
    """Instantiate a torchvision v2 recipe, validating names and parameters.

    Raises:
        ValueError: an entry is malformed, names no torchvision v2 transform, or has
            parameters the transform rejects; the message names the entry.
    """
    from torchvision.transforms import v2

    built = []
    for name, params, at in recipe_entries(spec, where):
        cls = getattr(v2, name, None)
        if not inspect.isclass(cls) or not issubclass(cls, v2.Transform):
            raise ValueError(f"{at}: '{name}' is not a torchvision.transforms.v2 transform")
        built.append(_build_one(cls, params, at))
    return built


def _build_one(cls: type, params: dict[str, Any], at: str) -> Any:
    from torchvision.transforms import AutoAugmentPolicy

    if cls.__name__ in _COMPOSITIONS:
        params["transforms"] = build_torchvision(params.get("transforms", []), f"{at}.transforms")
    if cls.__name__ == "AutoAugment" and isinstance(params.get("policy"), str):
        try:
            params["policy"] = AutoAugmentPolicy(params["policy"].lower())
        except ValueError:
            choices = [p.name for p in AutoAugmentPolicy]
            raise ValueError(f"{at}: policy {params['policy']!r} is not one of {choices}") from None
    return instantiate(cls, params, at)


class TorchvisionAugmenter:
    """Applies a torchvision v2 recipe to one uint8 image with a given seed."""

    def __init__(self, spec: list[dict[str, Any]]):
        from torchvision.transforms import v2

        transforms = build_torchvision(spec)
        # An empty recipe keeps the copies as they are (augment.mix may still mix them).
        self._compose = v2.Compose(transforms) if transforms else v2.Identity()

    def __call__(self, pixels: np.ndarray, seed: int) -> tuple[np.ndarray, None]:
        """Augment ``pixels`` (H, W) or (H, W, 3) uint8 deterministically from ``seed``.

        Returns:
            The augmented image, and None: torchvision does not report what it drew.

        Raises:
            PipelineError: the recipe failed on this image, or changed its size or dtype.
        """
        chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        # A copy: staged pixels are read-only views of the bytes read, which torch will not wrap.
        chw = np.array(chw, order="C", copy=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                result = self._compose(torch.from_numpy(chw))
            except (ValueError, TypeError, RuntimeError) as exc:
                message = f"augment.transforms (torchvision) failed on a {pixels.shape} image: {exc}"
                raise PipelineError(message) from None
        if not isinstance(result, torch.Tensor) or result.ndim != 3:
            raise PipelineError(
                f"augment.transforms (torchvision) must return a CHW tensor, got {type(result)}"
            )
        out = result.numpy()
        out = out[0] if pixels.ndim == 2 else out.transpose(1, 2, 0)
        if out.shape != pixels.shape or out.dtype != np.uint8:
            raise PipelineError(
                f"augment.transforms changed the image from {pixels.shape} {pixels.dtype} to "
                f"{out.shape} {out.dtype}; keep the size (add a Resize) and the uint8 dtype"
            )
        return np.ascontiguousarray(out), None
