"""Building one dataset version: prepare, [train GAN, synthesize,] plan, write shards, publish.

The stages are plain functions so that the Prefect flow can run them as tasks (one per
stage, one per shard) and :func:`build` can run them in-process. Between stages only a
small :class:`BuildContext` and shard entries travel; data stays on disk.

A version is built in ``<root>/<name>/.incomplete-<random>/version`` and renamed to
``<root>/<name>/<version-id>`` after its manifest is written, so a version directory
that exists is complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.augment.counts import allocate_copies
from pipeline.augment.mixing import Mixed, mix_copy, soft_label
from pipeline.augment.recipe import ClassAugmenters, check_augment
from pipeline.build.plan import STORE_SYNTHETIC, ShardSpec, build_plan, read_shard_plan
from pipeline.build.shards import ImageFolderShardWriter, ParquetShardWriter, Row
from pipeline.config import Config, read_config
from pipeline.core.errors import ConfigError
from pipeline.core.hashing import file_sha256
from pipeline.core.images import EXTENSIONS, content_sha256, encode_image
from pipeline.core.progress import WRITING, report
from pipeline.core.workers import run_all, run_one, stop_workers, warm_up
from pipeline.gan.stage import GRID_FILE, SYNTHETIC_PIXELS, read_synthetic, synthesize_stage, train_gan_stage
from pipeline.ingest.space import SpaceEstimate, estimate_space, most_rows, raise_if_full
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import INDEX_FILE, PIXELS_FILE, PixelStore, load_index, save_index
from pipeline.version.card import CARD_FILE, dataset_card
from pipeline.version.catalog import STAGING_PREFIX, dataset_lock, remove_stale_staging, set_latest
from pipeline.version.croissant import CROISSANT_FILE, croissant_metadata
from pipeline.version.layout import file_entry
from pipeline.version.manifest import (
    CONTENT_LIBRARIES,
    MANIFEST_FILE,
    OTHER_LIBRARIES,
    library_versions,
    run_info,
    summarise_counts,
    utcnow,
    version_id,
    write_manifest,
)
from pipeline.version.pictures import (
    HISTOGRAM_FILE,
    ORIGINS_GRID_FILE,
    TUNE_FILE,
    class_histogram,
    origin_grid,
    tune_chart,
)
from pipeline.version.remote import push

_SIZE_SAMPLE = 64
_LISTED_DUPLICATES = 100  # duplicate groups named in the manifest (all are counted)


@dataclass(frozen=True)
class BuildContext:
    """What the shard and publish stages need; small enough to pass between tasks."""

    config: Config
    name: str
    version_id: str
    final_dir: Path
    staging_dir: Path | None
    class_names: list[str] = field(default_factory=list)
    shards: list[ShardSpec] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    mode: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    space: SpaceEstimate | None = None  # what the version may take under output.root

    @property
    def existing(self) -> bool:
        """True when this version was already published; nothing is to be built."""
        return self.staging_dir is None

    @property
    def work_dir(self) -> Path:
        return self.staging_dir / "work"

    @property
    def version_dir(self) -> Path:
        return self.staging_dir / "version"


def dataset_dir(config: Config) -> Path:
    """Where the config's versions live: ``<output.root>/<name>``."""
    return config.output.root / config.dataset_name()


