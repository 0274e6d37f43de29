"""The manifest's schema as pydantic models: what ``manifest.json`` holds, typed.

The builder writes a manifest through :class:`Manifest` (see
:func:`pipeline.version.manifest.write_manifest`), so what it writes is checked against the
schema, and readers get attributes instead of string keys
(:func:`pipeline.version.manifest.load_manifest`). ``docs/manifest.schema.json`` is the JSON
Schema generated from these models (:mod:`pipeline.version.schema`).

Sections the pipeline lays out itself forbid unknown keys; the free-form reports (the tune
summary, the synthesis report, the run record) allow more than the fields typed here, which
are those code reads. Fields that older manifests lack have defaults, and
:meth:`Manifest.as_json` leaves out what the manifest did not hold, so a manifest read and
written again keeps its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageInfo(_Strict):
    """The images' pixel mode, size and encoding."""

    mode: str
    height: int
    width: int
    format: Literal["png", "webp", "jpeg"] = "png"  # versions before output.image_format: PNG
    quality: int | None = None  # lossy WebP and JPEG only
    encoder: dict[str, str] | None = None  # lossy only: OpenCV and its codec's version


class SplitCounts(_Strict):
    """One split's rows: in all, per origin, per origin and class."""

    rows: int
    by_origin: dict[str, int] = Field(default_factory=dict)
    by_origin_class: dict[str, dict[str, int]] = Field(default_factory=dict)


class ShardInfo(_Strict):
    """One shard (its rows are in ``data/<shard>.parquet`` or ``lineage/<shard>.parquet``)."""

    split: str
    shard: str
    rows: int


