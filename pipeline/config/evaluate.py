"""How ``expand evaluate`` measures a version (``evaluate``): the reference classifier's
seeds and epochs, the low-data protocol and the device. Not part of a version's content."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.config.common import DEVICES, Device, Strict


def _below_one(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 1


class EvaluateConfig(Strict):
    """How ``expand evaluate`` trains and tests the reference classifier on a version. Its
    options set these keys, and every report records them (its ``settings``); they never
    change a version."""

    seeds: int = Field(
        default=3, ge=1, description="classifier trainings per subset, with seeds seed, seed + 1, ..."
    )
    epochs: int = Field(default=30, ge=1, description="epochs of each reference-classifier training")
    real_per_class: int | None = Field(
        default=None,
        ge=1,
        description="low-data protocol: keep K real images per class (seeded pick) and only their "
        "augmented copies; synthetic rows stay as published; none: every row",
    )
    seed: int = Field(
        default=0, description="the first classifier seed; also ranks the low-data protocol's pick"
    )
    device: Device = Field(default="auto", description="where the classifiers train (auto: cuda, mps, cpu)")
    grid: int = Field(
        default=2,
        ge=1,
        le=4,
        description="the reference classifier's head reads its last feature map average-pooled to "
        "grid x grid (1: global pooling, the head of the GAN's metrics and, by default, the gate); "
        "2, the default, was the stronger learner on validation images of Fashion-MNIST, the "
        "CIFAR-10 subset and the digits (100 real images per class, bench/README.md)",
    )

    # Before pydantic's own checks, so that the messages stay those `expand evaluate` has always given.
    @model_validator(mode="before")
    @classmethod
    def _counts_at_least_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            seeds = data.get("seeds", cls.model_fields["seeds"].default)
            epochs = data.get("epochs", cls.model_fields["epochs"].default)
            if _below_one(seeds) or _below_one(epochs):
                raise ValueError(f"evaluation needs seeds >= 1 and epochs >= 1, got {seeds}, {epochs}")
        return data

    @field_validator("real_per_class", mode="before")
    @classmethod
    def _real_at_least_one(cls, value: Any) -> Any:
        if _below_one(value):
            raise ValueError(f"real_per_class must be at least 1, got {value}")
        return value

    @field_validator("device", mode="before")
    @classmethod
    def _known_device(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in DEVICES:
            allowed = f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]}"
            raise ValueError(f"device must be {allowed}, got {value!r}")
        return value

    @property
    def stem(self) -> str:
        """The report files' name: ``evaluation``, or ``evaluation-kK`` under the low-data protocol."""
        return report_stem(self.real_per_class)


def report_stem(real_per_class: int | None) -> str:
    """The name of an evaluation's report files: ``evaluation``, ``evaluation-kK`` with
    ``real_per_class`` K."""
    return "evaluation" + (f"-k{real_per_class}" if real_per_class else "")
