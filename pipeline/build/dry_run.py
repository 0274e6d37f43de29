"""What a build of a config would publish, without building it (``expand run --dry-run``).

The source is ingested as a build ingests it, so the version id and the counts (after
skipped images, dropped duplicates and the carved test split) are the build's own. The
rows per split, origin and class then follow from the config, and the version's size is
estimated as a build estimates it (:mod:`pipeline.ingest.space`). The staging is removed and
nothing is published. Augmented counts are the most ``augment.tune`` may choose, and
synthetic counts the most the utility gate may keep: the stages that decide them (tuning,
GAN training, the gate) are the long ones a dry run is there to avoid.
"""

from __future__ import annotations

from typing import Any

from pipeline.build.context import BuildContext, dataset_dir, discard, prepare
from pipeline.config import Config
from pipeline.core.workers import warm_up
from pipeline.ingest.space import most_copies
from pipeline.version.catalog import dataset_lock
from pipeline.version.manifest import load_manifest


def dry_run(config: Config) -> dict[str, Any]:
    """Ingest the source, say what a build would publish, and remove what was staged.

    Returns:
        ``{"version_id", "version_dir", "published", "class_names", "rows", "notes"}`` and, for a version
        not yet published, ``"space"`` (bytes ``needed`` and ``free``, ``short``, and the
        estimate as text) and ``"source"`` (images ``skipped``, ``duplicate_groups``,
        ``ignored_files``). ``rows``: split -> origin -> class -> rows, as a manifest's
        ``by_origin_class``; for a published version, its own.
    """
    workers = config.runner.worker_count() if config.runner.kind == "local" else 1
    if workers > 1:
        warm_up(workers)  # the source's images are decoded on the worker pool
    with dataset_lock(
        dataset_dir(config), purpose="expand run --dry-run", timeout=config.output.lock_timeout
    ):
        context = prepare(config, None, workers)
        try:
            return _what_it_would_publish(context)
        finally:
            discard(context)


def _what_it_would_publish(context: BuildContext) -> dict[str, Any]:
    result: dict[str, Any] = {
        "version_id": context.version_id,
        "version_dir": str(context.final_dir),
        "published": context.existing,
    }
    if context.existing:
        manifest = load_manifest(context.final_dir)
        rows = {split: info.by_origin_class for split, info in manifest.splits.items()}
        return {**result, "class_names": manifest.class_names, "rows": rows, "notes": []}
    config, source = context.config, context.details["source"]
    rows: dict[str, dict[str, dict[str, int]]] = {}
    for split, per_class in sorted(source["counts"].items()):
        rows[split] = {"real": dict(per_class)}
        if split == "train" and config.augment.enabled:
            rows[split]["augmented"] = {name: most_copies(config, name, n) for name, n in per_class.items()}
        if split == "train" and config.synthesis.enabled:
            rows[split]["synthetic"] = {
                name: config.synthesis.most_published(n) for name, n in per_class.items()
            }
    notes = []
    if config.augment.tune.enabled:
        notes.append("augmented rows: the most augment.tune may choose (it may choose fewer, or none)")
    if config.synthesis.enabled:
        notes.append(
            "synthetic rows: the most synthesis may publish"
            + (" (the utility gate may keep fewer, or none)" if config.synthesis.gate.enabled else "")
        )
    space = context.space
    return {
        **result,
        "class_names": context.class_names,
        "rows": rows,
        "notes": notes,
        "space": {"needed": space.needed, "free": space.free, "short": space.short, "text": space.describe()},
        "source": {
            "skipped": len(source["skipped"]),
            "duplicate_groups": source["duplicates"]["groups"],
            "ignored_files": source["ignored_files"],
        },
    }