def prepare(config: Config, run: dict[str, Any] | None = None, workers: int = 1) -> BuildContext:
    """Ingest the source and derive the version id. The caller holds the dataset's lock.

    Staging left by crashed runs is removed first. When a version with the same id is
    already published, the returned context points at it (``existing`` is True).

    Args:
        run: recorded in the manifest's ``run`` (e.g. the orchestrator's run id).
        workers: processes that decode the source's images.
    """
    started = utcnow()
    name = config.dataset_name()
    parent = dataset_dir(config)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    staging = parent / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    content = config.content_dict()  # resolves the synthesis devices: a missing GPU fails here
    try:
        ingested = ingest(config, staging / "work", workers)
        checkpoint = config.synthesis.checkpoint if config.synthesis.enabled else None
        vid = version_id(
            content,
            config.source.kind,
            ingested.fingerprint,
            file_sha256(checkpoint) if checkpoint else None,
        )
        final_dir = parent / vid
        if (final_dir / MANIFEST_FILE).is_file():
            shutil.rmtree(staging)
            return BuildContext(
                config=config, name=name, version_id=vid, final_dir=final_dir, staging_dir=None
            )
        save_index(ingested.index, staging / "work" / INDEX_FILE)
        (staging / "version").mkdir()
        _release_arrow_memory()
        counts = ingested.counts()
        images = len(ingested.index.source_ids)
        with PixelStore(staging / "work" / PIXELS_FILE, ingested.shape) as pixels:
            space = estimate_space(config, most_rows(config, counts), pixels, ingested.shape, images, staging)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise_if_full(exc, config.output.root)
        raise
    details = {
        "started": started.isoformat(timespec="seconds"),
        "run": dict(run or {}),
        "source": {
            "kind": config.source.kind,
            "path": str(config.source.path) if config.source.path else None,
            "fingerprint": ingested.fingerprint,
            "images": images,
            "split_carved": ingested.split_carved,
            "counts": counts,
            "license": config.source.license,
            "citation": config.source.citation,
            "skipped": ingested.skipped,
            "ignored_files": ingested.ignored_files,
            "duplicates": {
                "groups": len(ingested.duplicates),
                "images": sum(len(g) for g in ingested.duplicates),
                "first_groups": ingested.duplicates[:_LISTED_DUPLICATES],
            },
        },
    }
    return BuildContext(
        config=config,
        name=name,
        version_id=vid,
        final_dir=final_dir,
        staging_dir=staging,
        class_names=ingested.class_names,
        shape=ingested.shape,
        mode=ingested.mode,
        details=details,
        space=space,
    )


def tune(context: BuildContext, workers: int = 1) -> BuildContext:
    """Choose the augmentation by validation accuracy (``augment.tune``, see
    :mod:`pipeline.augment.tune`); the rest of the build uses the winner, and the manifest, the
    card and ``tune.png`` say what was tried."""
    from pipeline.augment.tune import tune_augmentation  # imports torch: only builds that tune pay for it

    augment, summary = tune_augmentation(
        context.config, context.work_dir, context.shape, context.class_names, workers
    )
    tune_chart(summary, context.version_dir / TUNE_FILE)
    config = context.config.model_copy(update={"augment": augment})
    return replace(context, config=config, details={**context.details, "tune": summary})


def plan(context: BuildContext, synthesis_report: dict[str, Any] | None = None) -> BuildContext:
    """Allocate augmented copies, add synthetic rows if any, and cut the splits into shards."""
    config = context.config
    index = load_index(context.work_dir / INDEX_FILE)
    copies, shortfall = allocate_copies(index, config.augment, config.seed, context.class_names)
    synthetic = read_synthetic(context.work_dir) if synthesis_report else None
    total_rows = (
        len(index.source_ids) + int(copies.sum()) + (synthetic.num_rows if synthetic is not None else 0)
    )
    rows_per_shard = _rows_per_shard(config, context, total_rows)
    shards = build_plan(
        index, copies, config.seed, rows_per_shard, context.work_dir, synthetic, config.augment.mix
    )
    details = dict(context.details)
    details["augment"] = {
        "rows_per_shard": rows_per_shard,
        "planned_copies": int(copies.sum()),
        "shortfall": {context.class_names[k]: v for k, v in shortfall.items()},
    }
    if synthesis_report is not None:
        details["synthesis"] = synthesis_report
    _release_arrow_memory()
    return replace(context, shards=shards, details=details)


def _release_arrow_memory() -> None:
    """Return what Arrow's pool freed to the OS (the system allocator trims its heap; with
    mimalloc about 25 MB stayed after ingesting 60k images), so that the next stage's peak
    does not sit on top of it."""
    pa.default_memory_pool().release_unused()


