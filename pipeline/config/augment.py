"""Classical augmentation of the training split (``augment``): the counts, the recipe,
per-class overrides, mixing and tuning."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.common import METRIC_HELP, Metric, Strict

_COPIES_HELP = (
    "augmented copies per training image: every image gets floor(k) or ceil(k) "
    "(round(k x real) per class); exclusive with target_per_class"
)
_EPOCHS_HELP = "epochs of each reference-classifier training"
_TARGET_HELP = (
    "fill each class's training split up to this many rows, real included; exclusive with copies_per_image"
)


class ClassAugmentConfig(Strict):
    """One named class's own augmentation; what it leaves unset follows the dataset's."""

    copies_per_image: float | None = Field(default=None, ge=0.0, description=_COPIES_HELP)
    target_per_class: int | None = Field(default=None, ge=1, description=_TARGET_HELP)
    transforms: list[dict[str, Any]] | None = Field(default=None, description="replaces the recipe")

    @model_validator(mode="after")
    def _one_count_rule(self) -> ClassAugmentConfig:
        if self.copies_per_image is not None and self.target_per_class is not None:
            raise ValueError("set either copies_per_image or target_per_class, not both")
        return self


class MixConfig(Strict):
    """Offline MixUp / CutMix of augmented copies, with soft labels (see :mod:`pipeline.augment.mixing`)."""

    method: Literal["mixup", "cutmix", "either"] = Field(
        default="mixup", description="how a copy is mixed with its partner; 'either': one of the two per copy"
    )
    alpha: float = Field(
        default=0.4, gt=0.0, description="the mixing weight is drawn from Beta(alpha, alpha)"
    )
    fraction: float = Field(default=0.5, gt=0.0, le=1.0, description="share of the augmented copies mixed")


class TuneConfig(Strict):
    """Choose the augmentation by validation accuracy (or balanced accuracy) before writing (see
    :mod:`pipeline.augment.tune`)."""

    enabled: bool = Field(
        default=False, description="score the candidates on held-out real training images before writing"
    )
    strengths: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 1.5],
        description="magnitude scales tried on the recipe's ranges (rotation, translation, scale, colour)",
    )
    copies: list[float] = Field(
        default_factory=list, description="copies_per_image values tried; empty: the configured count"
    )
    policies: list[Literal["TrivialAugmentWide", "RandAugment", "AutoAugment", "AugMix"]] = Field(
        default_factory=lambda: ["TrivialAugmentWide"],
        description="torchvision policies tried as recipes of their own",
    )
    seeds: int = Field(default=2, ge=1, description="classifier seeds per candidate")
    classifier_epochs: int = Field(default=15, ge=1, description=_EPOCHS_HELP)
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of the real training images held out to score the candidates (stratified, seeded)",
    )
    tie_margin: float = Field(
        default=0.0,
        ge=0.0,
        description="candidates this close to the best mean count as ties: fewest rows wins",
    )
    budget_seconds: float | None = Field(
        default=None, gt=0.0, description="start no new candidate after this many seconds; none: no limit"
    )
    max_candidates: int = Field(
        default=12,
        ge=1,
        description="candidates scored at most ('none' first); the rest are listed as left out",
    )
    max_per_class: int | None = Field(
        default=None,
        ge=1,
        description="fit images per class the candidates are scored with (seeded pick); none: all",
    )
    metric: Metric = Field(default="accuracy", description=METRIC_HELP)

    @field_validator("strengths", "copies")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError(f"values must be positive, got {value}")
        return value


class AugmentConfig(Strict):
    """Classical augmentation of the training split.

    Exactly one of ``copies_per_image`` (every training image gets floor(k) or ceil(k)
    augmented copies) and ``target_per_class`` (each class is filled up to this many
    training rows, real included) may be set; neither means no augmentation.
    """

    copies_per_image: float | None = Field(default=None, ge=0.0, description=_COPIES_HELP)
    target_per_class: int | None = Field(default=None, ge=1, description=_TARGET_HELP)
    backend: Literal["albumentations", "torchvision"] = Field(
        default="albumentations", description="library whose transforms the recipe names"
    )
    transforms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the recipe: a list of {TransformName: {argument: value}}, applied in order",
    )
    custom_transforms: list[str] = Field(
        default_factory=list,
        description="'module:Class' transforms (albumentations subclasses) a recipe may name; "
        "nothing outside albumentations is imported otherwise",
    )
    min_std: float = Field(
        default=0.0,
        ge=0.0,
        description="an augmented image whose pixel standard deviation (0-255 scale) is below this is "
        "drawn again with the next seed (up to 10 times); 0: off",
    )
    classes: dict[str, ClassAugmentConfig] = Field(
        default_factory=dict, description="per-class overrides of the counts and the recipe, by class name"
    )
    mix: MixConfig | None = Field(
        default=None,
        description="mix a share of the augmented copies with another training image (MixUp/CutMix); "
        "adds a soft_label column to every row. Off when unset",
    )
    tune: TuneConfig = Field(
        default=TuneConfig(),
        description="choose the recipe and count by validation accuracy (off by default)",
    )

    @model_validator(mode="after")
    def _one_count_rule(self) -> AugmentConfig:
        if self.copies_per_image is not None and self.target_per_class is not None:
            raise ValueError("set either copies_per_image or target_per_class, not both")
        return self

    @property
    def enabled(self) -> bool:
        """Whether any class gets augmented copies (by the dataset's count or its own)."""
        counts = [(self.copies_per_image, self.target_per_class)]
        counts += [(c.copies_per_image, c.target_per_class) for c in self.classes.values()]
        return any(bool(copies) or target is not None for copies, target in counts)

    def copies_for(self, name: str, real: int) -> int:
        """The augmented copies class ``name`` gets from its ``real`` training images, by its
        own count if it sets one: round(k * real) with ``copies_per_image`` k, max(0, T -
        real) with ``target_per_class`` T, none with neither."""
        copies, target = self.copies_per_image, self.target_per_class
        override = self.classes.get(name)
        if override and (override.copies_per_image is not None or override.target_per_class is not None):
            copies, target = override.copies_per_image, override.target_per_class
        if target is not None:
            return max(0, target - real)
        return int(math.floor((copies or 0.0) * real + 0.5))

    def tuned_counts(self) -> list[tuple[float | None, int | None]]:
        """The (copies_per_image, target_per_class) pairs ``augment.tune`` tries:
        ``tune.copies``, else the configured count, else one copy per image."""
        if self.tune.copies:
            return [(c, None) for c in self.tune.copies]
        if self.copies_per_image is None and self.target_per_class is None:
            return [(1.0, None)]
        return [(self.copies_per_image, self.target_per_class)]

    def transforms_for(self, name: str) -> list[dict[str, Any]]:
        """The recipe of class ``name``: its own, if it has one."""
        override = self.classes.get(name)
        return override.transforms if override and override.transforms is not None else self.transforms
