"""The whole run (:class:`Config`): one source, one split rule, one augmentation recipe,
synthesis, one output; and which of its settings decide a version's content."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.config.augment import AugmentConfig
from pipeline.config.common import GAN_MAX_SIDE, Strict, archive_stem, is_inside
from pipeline.config.evaluate import EvaluateConfig
from pipeline.config.output import OutputConfig, RunnerConfig
from pipeline.config.source import SourceConfig, SplitConfig
from pipeline.config.synthesis import SynthesisConfig

# Synthesis keys added after versions were published, with their defaults: at the default
# they are left out of the content, so the ids made before the key existed stay.
_LATER_SYNTHESIS_KEYS: dict[tuple[str, ...], Any] = {
    ("train", "loss"): "hinge",
    ("weight",): 1.0,
    ("target_per_class",): None,
    ("gate", "per_class"): False,
    ("train", "resolution"): None,
    ("train", "fit"): "stretch",
    ("train", "processes"): 1,
    ("filter", "drs"): None,
    ("gate", "classifier_grid"): 1,
}


def _drop_defaults(data: dict[str, Any], defaults: dict[tuple[str, ...], Any]) -> None:
    """Remove each key path of ``defaults`` from ``data`` where it holds its default."""
    for path, default in defaults.items():
        *parents, key = path
        holder = data
        for part in parents:
            holder = holder.get(part) or {}
        if key in holder and holder[key] == default:
            del holder[key]


class Config(Strict):
    """The whole run: one source, one split rule, one augmentation recipe, one output."""

    name: str | None = Field(default=None, description="Dataset name; defaults from the source.")
    seed: int = Field(
        default=0,
        ge=0,
        description="the run seed: the test split, per-sample augmentation seeds, the GAN, the classifiers",
    )
    source: SourceConfig = Field(default=SourceConfig(), description="where the images come from")
    split: SplitConfig = Field(
        default=SplitConfig(), description="how a test split is carved when the source has none"
    )
    augment: AugmentConfig = Field(
        default=AugmentConfig(), description="classical augmentation of the training split"
    )
    synthesis: SynthesisConfig = Field(
        default=SynthesisConfig(), description="class-conditional GAN synthesis (off by default)"
    )
    output: OutputConfig = Field(default=OutputConfig(), description="where and how the version is written")
    runner: RunnerConfig = Field(
        default=RunnerConfig(), description="how the shard tasks run (never changes the content)"
    )
    evaluate: EvaluateConfig = Field(
        default=EvaluateConfig(),
        description="how expand evaluate measures a version (not part of a version's content)",
    )

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
        if (
            self.synthesis.enabled
            and self.synthesis.train.resolution is None
            and resize is not None
            and max(resize) > GAN_MAX_SIDE
        ):
            raise ValueError(
                f"synthesis.enabled: the GAN trains at up to {GAN_MAX_SIDE}x{GAN_MAX_SIDE}, and "
                f"source.resize is {list(resize)}: set synthesis.train.resolution (e.g. 128; samples "
                "are resized to the images' size) or a smaller source.resize"
            )
        return self

    @property
    def soft_labels(self) -> bool:
        """Whether the version's rows get a ``soft_label`` column (``augment.mix``, or
        ``synthesis.soft_labels`` with synthesis on)."""
        return self.augment.mix is not None or (self.synthesis.enabled and self.synthesis.soft_labels)

    @property
    def row_weights(self) -> bool:
        """Whether the version's rows get a ``weight`` column (``synthesis.weight`` below 1 with
        synthesis on)."""
        return self.synthesis.enabled and self.synthesis.weight != 1.0

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
        data.pop("evaluate")  # measures a version, never makes one (ids made before it stay)
        data["output"].pop("root")
        data["output"].pop("lock_timeout")
        data["output"].pop("remote")
        data["output"].pop("quality")  # lossless: none (ids made before it stay)
        if self.output.lossy():
            # The quality that encodes (JPEG's default filled in), and the encoder: a lossy
            # encoder's bytes change with its library, so the id names it (OpenCV's codec).
            from pipeline.core.images import encoder_versions

            data["output"]["quality"] = self.output.encoding()["quality"]
            data["output"]["encoder"] = encoder_versions(self.output.image_format)
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
            _drop_defaults(data["synthesis"], _LATER_SYNTHESIS_KEYS)
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