def write_shard(context: BuildContext, shard: ShardSpec) -> dict[str, Any]:
    """Produce one shard: read its plan rows, augment (and mix) the copies, encode, write.

    Returns:
        The shard's entry: split, name, rows, counts per origin and class, redrawn and
        mixed copies, and files.
    """
    config = context.config
    rows = read_shard_plan(context.work_dir, shard).to_pylist()
    augment = ClassAugmenters(config.augment, context.class_names, config.seed)
    mix = config.augment.mix
    mixed = dict.fromkeys(("mixup", "cutmix"), 0)
    classes = len(context.class_names)
    output = config.output
    synthetic_path = context.work_dir / SYNTHETIC_PIXELS
    with (
        PixelStore(context.work_dir / PIXELS_FILE, context.shape) as pixels,
        PixelStore(synthetic_path, context.shape) if synthetic_path.exists() else nullcontext() as fake,
        _open_writer(context, shard) as writer,
    ):
        for r in rows:
            source_sha, seed, params = r["source_sha256"], r["seed"], r["params"]
            soft = soft_label(r["label"], classes) if mix else None
            if r["store"] == STORE_SYNTHETIC:
                image, origin = fake[r["pixel_row"]], "synthetic"
            elif r["replica"]:
                image, seed, params = augment(
                    pixels[r["pixel_row"]], r["label"], r["source_id"], r["replica"]
                )
                origin = "augmented"
                if r["mix"]:
                    partner = pixels[r["partner_row"]]
                    image, done = mix_copy(
                        image, partner, r["mix"], mix, config.seed, r["source_id"], r["replica"]
                    )
                    soft = soft_label(r["label"], classes, r["partner_label"], done.lam)
                    params = _with_mix_params(params, done, r["partner_id"])
                    mixed[done.method] += 1
            else:
                image, origin = pixels[r["pixel_row"]], "real"
            writer.write(
                Row(
                    id=row_id(r["source_id"], r["replica"]),
                    label=r["label"],
                    origin=origin,
                    source_id=r["source_id"],
                    source_sha256=source_sha,
                    seed=seed,
                    sha256=source_sha if origin == "real" else content_sha256(image),
                    params=params,
                    encoded=encode_image(image, output.image_format, output.png_compress_level),
                    soft_label=soft,
                )
            )
        entry = writer.finish()
    return {
        "split": shard.split,
        "shard": shard.name,
        "resampled": augment.resampled,
        "mixed": mixed,
        **entry,
    }


def _with_mix_params(params: str | None, done: Mixed, partner_id: str) -> str:
    """The applied parameters with the mixing step appended (partner, weight, box)."""
    steps = json.loads(params) if params else []
    step = {"partner": partner_id, "lam": round(done.lam, 6)}
    if done.box is not None:
        step["box_yxyx"] = list(done.box)
    steps.append(["MixUp" if done.method == "mixup" else "CutMix", step])
    return json.dumps(steps, sort_keys=True, separators=(",", ":"))


def write_shards(context: BuildContext, workers: int) -> list[dict[str, Any]]:
    """Write every shard on ``workers`` processes (see :func:`pipeline.core.workers.run_all`).

    The entries come back in shard order; the bytes do not depend on ``workers``. Rows
    written are reported as they complete (:mod:`pipeline.core.progress`).
    """
    total, written = sum(s.rows for s in context.shards), 0

    def done(_: int, entry: dict[str, Any]) -> None:
        nonlocal written
        written += entry["rows"]
        report(WRITING, written, total)

    calls = [(context, shard) for shard in context.shards]
    return run_all(write_shard, calls, workers, on_result=done)


def write_shard_in_worker(context: BuildContext, shard: ShardSpec, workers: int) -> dict[str, Any]:
    """:func:`write_shard` in a process of the ``workers``-process pool (for callers that
    schedule shards themselves, such as one Prefect task per shard on threads)."""
    return run_one(write_shard, (context, shard), workers)


def train_gan_for(context: BuildContext, **kwargs: Any) -> dict[str, Any]:
    """Train the GAN on the staged training split (see :func:`train_gan_stage`)."""
    return train_gan_stage(
        context.config, context.work_dir, context.shape, len(context.class_names), **kwargs
    )


def synthesize_for(context: BuildContext, checkpoint: Path) -> dict[str, Any]:
    """Sample, filter and gate synthetic rows into staging (see :func:`synthesize_stage`)."""
    return synthesize_stage(
        context.config, context.work_dir, context.version_dir, context.shape, context.class_names, checkpoint
    )


