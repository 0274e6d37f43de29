"""Class-conditional GAN synthesis (``synthesis``): training, the sample filter and the
utility gate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.common import GAN_MAX_SIDE, METRIC_HELP, Device, Metric, Strict, gan_side_ok


class GanTrainConfig(Strict):
    """GAN training: the loss, Adam, EMA generator, DiffAugment."""

    loss: Literal["hinge", "minimax"] = Field(
        default="hinge",
        description="hinge (D: relu margins; G: -D(G(z))) or minimax, the original GAN objective as "
        "DCGAN trains it (D: binary cross-entropy; G: the non-saturating -log sigmoid(D(G(z)))); "
        "minimax is usually paired with betas [0.5, 0.999]",
    )
    steps: int = Field(default=2000, ge=1, description="generator updates")
    lecam: float = Field(
        default=0.0,
        ge=0.0,
        description="weight of the LeCam regulariser (Tseng et al. 2021) in D's loss, which keeps D's "
        "scores near moving averages of the other side's; 0: off (the paper used 0.3 with DiffAugment)",
    )
    batch_size: int = Field(
        default=64,
        ge=2,
        description="images per batch (real batches and generator updates alike)",
    )
    width: int = Field(default=64, ge=8, description="base channel count of G and D")
    resolution: int | None = Field(
        default=None,
        description=f"square side the GAN trains at, b x 2^k with b in 4..7 (8 to {GAN_MAX_SIDE}: "
        "..., 64, 96, 128, 192, 256); its samples are resized to the data's size. null: the data's "
        "own side when square and of that form, else the next power of two (an error above "
        f"{GAN_MAX_SIDE}: set this, or source.resize)",
    )
    fit: Literal["stretch", "crop", "pad"] = Field(
        default="stretch",
        description="how non-square images meet the square resolution, both ways: stretch (each side "
        "scaled; samples scaled back), pad (letterboxed on black; samples lose the bars), crop (the "
        "centre square; samples cover the image size, cut at the centre)",
    )
    z_dim: int = Field(default=64, ge=2, description="latent size")
    lr_g: float = Field(default=2e-4, gt=0, description="generator Adam learning rate")
    lr_d: float = Field(default=2e-4, gt=0, description="discriminator Adam learning rate")
    betas: tuple[float, float] = Field(default=(0.0, 0.9), description="Adam betas of both optimizers")
    d_steps: int = Field(default=1, ge=1, description="discriminator updates per generator update")
    ema_decay: float = Field(
        default=0.999,
        ge=0.0,
        lt=1.0,
        description="decay of the EMA generator that is sampled (warm-up: min(decay, (1+t)/(10+t)))",
    )
    ema_start: int = Field(
        default=0, ge=0, description="step from which the EMA generator averages (before: a copy of G)"
    )
    eval_every: int = Field(default=500, ge=1, description="steps between best-checkpoint checks")
    selection_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="share of the GAN's images (stratified, seeded) held out from it and from the "
        "reference classifier to choose the best checkpoint on (lowest FD against them); 0: chosen "
        "against the training images, which rewards memorising",
    )
    device: Device = Field(default="auto", description="where training runs (auto: cuda, mps, cpu)")
    processes: int = Field(
        default=1,
        ge=1,
        description="processes that train together (data-parallel, torchrun on this machine: one per "
        "GPU, or CPU processes with gloo); batch_size is the global batch, split among them",
    )
    compile: Literal["default", "reduce-overhead"] | None = Field(
        default=None, description="torch.compile mode for G and D (reduce-overhead: CUDA graphs)"
    )
    ada_target: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="adaptive augmentation (ADA, Karras et al. 2020): each image gets DiffAugment with a "
        "probability p that rises while the mean sign of D's scores on real images is above this target "
        "(D overfits) and falls below it; 0.6 in the paper. null: every image augmented",
    )
    ada_kimg: float = Field(
        default=100.0,
        gt=0.0,
        description="thousands of real images over which adaptive augmentation can move p from 0 to 1",
    )
    diffaug: list[Literal["color", "translation", "cutout"]] | None = Field(
        default=None, description="DiffAugment ops; null: translation, colour for RGB, cutout from 16x16 up"
    )

    @field_validator("resolution")
    @classmethod
    def _resolution_grows(cls, value: int | None) -> int | None:
        if value is not None and not gan_side_ok(value):
            raise ValueError(
                f"synthesis.train.resolution {value} is not a side the networks grow to: b x 2^k with "
                f"b in 4..7, 8 to {GAN_MAX_SIDE} (e.g. 32, 64, 96, 128, 192, 256)"
            )
        return value


class FilterConfig(Strict):
    """Which generated samples are kept."""

    min_confidence: float = Field(
        default=0.0, ge=0.0, le=1.0, description="reference-classifier probability of the intended class"
    )
    label_consistent: bool = Field(
        default=False,
        description="keep a sample only if the reference classifier's top class is the class it was "
        "generated for (label-consistent filtering)",
    )
    reject_d_fraction: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of each class's lowest discriminator scores dropped"
    )
    drs: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="discriminator rejection sampling (Azadi et al. 2019): keep a candidate with "
        "probability sigmoid(F), its density ratio to real images estimated from D's score; the "
        "value is γ's quantile of F over the class's candidates (a high one such as 0.95, as in the "
        "paper; lower keeps more); unset: off",
    )
    max_oversample: float = Field(
        default=10.0,
        ge=1.0,
        description="candidates generated per wanted sample at most; a class the filter rejects "
        "more often stays short (the manifest says which)",
    )
    fill_short: bool = Field(
        default=False,
        description="top a class left short up with its most confident rejected candidates "
        "(the manifest counts them per class)",
    )


class GateConfig(Strict):
    """Publish synthetic samples only if they help a classifier on held-out real data."""

    enabled: bool = Field(
        default=True, description="off: publish the filtered samples without testing that they help"
    )
    ratios: list[float] = Field(
        default_factory=lambda: [0.5, 1.0],
        description="synthetic:real ratios tried (each capped by per_class; with target_per_class, "
        "shares of each class's fill)",
    )
    seeds: int = Field(default=3, ge=1, description="classifier seeds per ratio and for the baseline")
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of the real training images held out from GAN training to judge the gain "
        "(stratified, seeded)",
    )
    min_gain: float = Field(
        default=0.0, description="the gain's interval must lie above this to keep synthetic data"
    )
    confidence: float = Field(
        default=0.95,
        gt=0.0,
        lt=1.0,
        description="confidence of the gain's interval, paired over classifier seeds and validation "
        "images (Bonferroni-adjusted for the ratios tried)",
    )
    classifier_epochs: int = Field(
        default=30,
        ge=1,
        description="every arm trains for as many steps as this many epochs of the largest arm take",
    )
    classifier_grid: int = Field(
        default=1,
        ge=1,
        le=4,
        description="the gate's classifier's head reads its last feature map average-pooled to "
        "grid x grid (1: global pooling; 2: a stronger learner, as evaluate.grid)",
    )
    metric: Metric = Field(default="accuracy", description=METRIC_HELP)
    per_class: bool = Field(
        default=False,
        description="decide for each class on its own validation images: a class keeps the synthetic "
        "rows of the ratio whose gain on them lies above min_gain with confidence (Bonferroni over "
        "classes and ratios), so the classes the GAN helps get rows and the others none",
    )

    @field_validator("ratios")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(r <= 0 for r in value):
            raise ValueError(f"ratios must be a non-empty list of positive numbers, got {value}")
        return value


class SynthesisConfig(Strict):
    """Class-conditional GAN synthesis of extra training rows (off by default)."""

    enabled: bool = Field(default=False, description="train (or load) a GAN and add synthetic training rows")
    per_class: int | None = Field(default=None, ge=1, description="synthetic rows per class")
    ratio: float | None = Field(
        default=None, gt=0.0, description="synthetic rows per class as a multiple of its real count"
    )
    target_per_class: int | None = Field(
        default=None,
        ge=1,
        description="fill each class with synthetic rows up to this many real + synthetic rows (a class "
        "of n real images gets max(0, T - n); none without real images), for long-tailed classes; with "
        "augment.target_per_class too, both fill (beside each other). The gate's ratios are then shares "
        "of each class's fill",
    )
    truncation: float | None = Field(
        default=None,
        gt=0.0,
        description="resample latents beyond this |z| (off by default: measured, it lowered both the "
        "precision and the recall of a small generator, bench/README.md)",
    )
    checkpoint: Path | None = Field(default=None, description="use this generator instead of training")
    soft_labels: bool = Field(
        default=False,
        description="synthetic rows carry the reference classifier's class probabilities as soft_label "
        "(knowledge distillation, Hinton et al. 2015), which the gate and expand evaluate train on; "
        "every row of the version gets the column (one-hot for real and augmented rows)",
    )
    weight: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="loss weight of each synthetic row when a classifier trains on the version (the gate, "
        "expand evaluate, your own training through the readers); real and augmented rows weigh 1. Below "
        "1, every row of the version gets a weight column",
    )
    features: str = Field(
        default="classifier", description="feature extractor for metrics: 'classifier' or 'module:function'"
    )
    device: Device = Field(
        default="auto",
        description="where sampling, discriminator scores and the classifiers run (auto: cuda, mps, cpu)",
    )
    train: GanTrainConfig = Field(default=GanTrainConfig(), description="GAN training")
    filter: FilterConfig = Field(default=FilterConfig(), description="which generated samples are kept")
    gate: GateConfig = Field(
        default=GateConfig(), description="the utility gate: keep synthetic rows only if they help"
    )

    @model_validator(mode="after")
    def _count_rule(self) -> SynthesisConfig:
        counts = {"per_class": self.per_class, "ratio": self.ratio, "target_per_class": self.target_per_class}
        chosen = [key for key, value in counts.items() if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"set one of per_class, ratio and target_per_class, not {' and '.join(chosen)}")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ValueError(f"synthesis.checkpoint does not exist: {self.checkpoint}")
        if self.features != "classifier" and ":" not in self.features:
            raise ValueError(f"features must be 'classifier' or 'module:function', got {self.features!r}")
        return self

    def count_for(self, real_count: int) -> int:
        """Synthetic rows wanted for a class with ``real_count`` training images."""
        if self.per_class is not None:
            return self.per_class
        if self.target_per_class is not None:
            return max(0, self.target_per_class - real_count) if real_count else 0
        return int(math.floor((self.ratio if self.ratio is not None else 1.0) * real_count + 0.5))

    def ratio_basis(self, real_count: int) -> int:
        """What a gate ratio multiplies for a class of ``real_count`` training images: its
        fill with ``target_per_class``, else its real count."""
        return self.count_for(real_count) if self.target_per_class is not None else real_count

    def most_published(self, real_count: int) -> int:
        """The most synthetic rows a class with ``real_count`` training images can get: its
        :meth:`count_for`, and with the gate on, no more than its largest ratio allows."""
        most = self.count_for(real_count)
        if self.gate.enabled:
            most = min(most, int(math.floor(max(self.gate.ratios) * self.ratio_basis(real_count) + 0.5)))
        return most