def _inside(path: str) -> str:
    """``path`` if it is a relative POSIX path that stays inside the version's folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or ".." in parts or "" in parts:
        raise ValueError(f"{path!r} is not a relative path inside the version")
    return path


def _folder_name(name: str) -> str:
    """``name`` if it can name one folder (the dataset's, on disk and on a remote)."""
    if name in (".", "..") or not all(c.isalnum() or c in "._-" for c in name) or not 0 < len(name) <= 100:
        raise ValueError(f"{name!r} cannot name a folder: use 1-100 letters, digits, '.', '_' or '-'")
    return name


class FileEntry(_Strict):
    """One file of the version, relative to its folder (a POSIX path that stays inside it)."""

    path: Annotated[str, AfterValidator(_inside)]
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SkippedFile(_Strict):
    """A source image left out of the version, and why."""

    source_id: str
    reason: str
    sha256: str | None = None


class Duplicates(_Strict):
    """Groups of source images with identical pixels (the first groups named)."""

    groups: int = 0
    images: int = 0
    first_groups: list[list[str]] = Field(default_factory=list)


class SourceInfo(_Strict):
    """What was read: the source, its content fingerprint, counts and what was left out."""

    kind: str
    path: str | None = None
    fingerprint: str
    images: int
    split_carved: bool = False
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    license: str | None = None
    citation: str | None = None
    skipped: list[SkippedFile] = Field(default_factory=list)
    ignored_files: int = 0
    duplicates: Duplicates = Field(default_factory=Duplicates)


class AugmentInfo(_Strict):
    """How the augmented copies were planned and made."""

    rows_per_shard: int
    planned_copies: int
    shortfall: dict[str, int] = Field(default_factory=dict)
    resampled: int = 0
    mixed: dict[str, int] | None = None  # rows per mixing method, when augment.mix is set


class TuneCandidate(_Open):
    """One augmentation candidate ``augment.tune`` scored."""

    name: str
    mean: float
    std: float
    rows: int
    strength: float | None = None
    policy: str | None = None
    runs: list[float] = Field(default_factory=list)
    seconds: float | None = None


class NotRun(_Strict):
    """A candidate ``augment.tune`` did not score, and why."""

    candidate: str
    reason: str


class TuneSummary(_Open):
    """The report of ``augment.tune``: every candidate's score and rows, the choice and why."""

    validation_rows: int
    fit_rows: int | None = None
    seeds: int
    classifier_epochs: int | None = None
    metric: str = "accuracy"  # versions before tune.metric: accuracy
    candidates: list[TuneCandidate]
    not_run: list[NotRun] = Field(default_factory=list)
    chosen: str
    reason: str
    seconds: float | None = None


class GateReport(_Open):
    """The utility gate's decision (``accuracy``: per ratio, its scores and gain)."""

    validation_rows: int
    seeds: int
    metric: str = "accuracy"
    accuracy: dict[str, dict[str, Any]]
    chosen_ratio: float
    reason: str
    # synthesis.gate.per_class: each class's decision (ratio, gain, interval) and ratio
    per_class: dict[str, dict[str, Any]] | None = None
    chosen_ratios: dict[str, float] | None = None


class SynthesisFiles(_Open):
    """Synthesis files in the version, relative to its folder."""

    checkpoint: str
    grid: str
    curves: str | None = None  # trained in the run (not a given checkpoint)


class SynthesisDevices(_Open):
    """Where synthesis ran: device types, CPU threads, the GPU's name."""

    training: str | None = None  # None: a given checkpoint
    sampling_and_classifiers: str
    cpu_threads: int | None = None
    cuda_device: str | None = None


class SynthesisReport(_Open):
    """The synthesis report: sampling counts, quality metrics (free-form), the gate, files."""

    checkpoint_sha256: str | None = None
    checkpoint_step: int | None = None
    checkpoint_chosen: dict[str, Any] | None = None  # the best checkpoint's step, FD and what it was against
    geometry: dict[str, Any] | None = None  # the GAN's square side and how the images meet it (fit)
    candidates: int | None = None
    kept_after_filter: int | None = None
    wanted: int | None = None
    short: dict[str, int] | None = None
    filled_below_threshold: dict[str, int] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: GateReport | None = None
    published: int = 0
    files: SynthesisFiles | None = None
    per_class: dict[str, int] = Field(default_factory=dict)
    devices: SynthesisDevices | None = None


class Seeds(_Strict):
    """The run seed and how per-sample seeds derive from it."""

    run: int
    per_sample: str


class GitRevision(_Strict):
    commit: str
    dirty: bool


class RunInfo(_Open):
    """Who made the version, where and when (more keys: e.g. the orchestrator's run id)."""

    started: str
    finished: str
    host: str
    python: str
    code_version: str
    git: GitRevision | None = None


class Manifest(_Strict):
    """A published version's ``manifest.json``."""

    schema_version: Literal[1]
    version_id: str = Field(pattern=r"^v-[0-9a-f]{16}$")
    name: Annotated[str, AfterValidator(_folder_name)]
    created: str
    format: Literal["parquet", "imagefolder"]
    class_names: list[str]
    image: ImageInfo
    splits: dict[str, SplitCounts]
    shards: list[ShardInfo]
    files: list[FileEntry]
    source: SourceInfo
    augment: AugmentInfo
    tune: TuneSummary | None = None
    synthesis: SynthesisReport | None = None
    config: dict[str, Any]  # the resolved config (pipeline.config.Config as JSON)
    seeds: Seeds
    libraries: dict[str, str] = Field(default_factory=dict)
    run: RunInfo

    def as_json(self) -> dict[str, Any]:
        """The manifest as JSON values, with only the keys it was given (none of the defaults)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def soft_labels(self) -> bool:
        """Whether the version's rows have a ``soft_label`` column (``augment.mix``, or
        ``synthesis.soft_labels`` with synthesis on)."""
        return config_soft_labels(self.config)

    @property
    def row_weights(self) -> bool:
        """Whether the version's rows have a ``weight`` column (``synthesis.weight`` below 1
        with synthesis on)."""
        return config_row_weights(self.config)


def config_row_weights(config: Mapping[str, Any]) -> bool:
    """:attr:`Manifest.row_weights` from a version's resolved config (a plain dict)."""
    synthesis = config.get("synthesis") or {}
    return bool(synthesis.get("enabled")) and float(synthesis.get("weight", 1.0)) != 1.0


def config_soft_labels(config: Mapping[str, Any]) -> bool:
    """:attr:`Manifest.soft_labels` from a version's resolved config (a plain dict)."""
    synthesis = config.get("synthesis") or {}
    return bool(config.get("augment", {}).get("mix")) or bool(
        synthesis.get("enabled") and synthesis.get("soft_labels")
    )


def as_manifest(manifest: Manifest | Mapping[str, Any]) -> Manifest:
    """``manifest`` as a :class:`Manifest` (a dict is validated; one without
    ``schema_version``, as the builder assembles it, is taken as the current version).

    Raises:
        pydantic.ValidationError: the dict does not fit the schema.
    """
    if isinstance(manifest, Manifest):
        return manifest
    return Manifest.model_validate({"schema_version": SCHEMA_VERSION, **manifest})


def as_tune_summary(summary: TuneSummary | Mapping[str, Any]) -> TuneSummary:
    """``summary`` as a :class:`TuneSummary` (a dict, as ``augment.tune`` reports it, is validated).

    Raises:
        pydantic.ValidationError: the dict does not fit the schema.
    """
    return summary if isinstance(summary, TuneSummary) else TuneSummary.model_validate(summary)