def publish(context: BuildContext, entries: list[dict[str, Any]]) -> Path:
    """Write the metadata, the manifest last, move the version into place atomically and
    point ``latest`` at it. The caller holds the dataset's lock.

    For an existing version (``context.existing``) only ``latest`` moves.

    Returns:
        The published version directory.
    """
    if context.existing:
        set_latest(context.final_dir.parent, context.version_id)
        return context.final_dir
    manifest = _manifest(context, entries)
    version = context.version_dir
    (version / CROISSANT_FILE).write_text(json.dumps(croissant_metadata(manifest), indent=1) + "\n")
    grid = GRID_FILE if (version / GRID_FILE).is_file() else None
    (version / CARD_FILE).write_text(dataset_card(manifest, grid=grid), encoding="utf-8")
    class_histogram(manifest, version / HISTOGRAM_FILE)
    parquet = manifest["format"] == "parquet"
    train_files = [
        version / ("data" if parquet else "lineage") / f"{e['shard']}.parquet"
        for e in sorted(entries, key=lambda e: e["shard"])
        if e["split"] == "train"
    ]
    origin_grid(
        version, train_files, "image" if parquet else "file_name", manifest, version / ORIGINS_GRID_FILE
    )
    added = [
        n for n in (CROISSANT_FILE, CARD_FILE, HISTOGRAM_FILE, ORIGINS_GRID_FILE) if (version / n).is_file()
    ]
    manifest["files"] = sorted(
        manifest["files"] + [file_entry(version, version / n) for n in added], key=lambda f: f["path"]
    )
    write_manifest(version, manifest)
    version.rename(context.final_dir)
    shutil.rmtree(context.staging_dir, ignore_errors=True)
    set_latest(context.final_dir.parent, context.version_id)
    return context.final_dir


