"""What travels between the stages of a build: :class:`BuildContext`, and the first stage
that makes it (:func:`prepare`: ingest the source, derive the version id, stage).

A version is built in ``<root>/<name>/.incomplete-<random>/version`` and renamed to
``<root>/<name>/<version-id>`` after its manifest is written, so a version directory
that exists is complete. Between stages only the small context travels; data stays on disk.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.build.plan import ShardSpec
from pipeline.config import Config
from pipeline.core.hashing import file_sha256
from pipeline.ingest.space import SpaceEstimate, estimate_space, most_rows, raise_if_full
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import INDEX_FILE, PIXELS_FILE, PixelStore, save_index
from pipeline.version.catalog import STAGING_PREFIX, is_version, remove_stale_staging, set_aside
from pipeline.version.manifest import MANIFEST_FILE, utcnow, verify, version_id

_LISTED_DUPLICATES = 100  # duplicate groups named in the manifest (all are counted)


@dataclass(frozen=True)
class BuildContext:
    """What the stages after :func:`prepare` need; small enough to pass between tasks.

    Each stage returns a new context (``dataclasses.replace``) with what it added.
    """

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
    workers: int = 1  # processes that decode, tune and write shards on this machine
    checkpoint: str | None = None  # the generator synthesis samples from
    synthesis: dict[str, Any] | None = None  # the synthesis stage's report, for the manifest
    entries: list[dict[str, Any]] = field(default_factory=list)  # the written shards

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
        workers: processes that decode the source's images (and that the later stages use).
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
        problems = _problems(final_dir)
        if final_dir.exists() and not problems:
            shutil.rmtree(staging)
            return BuildContext(
                config=config,
                name=name,
                version_id=vid,
                final_dir=final_dir,
                staging_dir=None,
                workers=workers,
            )
        if problems:  # damaged (a power loss, a hand edit): set aside, and built again
            aside = set_aside(final_dir, problems)
            run = {**(run or {}), "replaced_damaged": {"set_aside": aside.name, "problems": problems[:10]}}
        save_index(ingested.index, staging / "work" / INDEX_FILE)
        (staging / "version").mkdir()
        release_arrow_memory()
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
        workers=workers,
    )


def _problems(final_dir: Path) -> list[str]:
    """What is wrong with the version already at ``final_dir`` (a quick check: the manifest
    against its schema, files and sizes, shard schemas and row counts); none when it is
    intact or absent."""
    if not final_dir.exists() and not final_dir.is_symlink():
        return []
    if not is_version(final_dir):
        return [f"{final_dir.name}: not a published version folder (no {MANIFEST_FILE}, or a link)"]
    return verify(final_dir, full=False)


def release_arrow_memory() -> None:
    """Return what Arrow's pool freed to the OS (the system allocator trims its heap; with
    mimalloc about 25 MB stayed after ingesting 60k images), so that the next stage's peak
    does not sit on top of it."""
    pa.default_memory_pool().release_unused()


def discard(context: BuildContext) -> None:
    """Remove a failed build's staging directory."""
    if context.staging_dir is not None:
        shutil.rmtree(context.staging_dir, ignore_errors=True)
