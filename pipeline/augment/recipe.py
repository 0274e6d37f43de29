"""Classical augmentation: an albumentations recipe written in YAML, per-sample seeds.

A recipe is a list of one-key mappings, transform name to parameters::

    - Affine: {rotate: [-10, 10], translate_percent: [-0.1, 0.1], p: 0.8}
    - OneOf:
        p: 0.3
        transforms:
          - GaussNoise: {}
          - Blur: {blur_limit: 3}

Names are resolved only in the albumentations namespace, or for ``module:Class`` names
listed in ``augment.custom_transforms``, by import (``augment.backend: torchvision`` uses
:mod:`pipeline.augment.tv` instead). A class may have its own recipe. Every augmented image
gets its own seed derived from (run seed, source id, replica), so the result does not
depend on how many workers run or in which order; the seed and the applied parameters
are recorded.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.core.seeds import derive_seed

if TYPE_CHECKING:
    from pipeline.config import AugmentConfig

# Arrays in applied parameters (noise maps, matrices) are summarised above this many values;
# the seed and the recipe replay them exactly.
_MAX_ARRAY_VALUES = 16


def albumentations() -> Any:
    """The albumentations module, imported without its optional PyTorch transforms unless
    torch is loaded already.

    albumentations imports ``albumentations.pytorch`` (``ToTensorV2``) under
    ``suppress(ImportError)``, and that imports torch: about 3.5 s of a 5.5 s import on a
    small machine, paid by every worker process, for transforms whose tensors cannot be
    written as images. The optional import is made to fail as on an install without torch;
    ``import albumentations.pytorch`` still works afterwards.
    """
    if "albumentations" in sys.modules or "torch" in sys.modules:
        import albumentations

        return albumentations
    sys.modules["albumentations.pytorch"] = None  # type: ignore[assignment]  # import fails
    try:
        import albumentations
    finally:
        del sys.modules["albumentations.pytorch"]
    return albumentations


def build_transforms(
    spec: list[dict[str, Any]], where: str = "transforms", custom: tuple[str, ...] | list[str] = ()
) -> list[Any]:
    """Instantiate a recipe, validating names and parameters.

    Names resolve in the albumentations namespace only, but for the ``module:Class``
    names listed in ``custom`` (``augment.custom_transforms``), which are imported.

    Raises:
        ValueError: an entry is malformed, names no albumentations (or allowed custom)
            transform, or has parameters the transform rejects; the message names the entry.
    """
    return [_build_one(name, params, at, tuple(custom)) for name, params, at in recipe_entries(spec, where)]


def recipe_entries(spec: list[dict[str, Any]], where: str) -> list[tuple[str, dict[str, Any], str]]:
    """A recipe's steps as (name, parameters, where-in-the-config), whatever the backend.

    Raises:
        ValueError: the recipe is not a list of one-key mappings to parameter mappings.
    """
    if not isinstance(spec, list):
        raise ValueError(f"{where} must be a list of {{TransformName: {{params}}}} entries")
    entries = []
    for index, entry in enumerate(spec):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{at} must be a mapping with one key, the transform name")
        ((name, params),) = entry.items()
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ValueError(f"{at} ({name}): parameters must be a mapping, got {params!r}")
        entries.append((str(name), dict(params), f"{at}.{name}"))
    return entries


def instantiate(cls: type, params: dict[str, Any], at: str) -> Any:
    """``cls(**params)``, refusing unknown parameters; errors name ``at``.

    Raises:
        ValueError: unknown parameters, or ones the transform rejects.
    """
    accepted = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(params) - set(accepted) - {"self"})
        if unknown:
            raise ValueError(f"{at}: unknown parameter(s) {unknown}")
    try:
        return cls(**params)
    except (ValueError, TypeError, AssertionError) as exc:  # pydantic errors are ValueErrors
        raise ValueError(f"{at}: invalid parameters: {exc}") from None


def _build_one(name: str, params: dict[str, Any], at: str, custom: tuple[str, ...]) -> Any:
    A = albumentations()
    cls = _custom_class(name, at) if name in custom else getattr(A, name, None)
    if cls is None and name == "ToTensorV2":  # left out of the namespace by albumentations()
        cls = importlib.import_module("albumentations.pytorch").ToTensorV2
    is_compose = inspect.isclass(cls) and issubclass(cls, A.BaseCompose)
    if not inspect.isclass(cls) or not (issubclass(cls, A.BasicTransform) or is_compose):
        hint = " (custom transforms must be listed in augment.custom_transforms)" if ":" in name else ""
        raise ValueError(f"{at}: '{name}' is not an albumentations transform{hint}")
    if is_compose:
        params["transforms"] = build_transforms(params.get("transforms", []), f"{at}.transforms", custom)
    return instantiate(cls, params, at)


def _custom_class(name: str, at: str) -> Any:
    module, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{at}: cannot import custom transform '{name}': {exc}") from None


def augmenter_for(backend: str, spec: list[dict[str, Any]], custom: tuple[str, ...] | list[str] = ()):
    """The augmenter of ``augment.backend``: a callable ``(pixels, seed) -> (image, params)``."""
    if backend == "torchvision":
        from pipeline.augment.tv import TorchvisionAugmenter

        return TorchvisionAugmenter(spec)
    return Augmenter(spec, custom)


def check_recipe(
    backend: str,
    spec: list[dict[str, Any]],
    custom: tuple[str, ...] | list[str] = (),
    where: str = "transforms",
) -> None:
    """Build the recipe once, so that bad names and parameters fail when the config loads.

    Raises:
        ValueError: naming the entry (see :func:`build_transforms`).
    """
    if backend == "torchvision":
        from pipeline.augment.tv import build_torchvision

        if custom:
            raise ValueError("custom_transforms are albumentations transforms; backend is torchvision")
        build_torchvision(spec, where)
    else:
        build_transforms(spec, where, custom)


class ClassAugmenters:
    """What a build applies to training images: each class's recipe (built on first use),
    with degenerate outputs drawn again.

    An augmented image whose pixel standard deviation is below ``augment.min_std`` (almost
    constant, e.g. after a crop or rotation left only background) is augmented again with
    the next seed, up to ``MAX_ATTEMPTS`` times; ``resampled`` counts the redraws. The seed
    returned is the one that made the image, so it replays.
    """

    MAX_ATTEMPTS = 10

    def __init__(self, augment: AugmentConfig, class_names: list[str], run_seed: int):
        self._augment = augment
        self._class_names = class_names
        self._run_seed = run_seed
        self._by_label: dict[int, Any] = {}
        self.resampled = 0

    def __call__(
        self, pixels: np.ndarray, label: int, source_id: str, replica: int
    ) -> tuple[np.ndarray, int, Any]:
        """(image, seed, applied params) of augmented copy ``replica`` of a source image."""
        if label not in self._by_label:
            augment = self._augment
            recipe = augment.transforms_for(self._class_names[label])
            self._by_label[label] = augmenter_for(augment.backend, recipe, augment.custom_transforms)
        for attempt in range(self.MAX_ATTEMPTS):
            seed = derive_seed(self._run_seed, source_id, replica if attempt == 0 else f"{replica}/{attempt}")
            image, params = self._by_label[label](pixels, seed)
            if not self._augment.min_std or image.std() >= self._augment.min_std:
                break
            self.resampled += 1
        return image, seed, params


class Augmenter:
    """Applies a recipe to one image with a given seed; returns the image and what was done."""

    def __init__(self, spec: list[dict[str, Any]], custom: tuple[str, ...] | list[str] = ()):
        transforms = build_transforms(spec, custom=custom)
        self._compose = albumentations().Compose(transforms, save_applied_params=True, seed=0)
        # One numpy and one Python generator shared by every transform, reseeded in place per
        # image: albumentations' set_random_seed builds new generators for each transform
        # (about 200 us per image for a three-step recipe, as long as the transforms).
        self._numpy = np.random.Generator(np.random.PCG64(0))
        self._python = random.Random(0)
        self._compose.set_random_state(self._numpy, self._python)

    def __call__(self, pixels: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
        """Augment ``pixels`` deterministically from ``seed``.

        Returns:
            The augmented uint8 image (same shape as the input) and the applied
            parameters as compact JSON.

        Raises:
            PipelineError: the recipe changed the image size or dtype.
        """
        self._reseed(seed)
        result = self._compose(image=pixels)
        out = np.ascontiguousarray(result["image"])
        if out.shape != pixels.shape or out.dtype != np.uint8:
            fix = (
                "add a Resize to the recipe's end to keep the size"
                if out.shape != pixels.shape
                else "leave out ToFloat and Normalize: rows are stored as uint8 pixels"
            )
            raise PipelineError(
                f"augment.transforms changed the image from {pixels.shape} {pixels.dtype} to "
                f"{out.shape} {out.dtype}; {fix}"
            )
        return out, params_json(result.get("applied_transforms", []))

    def _reseed(self, seed: int) -> None:
        # PCG64's 128-bit state and (odd) increment straight from sha256(seed).
        digest = hashlib.sha256(int(seed).to_bytes(8, "big", signed=True)).digest()
        self._numpy.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {
                "state": int.from_bytes(digest[:16], "big"),
                "inc": int.from_bytes(digest[16:], "big") | 1,
            },
            "has_uint32": 0,
            "uinteger": 0,
        }
        self._python.seed(seed)


def params_json(applied: list[tuple[str, dict[str, Any]]]) -> str:
    """JSON of albumentations' applied transforms, as ``[[name, params], ...]``."""
    entries = [[name, params] for name, params in applied]
    try:
        return json.dumps(entries, sort_keys=True, separators=(",", ":"), default=_plain)
    except TypeError:  # keys that are not strings (or not comparable): make them strings
        return json.dumps(_string_keys(entries), sort_keys=True, separators=(",", ":"), default=_plain)


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """What :func:`json.dumps` cannot encode itself: numpy values; anything else by repr."""
    if isinstance(value, np.ndarray):
        if value.size > _MAX_ARRAY_VALUES:
            return {"array": {"shape": list(value.shape), "dtype": str(value.dtype)}}
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def check_augment(augment: AugmentConfig) -> None:
    """Build every recipe of ``augment`` once (the default and each class's own), so that
    bad names and parameters fail when the config loads.

    Raises:
        ValueError: naming the entry (see :func:`build_transforms`).
    """
    check_recipe(augment.backend, augment.transforms, augment.custom_transforms)
    for name, override in augment.classes.items():
        if override.transforms is not None:
            check_recipe(
                augment.backend, override.transforms, augment.custom_transforms, f"classes.{name}.transforms"
            )