def _manifest(context: BuildContext, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of a built version, before the metadata files are added to ``files``."""
    config = context.config
    files = [f for e in entries for f in e["files"]]
    # Files written by stages other than the shard writers (generator, sample grid).
    hashed = {f["path"] for f in files}
    files += [
        file_entry(context.version_dir, p)
        for p in context.version_dir.rglob("*")
        if p.is_file() and p.relative_to(context.version_dir).as_posix() not in hashed
    ]
    files.sort(key=lambda f: f["path"])
    manifest = {
        "version_id": context.version_id,
        "name": context.name,
        "created": utcnow().isoformat(timespec="milliseconds"),
        "format": config.output.format,
        "class_names": context.class_names,
        "image": {
            "mode": context.mode,
            "height": context.shape[0],
            "width": context.shape[1],
            "format": config.output.image_format,
        },
        "splits": summarise_counts(entries),
        "shards": sorted(
            ({k: e[k] for k in ("split", "shard", "rows")} for e in entries), key=lambda e: e["shard"]
        ),
        "files": files,
        "source": context.details["source"],
        "augment": {
            **context.details["augment"],
            "resampled": sum(e.get("resampled", 0) for e in entries),
            **({"mixed": _mixed_counts(entries)} if config.augment.mix else {}),
        },
        "config": config.model_dump(mode="json"),
        "seeds": {"run": config.seed, "per_sample": "sha256(run_seed␟source_id␟replica)[:4], big-endian"},
        "libraries": library_versions(CONTENT_LIBRARIES + OTHER_LIBRARIES),
        "run": run_info(context.details["started"], context.details["run"]),
    }
    for stage in ("tune", "synthesis"):
        if stage in context.details:
            manifest[stage] = context.details[stage]
    return manifest


def _mixed_counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {m: sum(e.get("mixed", {}).get(m, 0) for e in entries) for m in ("mixup", "cutmix")}


def discard(context: BuildContext) -> None:
    """Remove a failed build's staging directory."""
    if context.staging_dir is not None:
        shutil.rmtree(context.staging_dir, ignore_errors=True)


def build(config: Config, run: dict[str, Any] | None = None) -> tuple[Path, bool]:
    """Run all stages in this process, holding the dataset's lock.

    Returns:
        The version directory and whether it was newly published (False: it existed).
    """
    workers = config.runner.worker_count()
    if workers > 1:
        warm_up(workers)  # the pool starts while this process ingests and plans
    with dataset_lock(dataset_dir(config), purpose="expand run", timeout=config.output.lock_timeout):
        context = prepare(config, run, workers)
        if context.existing:
            return upload(context, publish(context, [])), False
        try:
            if config.augment.tune.enabled:
                context = tune(context, workers)
            report = None
            if config.synthesis.enabled:
                checkpoint = config.synthesis.checkpoint or train_gan_for(context)["checkpoint"]
                report = synthesize_for(context, Path(checkpoint))
            context = plan(context, report)
            entries = write_shards(context, workers)
            version = publish(context, entries)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # interrupted: the workers' calls are not waited for
                stop_workers()
            discard(context)
            raise_if_full(exc, config.output.root, context.space)
            raise
        return upload(context, version), True


def upload(context: BuildContext, version: Path) -> Path:
    """Upload the published version to ``output.remote`` when set (see
    :mod:`pipeline.version.remote`); the local version stays. Returns ``version``."""
    if context.config.output.remote:
        push(version, context.config.output.remote)
    return version


def train_gan_only(
    config: Config, out_dir: Path, *, resume: Path | None = None, on_metrics=None
) -> dict[str, Any]:
    """Train the GAN without publishing: ingest into staging, train, keep the checkpoints.

    Returns:
        The training summary; ``checkpoint`` points at ``out_dir/best.pt``.
    """
    from pipeline.gan.synthesis import REFERENCE_FILE  # torch: only for GAN training

    # Staged under "<name>-gan", where nothing is ever published, so it always stages.
    staged = config.model_copy(update={"name": config.dataset_name() + "-gan"})
    with dataset_lock(dataset_dir(staged), purpose="expand train-gan", timeout=config.output.lock_timeout):
        context = prepare(staged)
        try:
            summary = train_gan_for(context, resume=resume, on_metrics=on_metrics)
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in ("best.pt", "last.pt", REFERENCE_FILE):
                shutil.copyfile(context.work_dir / "gan" / name, out_dir / name)
            return {**summary, "checkpoint": str(out_dir / "best.pt")}
        finally:
            discard(context)


def row_id(source_id: str, replica: int) -> str:
    """A row's id, unique within a version: 16 hex characters of sha256(source_id, replica)."""
    return hashlib.sha256(f"{source_id}\x1f{replica}".encode()).hexdigest()[:16]


def _open_writer(context: BuildContext, shard: ShardSpec):
    root = context.version_dir
    extension = EXTENSIONS[context.config.output.image_format]
    soft_labels = context.config.augment.mix is not None
    if context.config.output.format == "parquet":
        return ParquetShardWriter(
            root=root,
            path=root / "data" / f"{shard.name}.parquet",
            class_names=context.class_names,
            extension=extension,
            soft_labels=soft_labels,
        )
    return ImageFolderShardWriter(
        root=root,
        split=shard.split,
        lineage_path=root / "lineage" / f"{shard.name}.parquet",
        class_names=context.class_names,
        extension=extension,
        soft_labels=soft_labels,
    )


def _rows_per_shard(config: Config, context: BuildContext, total_rows: int) -> int:
    output = config.output
    unit, limit = output.shard_limit(total_rows)
    if unit == "rows":
        return limit
    # A byte target becomes a row count from the mean encoded size of the first images.
    count = min(_SIZE_SAMPLE, int(context.details["source"]["images"]))
    with PixelStore(context.work_dir / PIXELS_FILE, context.shape) as pixels:
        sizes = [
            len(encode_image(pixels[i], output.image_format, output.png_compress_level)) for i in range(count)
        ]
    return max(1, int(limit // max(1.0, float(np.mean(sizes)))))


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config for a run: the YAML tree (:func:`pipeline.config.read_config`), then
    each stage's own checks (the augmentation recipes build).

    Raises:
        ConfigError: the message names the file and the dotted key.
    """
    config = read_config(path, overrides)
    try:
        check_augment(config.augment)
    except ValueError as exc:
        where = str(path) if path is not None else "<defaults>"
        raise ConfigError(f"invalid config {where}:\n  augment: {exc}") from None
    return config
