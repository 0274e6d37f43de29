"""The one configuration tree. Every default lives here; YAML files hold only what differs.

Loading goes through :func:`load_config`, which turns every validation problem into a
:class:`~pipeline.core.errors.ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.core.errors import ConfigError

SOURCE_KINDS = ("digits", "imagefolder", "parquet", "cifar10", "mnist-idx")
MAX_RESIZE = 4096  # pixels per side of source.resize
# A source.path with one of these is an archive, extracted before it is read.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
GAN_MAX_SIDE = 64  # the largest image side GAN synthesis trains on
# shard_size 'auto': this many shards, each within these row bounds.
AUTO_SHARDS = 64
AUTO_SHARD_ROWS = (1000, 5000)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
Device = Literal["auto", "cpu", "cuda", "mps"]  # auto: cuda, then mps, then cpu
DEVICES: tuple[str, ...] = get_args(Device)
# How a stage compares classifiers on validation images: every image alike, or every class.
Metric = Literal["accuracy", "balanced_accuracy"]
_METRIC_HELP = "accuracy, or balanced_accuracy: the mean of the per-class accuracies (unbalanced classes)"


def metric_name(metric: str) -> str:
    """A metric as reports name it: "accuracy", "balanced accuracy"."""
    return metric.replace("_", " ")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the images come from."""

    kind: Literal["digits", "imagefolder", "parquet", "cifar10", "mnist-idx"] = "digits"
    path: Path | None = None
    class_names: list[str] | None = Field(
        default=None, description="Names for integer labels of array sources (MNIST IDX, CIFAR)."
    )
    license: str | None = Field(
        default=None, description="The source's licence (SPDX id or URL), for the dataset card and Croissant."
    )
    citation: str | None = Field(default=None, description="How to cite the source (e.g. BibTeX).")
    on_bad_image: Literal["error", "skip"] = Field(
        default="error",
        description="an unreadable or undecodable image, one of another size, a Parquet row without "
        "image or with an invalid label, an empty class folder: stop naming it, or skip it "
        "(listed in the manifest with the reason)",
    )
    duplicates: Literal["keep", "drop"] = Field(
        default="keep",
        description="images with identical pixels: keep them all (reported in the manifest), or keep "
        "the first by source id",
    )
    follow_symlinks: bool = Field(
        default=False, description="image folders: follow symbolic links that lead outside source.path"
    )
    resize: tuple[int, int] | None = Field(
        default=None,
        description="[height, width]: every image is resized to this size as it is ingested "
        "(source.resize_mode); none: every image must have the first one's size",
    )
    resize_mode: Literal["crop", "pad", "stretch"] = Field(
        default="crop",
        description="crop: scale to cover the size and cut the centre; pad: scale to fit inside it "
        "and centre on black; stretch: scale each side (the aspect ratio changes)",
    )

    image_column: str | None = Field(
        default=None, description="Parquet: the image column (default: image, else img)"
    )
    label_column: str | None = Field(
        default=None, description="Parquet: the label column (default: label, else labels)"
    )

    @property
    def resizing(self) -> tuple[tuple[int, int], str] | None:
        """(``resize``, ``resize_mode``), or None when images keep their size."""
        return (self.resize, self.resize_mode) if self.resize else None

    @field_validator("resize")
    @classmethod
    def _sides_in_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= MAX_RESIZE for side in value):
            raise ValueError(f"source.resize sides must be 1 to {MAX_RESIZE} pixels, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _path_matches_kind(self) -> SourceConfig:
        if self.kind != "parquet" and (self.image_column or self.label_column):
            key = "image_column" if self.image_column else "label_column"
            raise ValueError(f"source.{key} is used only with source kind 'parquet'")
        if self.kind == "digits":
            if self.path is not None:
                raise ValueError("source.path is not used with kind 'digits'; remove it")
            return self
        if self.path is None:
            raise ValueError(f"source.path is required for source kind '{self.kind}'")
        if not self.path.exists():
            raise ValueError(f"source.path does not exist: {self.path}")
        return self


class SplitConfig(_Strict):
    """How a test split is carved from the training images when the source has no test split
    (stratified, seeded)."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


class ClassAugmentConfig(_Strict):
    """One named class's own augmentation; what it leaves unset follows the dataset's."""

    copies_per_image: float | None = Field(default=None, ge=0.0)
    target_per_class: int | None = Field(default=None, ge=1)
    transforms: list[dict[str, Any]] | None = Field(default=None, description="replaces the recipe")

    @model_validator(mode="after")
    def _one_count_rule(self) -> ClassAugmentConfig:
        if self.copies_per_image is not None and self.target_per_class is not None:
            raise ValueError("set either copies_per_image or target_per_class, not both")
        return self


class MixConfig(_Strict):
    """Offline MixUp / CutMix of augmented copies, with soft labels (see :mod:`pipeline.augment.mixing`)."""

    method: Literal["mixup", "cutmix", "either"] = Field(
        default="mixup", description="how a copy is mixed with its partner; 'either': one of the two per copy"
    )
    alpha: float = Field(
        default=0.4, gt=0.0, description="the mixing weight is drawn from Beta(alpha, alpha)"
    )
    fraction: float = Field(default=0.5, gt=0.0, le=1.0, description="share of the augmented copies mixed")


class TuneConfig(_Strict):
    """Choose the augmentation by validation accuracy (or balanced accuracy) before writing (see
    :mod:`pipeline.augment.tune`)."""

    enabled: bool = False
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
    classifier_epochs: int = Field(default=15, ge=1)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    tie_margin: float = Field(
        default=0.0,
        ge=0.0,
        description="candidates this close to the best mean count as ties: fewest rows wins",
    )
    budget_seconds: float | None = Field(
        default=None, gt=0.0, description="start no new candidate after this many seconds; none: no limit"
    )
    max_candidates: int = Field(default=12, ge=1)
    max_per_class: int | None = Field(
        default=None,
        ge=1,
        description="fit images per class the candidates are scored with (seeded pick); none: all",
    )
    metric: Metric = Field(default="accuracy", description=_METRIC_HELP)

    @field_validator("strengths", "copies")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError(f"values must be positive, got {value}")
        return value


class AugmentConfig(_Strict):
    """Classical augmentation of the training split.

    Exactly one of ``copies_per_image`` (every training image gets floor(k) or ceil(k)
    augmented copies) and ``target_per_class`` (each class is filled up to this many
    training rows, real included) may be set; neither means no augmentation.
    """

    copies_per_image: float | None = Field(default=None, ge=0.0)
    target_per_class: int | None = Field(default=None, ge=1)
    backend: Literal["albumentations", "torchvision"] = Field(
        default="albumentations", description="library whose transforms the recipe names"
    )
    transforms: list[dict[str, Any]] = Field(default_factory=list)
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
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _one_count_rule(self) -> AugmentConfig:
        if self.copies_per_image is not None and self.target_per_class is not None:
            raise ValueError("set either copies_per_image or target_per_class, not both")
        return self

    @property
    def enabled(self) -> bool:
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


class GanTrainConfig(_Strict):
    """GAN training: hinge loss, Adam, EMA generator, DiffAugment."""

    steps: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=64, ge=2)
    width: int = Field(default=64, ge=8, description="base channel count of G and D")
    z_dim: int = Field(default=64, ge=2)
    lr_g: float = Field(default=2e-4, gt=0)
    lr_d: float = Field(default=2e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    d_steps: int = Field(default=1, ge=1)
    ema_decay: float = Field(default=0.999, ge=0.0, lt=1.0)
    ema_start: int = Field(default=0, ge=0)
    eval_every: int = Field(default=500, ge=1, description="steps between best-checkpoint checks")
    device: Device = "auto"
    compile: Literal["default", "reduce-overhead"] | None = Field(
        default=None, description="torch.compile mode for G and D (reduce-overhead: CUDA graphs)"
    )
    diffaug: list[Literal["color", "translation", "cutout"]] | None = Field(
        default=None, description="None: translation, colour for RGB, cutout from 16x16 up"
    )


class FilterConfig(_Strict):
    """Which generated samples are kept."""

    min_confidence: float = Field(
        default=0.0, ge=0.0, le=1.0, description="reference-classifier probability of the intended class"
    )
    reject_d_fraction: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of each class's lowest discriminator scores dropped"
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


class GateConfig(_Strict):
    """Publish synthetic samples only if they help a classifier on held-out real data."""

    enabled: bool = True
    ratios: list[float] = Field(
        default_factory=lambda: [0.5, 1.0],
        description="synthetic:real ratios tried (each capped by per_class)",
    )
    seeds: int = Field(default=3, ge=1)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    min_gain: float = Field(default=0.0, description="accuracy gain required to keep synthetic data")
    min_gain_se: float = Field(
        default=1.0,
        ge=0.0,
        description="the gain must also exceed this many of its standard errors "
        "over the validation images (0: off)",
    )
    classifier_epochs: int = Field(default=30, ge=1)
    metric: Metric = Field(default="accuracy", description=_METRIC_HELP)

    @field_validator("ratios")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(r <= 0 for r in value):
            raise ValueError(f"ratios must be a non-empty list of positive numbers, got {value}")
        return value


class SynthesisConfig(_Strict):
    """Class-conditional GAN synthesis of extra training rows (off by default)."""

    enabled: bool = False
    per_class: int | None = Field(default=None, ge=1, description="synthetic rows per class")
    ratio: float | None = Field(
        default=None, gt=0.0, description="synthetic rows per class as a multiple of its real count"
    )
    truncation: float | None = Field(
        default=None, gt=0.0, description="resample latents beyond this |z| (off: keeps diversity)"
    )
    checkpoint: Path | None = Field(default=None, description="use this generator instead of training")
    features: str = Field(
        default="classifier", description="feature extractor for metrics: 'classifier' or 'module:function'"
    )
    device: Device = Field(
        default="auto",
        description="where sampling, discriminator scores and the classifiers run (auto: cuda, mps, cpu)",
    )
    train: GanTrainConfig = GanTrainConfig()
    filter: FilterConfig = FilterConfig()
    gate: GateConfig = GateConfig()

    @model_validator(mode="after")
    def _count_rule(self) -> SynthesisConfig:
        if self.per_class is not None and self.ratio is not None:
            raise ValueError("set either per_class or ratio, not both")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ValueError(f"synthesis.checkpoint does not exist: {self.checkpoint}")
        if self.features != "classifier" and ":" not in self.features:
            raise ValueError(f"features must be 'classifier' or 'module:function', got {self.features!r}")
        return self

    def count_for(self, real_count: int) -> int:
        """Synthetic rows wanted for a class with ``real_count`` training images."""
        if self.per_class is not None:
            return self.per_class
        return int(math.floor((self.ratio if self.ratio is not None else 1.0) * real_count + 0.5))

    def most_published(self, real_count: int) -> int:
        """The most synthetic rows a class with ``real_count`` training images can get: its
        :meth:`count_for`, and with the gate on, no more than its largest ratio allows."""
        most = self.count_for(real_count)
        if self.gate.enabled:
            most = min(most, int(math.floor(max(self.gate.ratios) * real_count + 0.5)))
        return most


class OutputConfig(_Strict):
    """Where and how the version is written."""

    root: Path = Path("output")
    format: Literal["parquet", "imagefolder"] = "parquet"
    shard_size: int | str = Field(
        default="auto",
        description="Rows per shard (int), a byte size such as '64MB', or 'auto': "
        f"{AUTO_SHARDS} shards' worth of rows, within {AUTO_SHARD_ROWS[0]}..{AUTO_SHARD_ROWS[1]}",
    )
    image_format: Literal["png", "webp"] = Field(
        default="png", description="lossless encoding of every image: PNG, or WebP lossless (smaller, slower)"
    )
    png_compress_level: int = Field(default=6, ge=0, le=9)
    lock_timeout: float = Field(
        default=0.0, ge=0.0, description="seconds to wait while another run holds this dataset's lock"
    )
    remote: str | None = Field(
        default=None,
        description="fsspec URL (s3://bucket/path, gs://, az://, ...) each published version is also "
        "uploaded to, under <remote>/<name>/<version id>/; the backend's package must be installed",
    )

    @field_validator("remote")
    @classmethod
    def _remote_known(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" not in value:
            raise ValueError(f"{value!r} is not a URL (protocol://path); output.root is the local folder")
        try:
            fsspec.get_filesystem_class(value.split("://", 1)[0])
        except (ImportError, ValueError) as exc:
            raise ValueError(f"{value}: {exc}") from None
        return value

    @field_validator("shard_size")
    @classmethod
    def _shard_size_valid(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"shard_size must be at least 1 row, got {value}")
            return value
        if value != "auto":
            parse_size(value)
        return value

    def shard_limit(self, total_rows: int) -> tuple[Literal["rows", "bytes"], int]:
        """The shard size as ('rows', n) or ('bytes', n), for a version of ``total_rows`` rows.

        'auto' cuts enough shards for the shard tasks to balance across workers, without
        making shards too small to be worth a file; it depends on the data only, never on
        the worker count, so the bytes do not either.
        """
        if isinstance(self.shard_size, int):
            return "rows", self.shard_size
        if self.shard_size == "auto":
            low, high = AUTO_SHARD_ROWS
            return "rows", min(high, max(low, math.ceil(total_rows / AUTO_SHARDS)))
        return "bytes", parse_size(self.shard_size)


class RunnerConfig(_Strict):
    """How the shard tasks run; never changes the content of a version."""

    kind: Literal["local", "dask"] = Field(
        default="local", description="local: a thread pool in this process; dask: a Dask cluster"
    )
    workers: int | None = Field(
        default=None, ge=1, description="shards written at once (local), or local Dask workers; default: CPUs"
    )
    address: str | None = Field(
        default=None, description="scheduler of an existing Dask cluster (tcp://host:8786); none: start one"
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> RunnerConfig:
        if self.address is not None and self.kind != "dask":
            raise ValueError("runner.address is only used with runner.kind 'dask'")
        return self

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


class Config(_Strict):
    """The whole run: one source, one split rule, one augmentation recipe, one output."""

    name: str | None = Field(default=None, description="Dataset name; defaults from the source.")
    seed: int = Field(default=0, ge=0)
    source: SourceConfig = SourceConfig()
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    output: OutputConfig = OutputConfig()
    runner: RunnerConfig = RunnerConfig()

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            raise ValueError(f"name {value!r} must be 1-100 characters of letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _output_outside_source(self) -> Config:
        # Folder sources are read recursively: versions written inside one would be read
        # back as source images by the next run.
        source = self.source.path
        if self.source.kind in ("imagefolder", "parquet") and source is not None and source.is_dir():
            if is_inside(self.output.root, source):
                raise ValueError(
                    f"output.root '{self.output.root}' is inside source.path '{source}': the next run "
                    "would read its versions back as source images; choose an output root outside it"
                )
        return self

    @model_validator(mode="after")
    def _gan_fits_the_resize(self) -> Config:
        resize = self.source.resize
        if self.synthesis.enabled and resize is not None and max(resize) > GAN_MAX_SIDE:
            raise ValueError(
                f"synthesis.enabled: GAN synthesis supports images up to {GAN_MAX_SIDE}x{GAN_MAX_SIDE}, "
                f"and source.resize is {list(resize)}"
            )
        return self

    def dataset_name(self) -> str:
        """The name used under ``output.root``: ``name``, else derived from the source."""
        if self.name:
            return self.name
        if self.source.kind == "digits" or self.source.path is None:
            return self.source.kind
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", archive_stem(self.source.path.resolve().name)).strip(".-")
        return stem or self.source.kind

    def content_dict(self) -> dict[str, Any]:
        """The settings that decide the version's content (not where it is written)."""
        data = self.model_dump(mode="json")
        data.pop("name")
        data.pop("runner")
        data["output"].pop("root")
        data["output"].pop("lock_timeout")
        data["output"].pop("remote")
        for key in ("path", "image_column", "label_column"):
            data["source"].pop(key)  # the source enters the version id by its content hash and labels
        if self.source.resize is None:
            data["source"].pop("resize_mode")  # unused without a size (ids made before it stay)
            data["source"].pop("resize")
        if not self.augment.tune.enabled:
            data["augment"].pop("tune")  # settings of a disabled stage do not change the content
        # The default metric is left out: ids made before the key existed stay.
        for stage in (data["augment"].get("tune"), (data.get("synthesis") or {}).get("gate")):
            if stage and stage["metric"] == "accuracy":
                stage.pop("metric")
        if not self.synthesis.enabled:
            data.pop("synthesis")
        else:
            data["synthesis"].pop("checkpoint")  # a given checkpoint enters by its sha256
            # Float results differ between device types: the device "auto" picks on this
            # machine decides the bytes, not the word (torch is imported for synthesis only).
            import torch

            from pipeline.core.devices import pick_device

            synthesis = data["synthesis"]
            synthesis["device"] = pick_device(self.synthesis.device, "synthesis.device").type
            if self.synthesis.checkpoint is None:
                device = pick_device(self.synthesis.train.device, "synthesis.train.device")
                synthesis["train"]["device"] = device.type
            if "cpu" in (synthesis["device"], synthesis["train"]["device"]):
                # so do CPU results between thread counts (torch splits sums by thread)
                synthesis["cpu_threads"] = torch.get_num_threads()
        return data


def archive_stem(name: str) -> str:
    """A file name without its archive suffix (``pets.tar.gz``: ``pets``); other names as
    they are."""
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (relative paths from the working
    directory, links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


def parse_size(text: str) -> int:
    """Parse '64MB', '512KiB' or '1GB' into bytes.

    Raises:
        ValueError: the text is not a number followed by a known unit.
    """
    match = _SIZE_RE.match(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"size {text!r} must look like '64MB' (units: B, KB, MB, GB, KiB, MiB, GiB)")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError(f"size {text!r} must be positive")
    return size


def read_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``dotted.key=value`` overrides, validate the tree.

    The stages' own checks (an augmentation recipe builds) are
    :func:`pipeline.build.stages.load_config`'s: use that to load a config for a run.

    Relative ``source.path`` and ``output.root`` in the file are kept relative to the
    working directory, as users type them on the command line.

    Raises:
        ConfigError: unreadable file, bad YAML, bad override, or invalid values; the
            message names the file and the dotted key.
    """
    where = str(path) if path is not None else "<defaults>"
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: not UTF-8 text: {exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: invalid YAML: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: the top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(where, exc)) from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {exc}") from None
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _format_validation_error(where: str, exc: ValidationError) -> str:
    lines = [f"invalid config {where}:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "literal_error":
            message = f"{message}, got {error.get('input')!r}"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
