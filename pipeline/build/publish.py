"""The last stages: publish a built version (metadata files, the manifest last, an atomic
rename, ``latest``) and upload it to ``output.remote``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.build.context import BuildContext
from pipeline.config import OutputConfig
from pipeline.core.durable import fsync_dir, sync_tree
from pipeline.core.failpoints import crash_point
from pipeline.core.images import encoder_versions
from pipeline.gan.stage import GRID_FILE
from pipeline.version.card import CARD_FILE, dataset_card
from pipeline.version.catalog import record_digest, set_latest
from pipeline.version.croissant import CROISSANT_FILE, croissant_metadata
from pipeline.version.layout import file_entry
from pipeline.version.manifest import (
    CONTENT_LIBRARIES,
    MANIFEST_FILE,
    OTHER_LIBRARIES,
    library_versions,
    load_manifest,
    manifest_digest,
    run_info,
    summarise_counts,
    utcnow,
    write_manifest,
)
from pipeline.version.model import FileEntry, as_manifest
from pipeline.version.pictures import (
    HISTOGRAM_FILE,
    ORIGINS_GRID_FILE,
    class_histogram,
    origin_grid,
)
from pipeline.version.remote import push


def publish(context: BuildContext) -> Path:
    """Write the metadata, the manifest last, move the version into place atomically and
    point ``latest`` at it. The caller holds the dataset's lock.

    Publishing is idempotent: for a version already in place (``context.existing``, or an
    earlier attempt of this publish that renamed it before failing) only ``latest`` moves.

    Returns:
        The published version directory.
    """
    if context.existing or _in_place(context):
        set_latest(context.final_dir.parent, context.version_id)
        return context.final_dir
    entries = context.entries
    manifest = as_manifest(_manifest(context, entries))  # checked against the schema here
    version = context.version_dir
    (version / CROISSANT_FILE).write_text(json.dumps(croissant_metadata(manifest), indent=1) + "\n")
    grid = GRID_FILE if (version / GRID_FILE).is_file() else None
    (version / CARD_FILE).write_text(dataset_card(manifest, grid=grid), encoding="utf-8")
    class_histogram(manifest, version / HISTOGRAM_FILE)
    parquet = manifest.format == "parquet"
    train_files = [
        version / ("data" if parquet else "lineage") / f"{shard.shard}.parquet"
        for shard in manifest.shards
        if shard.split == "train"
    ]
    origin_grid(
        version, train_files, "image" if parquet else "file_name", manifest, version / ORIGINS_GRID_FILE
    )
    added = [
        n for n in (CROISSANT_FILE, CARD_FILE, HISTOGRAM_FILE, ORIGINS_GRID_FILE) if (version / n).is_file()
    ]
    manifest.files = sorted(
        manifest.files + [FileEntry(**file_entry(version, version / n)) for n in added], key=lambda f: f.path
    )
    sync_tree(version)  # every byte on disk before the manifest makes the version complete
    write_manifest(version, manifest)
    record_digest(context.final_dir.parent, context.version_id, manifest_digest(version))
    version.rename(context.final_dir)
    fsync_dir(context.final_dir.parent)  # the rename survives a power loss too
    crash_point("publish.renamed")
    shutil.rmtree(context.staging_dir, ignore_errors=True)
    set_latest(context.final_dir.parent, context.version_id)
    return context.final_dir


def _in_place(context: BuildContext) -> bool:
    """Whether an earlier attempt published this build: its staged version is gone and the
    final folder holds a manifest of this version (read and checked against the schema)."""
    if context.version_dir.exists() or not (context.final_dir / MANIFEST_FILE).is_file():
        return False
    return load_manifest(context.final_dir).version_id == context.version_id


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
            **_lossy(config.output),
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
        "config": config.model_dump(mode="json", exclude={"evaluate"}),
        "seeds": {"run": config.seed, "per_sample": "sha256(run_seed␟source_id␟replica)[:4], big-endian"},
        "libraries": library_versions(CONTENT_LIBRARIES + OTHER_LIBRARIES),
        "run": run_info(context.details["started"], context.details["run"]),
    }
    if "tune" in context.details:
        manifest["tune"] = context.details["tune"]
    if context.synthesis is not None:
        manifest["synthesis"] = context.synthesis
    return manifest


def _mixed_counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {m: sum(e.get("mixed", {}).get(m, 0) for e in entries) for m in ("mixup", "cutmix")}


def upload(context: BuildContext) -> None:
    """Upload the published version to ``output.remote`` (see :mod:`pipeline.version.remote`);
    the local version stays."""
    push(context.final_dir, context.config.output.remote)


def _lossy(output: OutputConfig) -> dict[str, Any]:
    """The manifest's record of a lossy encoding: its quality and encoder ({} when lossless)."""
    if not output.lossy():
        return {}
    return {"quality": output.encoding()["quality"], "encoder": encoder_versions(output.image_format)}
